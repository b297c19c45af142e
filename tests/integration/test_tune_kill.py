"""Killed tuning workers: their trial is failed by its stale heartbeat and retried; the study completes.

Real processes and a real SIGKILL: `steelflow tune` runs as a subprocess on a SQLite study, and the test
kills a worker (or everything) while a trial is running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from typer.testing import CliRunner

from steelflow.cli import app
from steelflow.config import load_params
from steelflow.steps import tune as tuning
from steelflow.tuning import study as study_machinery
from steelflow.tuning.objective import BASELINE
from tests.support.helpers import repo_params, write_params

pytestmark = pytest.mark.integration
N_TRIALS = 3


@pytest.fixture
def kill_project(project: Path) -> Path:
    tree = repo_params()
    # trials long enough (~5 s) to be caught running; a dead worker's trial is failed 3 s after its last beat
    tree["tune"] |= {
        "n_trials": N_TRIALS,
        "max_epochs": 40,
        "objective": "accuracy",  # reports every epoch: a running trial shows in trial_intermediate_values
        "pruner": {"kind": "none"},
        "heartbeat_seconds": 1,
        "grace_seconds": 3,
    }
    write_params(project, tree)
    runner = CliRunner()
    for step in ("ingest", "validate", "split"):
        result = runner.invoke(app, [step])
        assert result.exit_code == 0, result.output
    return project


def _study() -> optuna.Study:
    params = load_params("params.yaml")
    return optuna.load_study(
        study_name=tuning.study_name(params), storage=study_machinery.storage_url(params.tune)
    )


def _tune(*args: str, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "steelflow", "tune", "--no-track", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=new_session,
    )


def _running_trial(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    """Wait until some trial is running and has reported an epoch; its number and worker ("host:pid").

    Reads the SQLite file read-only: opening it through Optuna while `steelflow tune` creates the schema
    would race it.
    """
    deadline = time.time() + timeout
    query = """
        SELECT t.number, a.value_json FROM trials t
        JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'worker'
        WHERE t.state = 'RUNNING'
          AND EXISTS (SELECT 1 FROM trial_intermediate_values v WHERE v.trial_id = t.trial_id)
    """
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            with contextlib.closing(sqlite3.connect("file:optuna.db?mode=ro", uri=True)) as db:
                row = db.execute(query).fetchone()
        except sqlite3.Error:  # no file or no tables yet
            row = None
        if row:
            return row[0], json.loads(row[1])
        time.sleep(0.2)
    raise AssertionError("no trial started running")


def _assert_complete(study: optuna.Study, killed: int) -> None:
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state == TrialState.FAIL  # failed by its stale heartbeat, not left RUNNING
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed]
    assert len(retries) == 1 and retries[0].state in tuning.FINISHED
    assert retries[0].params == by_number[killed].params  # the same point of the space, run again
    counted = [t for t in trials if t.number != killed]
    assert len(counted) == N_TRIALS
    assert sorted(t.number for t in trials) == list(range(N_TRIALS + 1))
    # one baseline counts: trial 0, or the retry of trial 0 when its worker was the one killed
    baselines = [t.number for t in counted if t.user_attrs.get(BASELINE)]
    assert baselines == ([retries[0].number] if killed == 0 else [0])


def test_a_killed_worker_trial_is_retried_while_the_other_worker_goes_on(kill_project):
    proc = _tune("--workers", "2")
    victim, worker = _running_trial(proc)
    pid = int(worker.rsplit(":", 1)[1])
    assert pid != proc.pid  # a worker process, not the parent
    os.kill(pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "died" in output
    _assert_complete(_study(), victim)
    assert Path("reports/tuning/best_params.yaml").is_file()


def test_rerunning_after_everything_was_killed_completes_the_study(kill_project):
    proc = _tune(new_session=True)
    victim, _ = _running_trial(proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert _study().trials[victim].state == TrialState.RUNNING  # nobody left to fail it
    assert not Path("reports/tuning/best_params.yaml").exists()

    rerun = _tune()
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    _assert_complete(_study(), victim)
    assert Path("reports/tuning/best_params.yaml").is_file()


def test_a_postgres_restart_during_tuning_is_survived(kill_project, monkeypatch):
    """The machine's real PostgreSQL is restarted while two workers train; they reconnect and finish."""
    storage = "postgresql://postgres@127.0.0.1:5432/test"
    monkeypatch.setenv("STEELFLOW_OPTUNA_STORAGE", storage)
    params = load_params("params.yaml")
    name = tuning.study_name(params)
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=storage)
    proc = _tune("--workers", "2")

    def running() -> list:
        try:
            return optuna.load_study(study_name=name, storage=storage).get_trials(
                states=(TrialState.RUNNING,)
            )
        except KeyError:  # not created yet
            return []

    deadline = time.time() + 120
    while not running():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no trial started"
        time.sleep(0.3)
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=120
    )
    try:
        output, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # say what the workers printed, not only that they took too long
        proc.kill()
        pytest.fail("steelflow tune did not finish in 300 s after the restart:\n" + proc.communicate()[0])
    assert proc.returncode == 0, output
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], output
    assert len(study_machinery.counted(trials)) == N_TRIALS
    assert not [t for t in trials if t.state == TrialState.FAIL], output  # the restart cost no trial
    optuna.delete_study(study_name=name, storage=storage)
