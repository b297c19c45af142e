"""``steelflow deploy``: a KServe InferenceService for a registry alias (:mod:`steelflow.deploy`), and what
``steelflow rollback`` does to one written before."""

from __future__ import annotations

from typing import Annotated

import typer

from steelflow import config
from steelflow.console import ParamsOpt, SetOpt, out
from steelflow.console import guard as _step
from steelflow.console import load as _params
from steelflow.console import warn as _warn
from steelflow.errors import SteelflowError


@_step
def deploy(
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    alias: Annotated[
        str, typer.Option(help="champion, or challenger: a canary with deploy.canary_traffic_percent")
    ] = "champion",
) -> None:
    """Write a KServe InferenceService (deploy.output) serving the version an alias points at; send it to a
    cluster with `kubectl apply -f deploy/inferenceservice.yaml`."""
    from steelflow.deploy import deploy as run

    result = run(_params(params, set_), alias)
    for warning in result.warnings:
        _warn(f"deploy: {warning}")
    for line in result.lines():
        out.print(line, highlight=False, markup=False)


def after_rollback(p: config.Params) -> None:
    """Rewrite the manifest, when there is one, for the champion a rollback left (it served the old one)."""
    from steelflow.deploy import after_rollback as rewrite

    try:
        rewritten = rewrite(p)
    except SteelflowError as e:  # the rollback itself is done: say what is left to do
        _warn(f"rollback: {p.deploy.output} still serves the old champion ({e}); run `steelflow deploy`")
        return
    for line in rewritten.lines() if rewritten else ():
        out.print(line, highlight=False, markup=False)
