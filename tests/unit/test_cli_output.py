"""What the command line prints: flags that look like flags, and whole plain lines without a terminal."""

from __future__ import annotations

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
