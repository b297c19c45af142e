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
from steelflow.errors import DriftDetected, SteelflowError


@_step
def monitor(
    batch: Annotated[
        Path | None,
        typer.Argument(help="folder of incoming images (with --build-reference: known-good ones)"),
    ] = None,
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
    model: Annotated[
        str | None, typer.Option(help="model URI (default: models:/<registry.name>@champion)")
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
    from steelflow.monitor import monitor as run
    from steelflow.monitor import track as log

    p = _params(params, set_)
    if build_reference:
        target = build(p, batch, model, use_model=not no_model)
        out.print(f"monitor: reference written → {target}")
        return
    if batch is None:
        raise config.ConfigError("monitor: give the folder of images to compare (or --build-reference)")
    outcome = run(p, batch, model, use_model=not no_model)
    if track:
        try:
            log(p, outcome)
        except SteelflowError as e:  # the verdict is written and is what a scheduler acts on
            _warn(f"monitor: not logged to MLflow ({e})")
    result = outcome.result
    for name, m in result["measures"].items():
        flag = "DRIFT" if m["drifted"] else "ok"
        out.print(f"  {name:<11} {m['test']} {m['statistic']:.4f}  threshold {m['threshold']:.4f}  {flag}")
    shown = f"{outcome.json_path}, {outcome.html_path}"
    if outcome.drifted:
        raise DriftDetected(
            f"monitor: {result['batch']} drifted from the reference on {', '.join(outcome.drifted)} "
            f"({result['images']} images; false-alarm rate {result['false_alarm_rate']}) → {shown}"
        )
    out.print(f"monitor: no drift in {result['images']} images of {result['batch']} → {shown}")
