"""Train and evaluate log to MLflow: params, epoch and per-condition metrics, artifacts, model, tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from steelflow.cli import app
from tests.support.helpers import repo_params, write_params

pytestmark = pytest.mark.integration

EPOCHS = 2


@pytest.fixture
def tracked_run(project, monkeypatch):
    uri = f"sqlite:///{project / 'tracking.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    write_params(
        project,
        repo_params(
            data={"synthetic": {"per_class": 12, "image_size": 64, "seed": 0}, "cache_size": 32},
            model={"image_size": 32},
            train={"epochs": EPOCHS},
            mlflow={"experiment": "tracking-test"},
        ),
    )
    runner = CliRunner()
    for step in ("ingest", "validate", "split", "corrupt", "train", "evaluate"):
        result = runner.invoke(app, [step])
        assert result.exit_code == 0, f"{step}: {result.output}"
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracking-test")
    runs = client.search_runs([experiment.experiment_id])
    return client, runs


def test_one_run_holds_training_and_evaluation(tracked_run):
    import mlflow

    client, runs = tracked_run
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_id == Path("metrics/mlflow_run_id.txt").read_text().strip()

    # a name that tells runs apart
    assert run.info.run_name == f"train casinet lr={repo_params()['train']['lr']:g}"  # no git here
    # params: what shapes the model, flattened; the whole tree as one artifact
    assert float(run.data.params["train.lr"]) == repo_params()["train"]["lr"]
    assert run.data.params["model.variant"] == "casinet"
    assert run.data.params["train.augment.hflip"] == "True"
    assert {k.split(".")[0] for k in run.data.params} == {"data", "split", "model", "train"}
    document = yaml.safe_load(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/params.yaml"))
    assert document["registry"]["name"] == "steel-defect-classifier" and "kubeflow" in document
    # per-epoch metrics, grouped by "/"
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert [m.step for m in history] == list(range(1, EPOCHS + 1))
    assert {"train/loss", "train/accuracy", "val/loss", "val/best_accuracy"} <= set(run.data.metrics)
    # final metrics per condition
    for condition in ("original", "luminance_1.0", "noise_20db", "blur_5px"):
        assert 0.0 <= run.data.metrics[f"eval/{condition}/accuracy"] <= 1.0
    # the hold-out block, per condition and summarised apart from the Table 1 six
    for condition in (c["name"] for c in repo_params()["corrupt"]["holdout"]):
        assert 0.0 <= run.data.metrics[f"eval/{condition}/accuracy"] <= 1.0
    assert 0.0 <= run.data.metrics["eval/holdout_worst_accuracy"] <= 1.0
    assert not any("." in k.split("/")[0] for k in run.data.metrics)
    # tags: evaluate re-opened the run without renaming it or rewriting its identity
    tags = run.data.tags
    for key in ("git_commit", "git_dirty", "data_version", "params_hash", "device"):
        assert tags.get(key), key
    assert tags["steelflow.step"] == "train"
    import hashlib

    assert tags["data_version"] == hashlib.md5(Path("data/manifest.csv").read_bytes()).hexdigest()
    # datasets: train and val (training), the test set and each condition (evaluation), by DVC md5
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    conditions = [
        c["name"] for c in repo_params()["corrupt"]["conditions"] + repo_params()["corrupt"]["holdout"]
    ]
    graded = (repo_params()["corrupt"].get("graded") or {}).get("families", {})
    conditions += [f"{family}_s{s}" for family in graded for s in range(1, 6)]  # the graded ladders' sets
    assert set(inputs) == {"train", "val", "original", *conditions}
    from steelflow.data import shards

    train = Path("data/cache/splits/train")  # a shard set: its digest is the sha256 of its index
    assert inputs["train"].dataset.digest == shards.digest(train)[:32]  # MLflow keeps 36 characters
    assert json.loads(inputs["train"].dataset.source) == {"uri": str(train)}
    train_tags = {t.key: t.value for t in inputs["train"].tags}
    assert train_tags["shards.sha256"] == shards.digest(train)
    assert train_tags["shards.images"] == str(len(shards.ShardSet(train)))
    context = {
        d.dataset.name: {t.key: t.value for t in d.tags}["mlflow.data.context"] for d in inputs.values()
    }
    assert (context["train"], context["val"], context["noise_20db"]) == (
        "training",
        "validation",
        "evaluation",
    )
    # artifacts: plots, robustness table; the checkpoint only with mlflow.log_checkpoints
    names = {
        a.path
        for folder in ("evaluation", "training")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert {"evaluation/robustness.md", "evaluation/accuracy_by_condition.png"} <= names
    assert "training/checkpoint.pt" not in names


def test_the_model_is_logged_and_loads_back(tracked_run):
    import mlflow
    import numpy as np

    client, runs = tracked_run
    models = mlflow.search_logged_models(experiment_ids=[runs[0].info.experiment_id], output_format="list")
    assert len(models) == 1 and models[0].source_run_id == runs[0].info.run_id
    loaded = mlflow.pyfunc.load_model(models[0].model_uri)
    logits = loaded.predict(np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32))
    assert np.asarray(logits).shape == (2, 6)
    # its input example is real images of the validation split, not zeros
    from mlflow.models import Model

    local = mlflow.artifacts.download_artifacts(models[0].model_uri)
    example = np.asarray(Model.load(local).load_input_example(local))
    assert example.shape == (2, 1, 32, 32) and 0.0 < example.max() <= 1.0 and example.std() > 0.01


def test_the_checkpoint_is_logged_when_asked(tracked_run):
    client, runs = tracked_run
    result = CliRunner().invoke(app, ["train", "--set", "mlflow.log_checkpoints=true"])
    assert result.exit_code == 0, result.output
    run_id = Path("metrics/mlflow_run_id.txt").read_text().strip()
    assert "training/checkpoint.pt" in {a.path for a in client.list_artifacts(run_id, "training")}
