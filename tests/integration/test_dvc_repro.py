"""`dvc repro` for real, in a temporary copy of the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.helpers import SMALL, clone_repo, run, sh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository in a fresh git repo, with small params (train takes tune's values)."""
    # gates open: SMALL's 2-epoch model must still become the challenger (registration is gated)
    gates = {"min_clean_accuracy": 0, "min_worst_accuracy": 0, "min_holdout_accuracy": 0, "max_drop": 1}
    tuned = {**SMALL, "train": {**SMALL["train"], "use_tuned": True}, "registry": {"gates": gates}}
    return clone_repo(tmp_path_factory.mktemp("clone"), tuned)


def test_repro_runs_every_stage_then_nothing_then_only_what_a_param_touches(clone):
    out = sh("dvc", "repro", cwd=clone)
    stages = ("ingest", "validate", "split", "corrupt", "tune", "train", "evaluate", "gate", "register")
    for stage in stages:
        assert f"Running stage '{stage}'" in out
    assert out.index("Running stage 'tune'") < out.index("Running stage 'train'")
    assert out.index("Running stage 'gate'") < out.index("Running stage 'register'")
    for output in (
        "data/manifest.csv",
        "reports/validation/index.html",
        "data/splits/test.csv",
        "data/cache/splits/train/index.json",  # a shard set: WebDataset tars and their index
        "data/cache/splits/train/shard-000000.tar",
        "data/cache/corrupted/noise_20db/index.json",
        "data/corrupted/index.csv",
        "reports/corruptions.png",
        "models/model.pt",
        "metrics/evaluate.json",
        "reports/robustness.md",
        "reports/plots/confusion_matrix.png",
        "mlflow.db",  # the default tracking store, at the project root
        "optuna.db",  # the default study storage, at the project root
        "reports/tuning/best_params.yaml",
        "reports/tuning/plots/history.png",
        "reports/registration.json",
        "reports/model_card.md",
    ):
        assert (clone / output).is_file(), output

    again = sh("dvc", "repro", cwd=clone)
    assert "Running stage" not in again
    assert "up to date" in again

    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["corrupt"]["conditions"][2]["snr_db"] = 30
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = sh("steelflow", "repro", cwd=clone)  # `dvc repro` under one MLflow parent run
    assert "Running stage 'corrupt'" in changed
    assert "Running stage 'evaluate'" in changed
    for stage in ("ingest", "validate", "split", "tune", "train"):
        assert f"Running stage '{stage}'" not in changed

    # one run tree: the parent holds the params, and each stage that ran is a child run
    from mlflow import MlflowClient

    from steelflow.tracking.tree import STEP_TAG, children

    client = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("steelflow").experiment_id
    (parent,) = client.search_runs([experiment], filter_string="tags.`steelflow.kind` = 'pipeline'")
    assert parent.info.status == "FINISHED" and "train.lr" in parent.data.params
    ran = [r.data.tags[STEP_TAG] for r in children(client, parent.info.run_id)]
    assert ran == ["corrupt", "evaluate", "gate", "register"]


def test_repro_ends_with_a_registered_challenger_in_mlflow_db(clone):
    sh("dvc", "repro", cwd=clone)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{clone / 'mlflow.db'}", f"sqlite:///{clone / 'mlflow.db'}")
    registration = json.loads((clone / "reports/registration.json").read_text())
    challenger = client.get_model_version_by_alias("steel-defect-classifier", "challenger")
    assert str(challenger.version) == str(registration["version"])
    assert challenger.run_id == (clone / "metrics/mlflow_run_id.txt").read_text().strip()


def test_train_runs_with_the_tuned_values(clone):
    sh("dvc", "repro", cwd=clone)
    best = yaml.safe_load((clone / "reports/tuning/best_params.yaml").read_text())["params"]
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("steelflow")
    run_id = (clone / "metrics/mlflow_run_id.txt").read_text().strip()
    logged = client.get_run(run_id).data.params
    assert logged["train.use_tuned"] == "True"
    for key, value in best.items():
        assert logged[key] == str(value), key
    trial_runs = client.search_runs([experiment.experiment_id], "tags.`steelflow.step` = 'tune-trial'")
    assert len(trial_runs) == SMALL["tune"]["n_trials"]


def test_dvc_metrics_show_prints_the_headline_and_reads_the_full_sets_when_named(clone):
    sh("dvc", "repro", cwd=clone)
    files = json.loads(sh("dvc", "metrics", "show", "--json", cwd=clone))[""]["data"]  # "": the workspace
    assert set(files) == {"metrics/summary.json", "reports/gates.json"}
    assert set(files["metrics/summary.json"]["data"]) == {
        "clean_accuracy",
        "worst_accuracy",
        "holdout_worst_accuracy",
    }
    table = sh("dvc", "metrics", "show", cwd=clone)  # two rows a person reads, not 155 columns
    assert "clean_accuracy" in table and "conditions." not in table and "counts." not in table, table
    full = ("reports/split.json", "reports/validation.json", "metrics/train.json", "metrics/evaluate.json")
    named = json.loads(sh("dvc", "metrics", "show", "--json", *full, cwd=clone))[""]["data"]
    assert set(named) == set(full)
    assert "blur_5px" in named["metrics/evaluate.json"]["data"]["conditions"]
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=clone)


def test_data_shard_size_is_a_param_of_the_caching_stages(clone):
    sh("dvc", "repro", cwd=clone)
    original = (clone / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["data"]["shard_size"] = 7
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = json.loads(sh("dvc", "status", "--json", cwd=clone))
    finally:
        (clone / "params.yaml").write_text(original)
    assert {"split", "corrupt"} <= set(status), status
    assert "data.shard_size" in json.dumps(status["split"]) and "data.shard_size" in json.dumps(
        status["corrupt"]
    )
    assert not {"ingest", "validate"} & set(status), status
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=clone)


# Last in the file: it changes params.yaml in the shared clone (and so adds a study), which the tests
# above, counting one study's trials, must not see.
def test_a_robust_training_param_reruns_the_model_stages_not_the_data_stages(clone):
    sh("dvc", "repro", cwd=clone)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["train"]["robust"]["noise"]["snr_db"] = [15, 35]
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    retrained = sh("dvc", "repro", cwd=clone)
    for stage in ("tune", "train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in retrained
    for stage in ("ingest", "validate", "split", "corrupt"):
        assert f"Running stage '{stage}'" not in retrained


# After the robust-training test: it needs a trained, registered model, and leaves params.yaml failing.
def test_a_failing_gate_registers_nothing_and_fails_repro_only_with_fail_on_gate(clone):
    sh("dvc", "repro", cwd=clone)
    registered = json.loads((clone / "reports/registration.json").read_text())
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["registry"]["gates"] |= {"min_clean_accuracy": 1.0, "min_worst_accuracy": 1.0}
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run("dvc", "repro", cwd=clone)  # a verdict, not a failure: repro ends, register says why
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "clean accuracy" in out and "FAIL" in out  # the gate table
    assert "Running stage 'register'" in out and "nothing registered" in out
    record = json.loads((clone / "reports/registration.json").read_text())
    assert record["registered"] is False and record["challenger"] == str(registered["version"])
    assert "not registered" in (clone / "reports/model_card.md").read_text()
    params["registry"]["fail_on_gate"] = True  # for CI: the refusal fails the run before register
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run("dvc", "repro", cwd=clone)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Running stage 'gate'" in out and "Running stage 'register'" not in out
    assert "exited with 8" in out
    verdict = json.loads((clone / "reports/gates.json").read_text())
    assert verdict["register"] is False
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{clone / 'mlflow.db'}", f"sqlite:///{clone / 'mlflow.db'}")
    challenger = client.get_model_version_by_alias("steel-defect-classifier", "challenger")
    assert str(challenger.version) == str(registered["version"])  # nothing registered
