"""What the command line prints: flags that look like flags, and whole plain lines without a terminal."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from steelflow import progress
from steelflow.cli import app


def test_boolean_options_are_flags_not_values():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    (resume,) = [line for line in result.output.splitlines() if "--resume" in line]
    assert "--no-resume" in resume and "<bool>" not in resume
    (track,) = [line for line in result.output.splitlines() if "--track" in line]
    assert "--no-track" in track and "<bool>" not in track
    promote = CliRunner().invoke(app, ["promote", "--help"], env={"COLUMNS": "160"}).output
    (force,) = [line for line in promote.splitlines() if "--force " in line]
    assert "<bool>" not in force


def test_without_a_terminal_loops_draw_no_bars_but_lines_stay(capsys):
    assert list(progress.track(range(3), "epoch 1")) == [0, 1, 2]
    progress.echo("epoch 1/2: train loss 1.0000 accuracy 0.500, val loss 1.0000 accuracy 0.500 (1.0 s)")
    err = capsys.readouterr().err
    assert err == "epoch 1/2: train loss 1.0000 accuracy 0.500, val loss 1.0000 accuracy 0.500 (1.0 s)\n"
    assert "\x1b" not in err  # no control characters in a log


def test_steps_turn_mlflow_download_bars_off(monkeypatch):
    import os

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    CliRunner().invoke(app, ["models", "--image-size", "32", "--json"])
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"


# A command of the real CLI that makes the noise `dvc repro` showed, and a warning of steelflow's own.
NOISY = """
import logging, sys, warnings
import typer
from steelflow.cli import app
from steelflow.console import warn

@app.command("noisy")
def noisy() -> None:
    import mlflow  # configures its loggers as when a step imports it
    logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
    logging.getLogger("mlflow.pyfunc").info("Validating input example against model signature")
    logging.getLogger("mlflow.store.db.utils").warning("a database warning of MLflow's")
    warnings.warn_explicit("PedAnovaImportanceEvaluator computes the importances", UserWarning,
                           "evaluator.py", 204, module="optuna.importance._ped_anova.evaluator")
    warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning,
                           "copyreg.py", 105, module="copyreg")
    warnings.warn_explicit("a future change of steelflow's", FutureWarning, "x.py", 1, module="steelflow.x")
    warn("a warning line of steelflow's")

app(sys.argv[1:], prog_name="steelflow")
"""
THIRD_PARTY = ("Creating initial MLflow", "Validating input example", "PedAnova", "LeafSpec")


def _noisy(*args: str, **env: str) -> str:
    import os
    import subprocess
    import sys

    full = {k: v for k, v in os.environ.items() if k not in ("STEELFLOW_VERBOSE", "MLFLOW_LOGGING_LEVEL")}
    command = [sys.executable, "-c", NOISY, *args, "noisy"]
    proc = subprocess.run(command, capture_output=True, text=True, env={**full, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_third_party_info_lines_and_warnings_stay_off_the_console_but_ours_show():
    err = _noisy()
    assert not [noise for noise in THIRD_PARTY if noise in err], err
    assert "a warning line of steelflow's" in err and "a future change of steelflow's" in err
    assert "a database warning of MLflow's" in err  # a library's warnings (the log kind) still show


@pytest.mark.slow  # three processes that import MLflow
def test_verbose_or_debug_shows_the_libraries_lines():
    for shown in (_noisy("--verbose"), _noisy("--debug"), _noisy(STEELFLOW_VERBOSE="1")):
        assert all(noise in shown for noise in THIRD_PARTY), shown
        assert "a warning line of steelflow's" in shown
