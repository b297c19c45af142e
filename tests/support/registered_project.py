"""A project that trained, evaluated and registered a decent model into a real `mlflow server`: what the
registry and serving tests start from."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steelflow.cli import app
from tests.support.helpers import repo_params, write_params
from tests.support.servers import mlflow_server

NAME = "steel-defect-classifier"
runner = CliRunner()


def cli(*args: str, code: int = 0) -> str:
    """``steelflow ARGS`` in this process; asserts the exit code and returns what it printed."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, f"steelflow {' '.join(args)} → {result.exit_code}:\n{result.output}"
    return result.output


@contextlib.contextmanager
def registered_project(root: Path) -> Iterator[tuple[str, Path]]:
    """A tracking server and, as the current folder, a project whose pipeline ran through ``register``
    (version 1, a decent model of the synthetic data at 32 px); yields (tracking URI, project)."""
    project = root / "project"
    project.mkdir()
    tree = repo_params(
        data={"synthetic": {"per_class": 40, "image_size": 64, "seed": 0}, "cache_size": 32},
        model={"image_size": 32},
        train={"epochs": 10, "lr": 0.02, "batch_size": 8},
        registry={
            # every model becomes a version: these tests need a useless one to promote (and refuse)
            "challenger": "always",
            "gates": {
                "min_clean_accuracy": 0.3,
                "min_worst_accuracy": 0.0,
                "min_holdout_accuracy": None,
                "max_drop": 0.05,
            },
        },
    )
    write_params(project, tree)
    cwd = os.getcwd()
    with mlflow_server(root / "server") as uri, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        os.chdir(project)
        try:
            for step in ("ingest", "validate", "split", "corrupt", "train", "evaluate", "register"):
                cli(step)
            yield uri, project
        finally:
            os.chdir(cwd)
