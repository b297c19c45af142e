"""``steelflow <step>``: the command line, one thin adapter per step.

Each command loads params.yaml (plus ``--set`` overrides) into the typed config, hands its sections to the
step function, and prints a one-line summary. No step logic lives here.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from steelflow import config, paths
from steelflow.errors import SteelflowError

app = typer.Typer(
    help="steelflow: steel-surface images to a gated, robustness-checked model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
_state = {"debug": False}

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a param: dotted.key=value (YAML value); repeatable"),
]

F = TypeVar("F", bound=Callable[..., Any])


def _step(fn: F) -> F:
    """Turn steelflow's own errors into one red line and the error's exit code (tracebacks with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SteelflowError as e:
            if _state["debug"]:
                raise
            err.print(Text.assemble(("error: ", "bold red"), str(e)), highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _params(params: Path, overrides: list[str] | None) -> config.Params:
    return config.load_params(params, overrides or [])


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    _state["debug"] = debug


@app.command()
@_step
def ingest(params: ParamsOpt = config.DEFAULT_PARAMS, set_: SetOpt = None) -> None:
    """Bring data.source into data/images and write data/manifest.csv."""
    from steelflow.steps.ingest import ingest as run

    p = _params(params, set_)
    result = run(p.data)
    out.print(
        f"ingest: {result.n_images} images, {len(result.per_class)} classes ({result.layout}) "
        f"→ data/manifest.csv"
    )


@app.command()
@_step
def validate(params: ParamsOpt = config.DEFAULT_PARAMS, set_: SetOpt = None) -> None:
    """Check the manifest with Great Expectations → reports/validation.json and Data Docs."""
    from steelflow.steps.validate import validate as run

    p = _params(params, set_)
    result = run(paths.MANIFEST, p.data, p.validate_)
    dropped = f", {len(result.dropped)} duplicate(s) dropped" if result.dropped else ""
    out.print(f"validate: {result.n_images} images passed{dropped} → reports/validation.json")


@app.command()
@_step
def split(params: ParamsOpt = config.DEFAULT_PARAMS, set_: SetOpt = None) -> None:
    """Stratified train/val/test split → data/splits/*.csv, reports/split.json, data/cache/splits."""
    from steelflow.steps.split import split as run

    p = _params(params, set_)
    result = run(p.data, p.split)
    totals = ", ".join(f"{name} {sum(c.values())}" for name, c in result.counts.items())
    out.print(f"split: {totals} → data/splits/")


@app.command()
@_step
def corrupt(params: ParamsOpt = config.DEFAULT_PARAMS, set_: SetOpt = None) -> None:
    """Corrupted copies of the test split → data/corrupted/, data/cache/corrupted, reports/corruptions.png."""
    from steelflow.steps.corrupt import corrupt as run

    p = _params(params, set_)
    result = run(p.data, p.corrupt)
    out.print(
        f"corrupt: {result.n_images} test images × {len(result.conditions)} conditions → data/corrupted/"
    )


def main() -> None:
    app(prog_name="steelflow")


if __name__ == "__main__":
    sys.exit(main())
