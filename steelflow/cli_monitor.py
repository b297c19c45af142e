"""``steelflow monitor``: the drift watch over a batch of incoming images (:mod:`steelflow.monitor`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steelflow import config
from steelflow.console import FLAG, ParamsOpt, SetOpt, out
from steelflow.console import guard as _step
from steelflow.console import load as _params
from steelflow.console import warn as _warn


@_step
def monitor(
    batch: Annotated[
        Path | None,
        typer.Argument(help="folder of incoming images (with --build-reference: known-good ones)"),
    ] = None,
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="model: a models:/ or runs:/ URI, or a saved pyfunc folder (default: "
            "models:/<registry.name>@champion)"
        ),
    ] = None,
    no_model: Annotated[
        bool, typer.Option("--no-model", metavar=FLAG, help="quality measures only: no model is loaded")
    ] = False,
    build_reference: Annotated[
        bool,
        typer.Option(
            "--build-reference",
            metavar=FLAG,
            help="write monitor.reference from monitor.reference_split (or from BATCH) and stop",
        ),
    ] = False,
    track: Annotated[
        bool, typer.Option("--track/--no-track", metavar=FLAG, help="log the verdict to MLflow (best effort)")
    ] = True,
) -> None:
    """Compare a batch of images with the reference (quality measures and the model's confidence), write
    monitor.output/drift.json and drift.html; exit 15 when it drifted, 0 when not."""
    from steelflow.monitor import build_reference as build
    from steelflow.monitor import check

    p = _params(params, set_)
    if build_reference:
        target = build(p, batch, model, use_model=not no_model)
        out.print(f"monitor: reference written → {target}")
        return
    if batch is None:
        raise config.ConfigError("monitor: give the folder of images to compare (or --build-reference)")
    outcome = check(p, batch, model, use_model=not no_model, tracked=track)
    for warning in outcome.warnings:  # the verdict is written and is what a scheduler acts on
        _warn(warning)
    for line in outcome.lines():
        out.print(line)
    if outcome.drifted:
        raise outcome.alarm()
