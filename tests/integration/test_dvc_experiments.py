"""`dvc exp run --temp` and `--queue` for real: the experiments' records land in the project's stores.

DVC runs these experiments in a fresh clone under .dvc/tmp/exps/ and deletes it afterwards; relative
sqlite:/// stores used to resolve there, so the MLflow runs, model versions and Optuna trials vanished.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
from pathlib import Path

import pytest

from tests.support.helpers import REPO, SMALL, clone_repo, sh
from tests.support.helpers import run as run_cmd

pytestmark = pytest.mark.integration

NAME = "steel-defect-classifier"
OPEN_GATES = {
    "min_clean_accuracy": 0.0,
    "min_worst_accuracy": 0.0,
    "min_holdout_accuracy": 0.0,
    "max_drop": 1.0,
}


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> Path:
    """One experiment run with --temp (gates open: it registers), then one queued and run by the queue
    worker with 2 epochs and a gate it fails (it must not move @challenger): its gate stage writes the
    refusal, register registers nothing, and the experiment succeeds with its metrics and verdict.

    Tuning keeps params.yaml's budget (``tune.max_epochs: null`` = train.epochs; first rung at 8 epochs),
    so a quick experiment's few epochs are below the first rung: the rungs follow the budget down (or, at
    one epoch, pruning is off), with one line saying so, instead of a refusal."""
    tune = {**SMALL["tune"], "max_epochs": None, "pruner": {"kind": "successive_halving", "min_epochs": 8}}
    tuned = {
        **SMALL,
        "train": {**SMALL["train"], "use_tuned": True},
        "tune": tune,
        "registry": {"gates": OPEN_GATES},
    }
    clone = clone_repo(tmp_path_factory.mktemp("exps"), tuned)
    out = sh("dvc", "exp", "run", "--temp", "-n", "exp-temp", cwd=clone)
    assert "the rungs are scaled to 1 and the top rung 2 epochs" in out, out  # train.epochs: 2
    assert "tune: trial 2/2 starts, 0 after it" in out and "; the study is done" in out, out
    sh(
        "dvc", "exp", "run", "--queue", "-n", "exp-queued",
        "-S", "train.epochs=1", "-S", "registry.gates.min_clean_accuracy=0.99",
        cwd=clone,
    )  # fmt: skip
    sh("dvc", "queue", "start", cwd=clone)
    logs = run_cmd("dvc", "queue", "logs", "-f", "exp-queued", cwd=clone)  # follows the task until it ends
    status = sh("dvc", "queue", "status", cwd=clone)
    # trying a worse setting is what experiments are for: the refusal is a verdict, not a failure
    assert "exp-queued" in status and "Success" in status, status
    out = logs.stdout + logs.stderr
    assert "Running stage 'gate'" in out and "Running stage 'register'" in out, out
    assert "nothing registered" in out, out
    # the README's `-S train.epochs=1`: a one-epoch budget has no room for a rung
    assert "(1 epoch, train.epochs) is not above tune.pruner.min_epochs (8): pruning is off" in out, out
    sh("dvc", "queue", "stop", "--kill", cwd=clone)
    return clone


def _client(clone: Path):
    import mlflow

    uri = f"sqlite:///{clone / 'mlflow.db'}"
    return mlflow.MlflowClient(uri, uri)


def test_experiments_log_into_the_project_stores_not_the_temporary_clones(experiments):
    client = _client(experiments)
    experiment = client.get_experiment_by_name("steelflow")
    # artifacts at the project root, where both experiments' runs put theirs
    assert experiment.artifact_location == (experiments / "mlruns").as_uri()
    runs = client.search_runs([experiment.experiment_id], "tags.`steelflow.step` = 'train'")
    by_exp = {r.data.tags.get("dvc.exp_name"): r for r in runs}
    assert set(by_exp) == {"exp-temp", "exp-queued"}
    baseline = sh("git", "rev-parse", "HEAD", cwd=experiments).strip()
    for run in by_exp.values():
        assert run.data.tags["dvc.exp_baseline_rev"] == baseline
        assert run.data.tags["mlflow.source.git.commit"] == baseline
        assert run.info.run_name.startswith("train casinet lr=")
        assert client.list_artifacts(run.info.run_id, "training")  # the files are in the project's mlruns/
        assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(experiments / "mlruns")
    # the version the --temp experiment registered, tagged with it
    challenger = client.get_model_version_by_alias(NAME, "challenger")
    assert challenger.tags["dvc.exp_name"] == "exp-temp"
    assert challenger.run_id == by_exp["exp-temp"].info.run_id
    assert challenger.tags["params_hash"] == by_exp["exp-temp"].data.tags["params_hash"]
    model = client.get_registered_model(NAME)  # what its page in the MLflow UI shows first
    assert model.description.startswith("Steel-surface defect classifier")
    assert model.tags["variant"] == "casinet" and "crazing" in model.tags["classes"]
    # the Optuna trials of both experiments' tune stages
    with sqlite3.connect(experiments / "optuna.db") as db:
        trials = db.execute("select count(*) from trials").fetchone()[0]
    assert trials >= SMALL["tune"]["n_trials"]
    assert not list((experiments / ".dvc/tmp/exps").glob("tmp*/mlflow.db"))


def test_a_model_below_the_gates_does_not_move_the_challenger(experiments):
    client = _client(experiments)
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert [v.tags["dvc.exp_name"] for v in versions] == ["exp-temp"]
    queued = client.search_runs(
        [client.get_experiment_by_name("steelflow").experiment_id], "tags.`dvc.exp_name` = 'exp-queued'"
    )
    assert queued[0].data.tags["steelflow.registered"].startswith("no")


def test_exp_show_lists_the_tuned_values_training_used_and_the_mlflow_run(experiments):
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=experiments))
    rows = {
        exp["name"]: exp["revs"][0]["data"] for baseline in shown for exp in baseline.get("experiments") or []
    }
    assert {"exp-temp", "exp-queued"} <= set(rows)
    refused = rows["exp-queued"]["metrics"]  # the refused experiment keeps its headline and its verdict
    assert set(refused) == {"metrics/summary.json", "reports/gates.json"}  # the full sets: outputs
    assert 0 <= refused["metrics/summary.json"]["data"]["clean_accuracy"] <= 1
    assert refused["reports/gates.json"]["data"]["register"] is False
    data = rows["exp-temp"]
    tuned = data["params"]["reports/tuning/best_params.yaml"]["data"]["params"]
    assert set(tuned) >= {"train.lr", "model.dropout"}
    run_id = data["metrics"]["reports/gates.json"]["data"]["run_id"]  # the training run the gate judged
    assert _client(experiments).get_run(run_id).data.tags["dvc.exp_name"] == "exp-temp"


def test_the_docs_exp_show_line_fits_a_120_column_terminal(experiments):
    """docs/pipeline.md's `dvc exp show --keep` line, as a reader pastes it: every column it keeps is shown
    (none collapsed to "…"), within 120 columns."""
    docs = (REPO / "docs/pipeline.md").read_text()
    line = next(x for x in docs.splitlines() if x.startswith("$ dvc exp show --drop"))
    table = sh(*shlex.split(line.removeprefix("$ ")), "--no-pager", cwd=experiments, env={"COLUMNS": "120"})
    lines = [x for x in table.splitlines() if x.strip()]
    assert max(map(len, lines)) <= 120 and "…" not in table, table
    header = next(x for x in lines if "Experiment" in x)
    for column in ("clean_accuracy", "worst_accuracy", "register", "train.epochs", "params.train.lr"):
        assert column in header, column
    assert "exp-temp" in table and "exp-queued" in table
