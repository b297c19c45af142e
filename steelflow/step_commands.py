"""``steelflow <step>``: one command per step, made from its declaration (:class:`steelflow.step.Step`).

Each command takes ``--params``/``--set`` and the step's own :class:`~steelflow.step.Option` s, loads the
typed config, calls the step with its sections, and prints the step's summary lines (``warning: …``
lines on stderr). No step logic lives here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.text import Text

from steelflow import config
from steelflow.step import Step

FLAG = ""  # metavar of a boolean flag: Typer would show "<bool>", as if it took a value
ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a param: dotted.key=value (YAML value); repeatable"),
]


def command(
    step: Step,
    guard: Callable[[Callable[..., Any]], Callable[..., Any]],
    load: Callable[[Path, list[str] | None], config.Params],
    out: Console,
    warn: Callable[[str], None],
) -> click.Command:
    """The click command of ``step``; ``guard`` turns steelflow's errors into one line and an exit code."""

    def run(params: Path = config.DEFAULT_PARAMS, set_: list[str] | None = None, **options: Any) -> None:
        result = step.call(load(params, set_), **options)
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
    run.__doc__ = _help(step)
    run.__name__ = step.name
    app = typer.Typer(add_completion=False)
    app.command(step.name)(guard(run))
    return typer.main.get_command(app)


def _help(step: Step) -> str:
    """The first paragraph of the step function's docstring."""
    doc = inspect.getdoc(step.run) or f"The {step.name} step."
    return doc.split("\n\n")[0]
