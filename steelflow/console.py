"""What every command shares: the consoles, the error guard, warnings, and the common options.

An error of steelflow's own becomes one red line and its exit code (a traceback only with ``--debug``);
every line is redacted first: an error naming a server may carry its URL, and the URL a password.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from steelflow import config, redact
from steelflow.errors import SteelflowError

# soft_wrap: without a terminal Rich assumes 80 columns and would break a long line mid-sentence in a DVC
# or CI log; lines stay whole (tables still fit the width).
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
state = {"debug": False}

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a param: dotted.key=value (YAML value); repeatable"),
]

F = TypeVar("F", bound=Callable[..., Any])
FLAG = ""  # metavar of a boolean flag: Typer would show "<bool>", as if it took a value
SHOWN = 5  # names listed in a one-line warning


def guard(fn: F) -> F:
    """Turn steelflow's own errors into one red line and the error's exit code (tracebacks with --debug).
    The line is redacted: an error naming a server may carry its URL, and the URL a password."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SteelflowError as e:
            if state["debug"]:
                raise
            err.print(
                Text.assemble(("error: ", "bold red"), redact.redact(str(e))), highlight=False, soft_wrap=True
            )
            raise typer.Exit(e.exit_code) from None

    return wrapper  # type: ignore[return-value]


def warn(line: str) -> None:
    err.print(
        Text.assemble(("warning: ", "bold yellow"), redact.redact(line)), highlight=False, soft_wrap=True
    )


def load(params: Path, overrides: list[str] | None) -> config.Params:
    return config.load_params(params, overrides or [])
