"""``steelflow <step>``: one command per step, made from its declaration (:class:`steelflow.step.Step`).

Each command takes ``--params``/``--set`` and the step's own :class:`~steelflow.step.Option` s, loads the
typed config, calls the step with its sections, and prints the step's summary lines (``warning: …``
lines on stderr). No step logic lives here.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.text import Text

from steelflow import config
from steelflow.console import FLAG, ParamsOpt, SetOpt, guard, load, out, warn
from steelflow.runs import step_run
from steelflow.step import Step


def command(step: Step) -> click.Command:
    """The click command of ``step``."""

    def run(params: Path = config.DEFAULT_PARAMS, set_: list[str] | None = None, **options: Any) -> None:
        loaded = load(params, set_)
        with step_run(step, loaded, options) as record:  # a run of its own under a pipeline's parent run
            result = step.call(loaded, **options)
            record(result)
        for line in step.lines(result):
            if line.startswith("warning: "):
                warn(line.removeprefix("warning: "))
            else:
                out.print(Text(line), highlight=False, soft_wrap=True)

    parameters = [
        inspect.Parameter(
            "params", inspect.Parameter.KEYWORD_ONLY, default=config.DEFAULT_PARAMS, annotation=ParamsOpt
        ),
        inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SetOpt),
    ]
    for o in step.options:
        spelling = [o.flag or f"--{o.name.replace('_', '-')}", *([o.short] if o.short else [])]
        metavar = {"metavar": FLAG} if o.type is bool else {}
        annotation = Annotated[o.type, typer.Option(*spelling, help=o.help, **metavar)]
        parameters.append(
            inspect.Parameter(
                o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=annotation
            )
        )
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    run.__doc__ = step.help
    run.__name__ = step.name
    app = typer.Typer(add_completion=False)
    app.command(step.name)(guard(run))
    return typer.main.get_command(app)
