"""A tracking server that dies mid-step, for real: `mlflow server` is SIGKILLed while `steelflow train` runs
(a subprocess, killed after its first epoch line) and while `steelflow register` logs its model. Each step
ends within the retry budget with its exit code (10 tracking, 7 registry) and one line, never a traceback;
the run a dead training leaves is continued by `train --resume` or ended by a fresh `train`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from steelflow import paths
from steelflow.cli import app
from tests.support.helpers import repo_params, write_params
from tests.support.servers import RestartableMlflowServer, restartable_mlflow_server

pytestmark = pytest.mark.integration

EPOCHS = 6  # long enough that the server dies mid-training (an epoch takes seconds), short enough to resume
BUDGET_S = 90  # the default budget is 47 s at worst (a refused connection: about 7 s)
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[tuple[Path, RestartableMlflowServer]]:
    """A tracking server that can die and come back, and a small project (the cwd) ready to train."""
    root = tmp_path_factory.mktemp("failures")
    folder = root / "project"
    folder.mkdir()
    write_params(
        folder,
        repo_params(
            data={"synthetic": {"per_class": 12, "image_size": 64, "seed": 0}, "cache_size": 32},
            model={"image_size": 32},
            train={"epochs": 1},
            registry={"challenger": "always"},
            mlflow={"experiment": "failures"},
        ),
    )
    cwd = os.getcwd()
    with restartable_mlflow_server(root / "server") as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", server.uri)
        os.chdir(folder)
        try:
            for step in ("ingest", "validate", "split", "corrupt"):
                result = runner.invoke(app, [step])
                assert result.exit_code == 0, f"{step}: {result.output}"
            yield folder, server
        finally:
            os.chdir(cwd)


def _train(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "steelflow", "train", "--set", f"train.epochs={EPOCHS}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _after_first_epoch(proc: subprocess.Popen) -> list[str]:
    """Read the training's output up to its first epoch line (the run is open and logging by then)."""
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(f"epoch 1/{EPOCHS}"):
            return lines
    raise AssertionError(f"training ended before its first epoch:\n{''.join(lines)}")


def _status(server: RestartableMlflowServer, run_id: str) -> str:
    return mlflow.MlflowClient(server.uri).get_run(run_id).info.status


def test_a_server_killed_mid_training_fails_it_soon_with_exit_10_and_resume_continues_the_same_run(project):
    folder, server = project
    server.start()
    proc = _train()
    lines = _after_first_epoch(proc)
    server.kill()
    killed = time.monotonic()
    rest, _ = proc.communicate(timeout=300)
    elapsed = time.monotonic() - killed
    output = "".join(lines) + rest
    assert proc.returncode == 10, output
    assert elapsed < BUDGET_S, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and server.uri in errors[0] and "gave up after 3 retries in" in errors[0], output
    run_id = paths.CHECKPOINT_RUN.read_text().strip()

    server.start()
    assert _status(server, run_id) == "RUNNING"  # nobody could tell the server it ended
    result = runner.invoke(app, ["train", "--resume", "--set", f"train.epochs={EPOCHS}"])
    assert result.exit_code == 0, result.output
    assert paths.MLFLOW_RUN.read_text().strip() == run_id  # the same run, continued
    assert _status(server, run_id) == "FINISHED"
    client = mlflow.MlflowClient(server.uri)
    steps = [m.step for m in client.get_metric_history(run_id, "val/accuracy")]
    assert sorted(set(steps)) == list(range(1, EPOCHS + 1)), steps  # the epochs go on from the checkpoint
    assert not paths.CHECKPOINT_RUN.exists()


def test_a_fresh_train_ends_the_run_a_killed_training_left_running(project):
    folder, server = project
    server.start()
    proc = _train()
    _after_first_epoch(proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    left = paths.CHECKPOINT_RUN.read_text().strip()
    assert _status(server, left) == "RUNNING"

    result = runner.invoke(app, ["train"])
    assert result.exit_code == 0, result.output
    old = mlflow.MlflowClient(server.uri).get_run(left)
    assert old.info.status == "KILLED"
    assert "later `steelflow train`" in old.data.tags["steelflow.ended"]
    new = paths.MLFLOW_RUN.read_text().strip()
    assert new != left and _status(server, new) == "FINISHED"


def test_a_server_killed_mid_register_fails_it_with_exit_7_and_one_line(project, monkeypatch):
    folder, server = project
    server.start()
    for step in ("train", "evaluate"):
        result = runner.invoke(app, [step])
        assert result.exit_code == 0, f"{step}: {result.output}"
    import mlflow.pyfunc

    log_model = mlflow.pyfunc.log_model

    def dies_first(*args, **kwargs):  # the server dies just as the model is logged
        server.kill()
        return log_model(*args, **kwargs)

    monkeypatch.setattr(mlflow.pyfunc, "log_model", dies_first)
    started = time.monotonic()
    result = runner.invoke(app, ["register"])
    elapsed = time.monotonic() - started
    assert result.exit_code == 7, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and server.uri in errors[0] and "gave up after" in errors[0], result.output
    assert elapsed < BUDGET_S, result.output
    assert mlflow.active_run() is None  # the re-opened run was let go in this process
