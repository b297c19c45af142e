"""What every command shares: the consoles, the error guard, warnings, and the common options.

An error of steelflow's own becomes one red line and its exit code (a traceback only with ``--debug``);
every line is redacted first: an error naming a server may carry its URL, and the URL a password.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
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
state = {"debug": False, "verbose": False}

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a param: dotted.key=value (YAML value); repeatable"),
]

F = TypeVar("F", bound=Callable[..., Any])
FLAG = ""  # metavar of a boolean flag: Typer would show "<bool>", as if it took a value
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        metavar=FLAG,
        envvar="STEELFLOW_VERBOSE",
        help="show the libraries' INFO lines and warnings, and every line of a local pipeline run",
    ),
]
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


# What libraries print that a user of steelflow cannot act on: shown with --verbose (STEELFLOW_VERBOSE=1)
# or --debug. Loggers whose INFO lines are hidden (their warnings stay): MLflow creating and migrating its
# database, and checking an input example; alembic and SQLAlchemy under it.
QUIET_LOGGERS = ("mlflow.store.db", "mlflow.pyfunc", "alembic", "sqlalchemy")
_LIBRARIES = (
    r"(torch|torchvision|onnx|onnxscript|onnxruntime|mlflow|optuna|kfp|great_expectations|copyreg)(\.|$)"
)
QUIET_WARNINGS = (
    # notices addressed to the libraries' authors (copyreg: torch.export's, raised while it copies a graph)
    (FutureWarning, _LIBRARIES),
    (DeprecationWarning, _LIBRARIES),
    (UserWarning, r"optuna\.importance\."),  # PED-ANOVA on its target's direction (our plot's robust score)
)


def quiet(verbose: bool, debug: bool = False) -> None:
    """Hide :data:`QUIET_LOGGERS`' INFO lines and :data:`QUIET_WARNINGS`, unless ``verbose`` or ``debug``.
    ``verbose`` goes into the environment, where torchrun's ranks and kfp's local tasks find it. Warnings
    of steelflow's own (its modules', and ``warning:`` lines) always show."""
    state["verbose"] = verbose
    if verbose:
        os.environ["STEELFLOW_VERBOSE"] = "1"
    if verbose or debug:
        return
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for category, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", category=category, module=module)


def warn(line: str) -> None:
    err.print(
        Text.assemble(("warning: ", "bold yellow"), redact.redact(line)), highlight=False, soft_wrap=True
    )


def load(params: Path, overrides: list[str] | None) -> config.Params:
    return config.load_params(params, overrides or [])
