"""One run tree: under a parent run (``MLFLOW_RUN_ID``) every step is a child run, train's and evaluate's
metrics link to the logged model and the datasets (MLflow 3's LoggedModel), and a task run that Kubeflow's
MLflow integration made is logged into, not nested under. A real MLflow store (SQLite) throughout."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from steelflow import config
from steelflow.scoring import CLEAN
from steelflow.tracking import tracking_uri
from steelflow.tracking.pipeline import pipeline_run
from steelflow.tracking.tree import PARENT_ENV, PARENT_TAG, STEP_TAG, children
from tests.support.registered_project import cli


@pytest.fixture
def client(project, monkeypatch):
    monkeypatch.delenv(PARENT_ENV, raising=False)
    p = config.load_params()
    return p, mlflow.MlflowClient(tracking_uri(p.mlflow))


def _step_of(run) -> str:
    return run.data.tags[STEP_TAG]


def test_every_step_is_a_child_of_the_pipeline_run_and_evaluation_links_model_and_datasets(client):
    p, c = client
    tree = p.raw()
    with pipeline_run(p.mlflow, tree, "pipeline test") as parent:
        for step in ("ingest", "validate", "split", "corrupt", "train", "evaluate"):
            cli(step)
    top = c.get_run(parent)
    assert top.info.status == "FINISHED"
    assert top.data.params["train.lr"] == str(tree["train"]["lr"])  # the parent holds the params
    assert top.data.tags["steelflow.kind"] == "pipeline"
    kids = children(c, parent)
    assert [_step_of(r) for r in kids] == ["ingest", "validate", "split", "corrupt", "train", "evaluate"]
    assert all(r.info.status == "FINISHED" for r in kids)
    split = next(r for r in kids if _step_of(r) == "split")
    assert any(k.startswith("split/") for k in split.data.metrics)  # the numbers of reports/split.json
    summary = c.download_artifacts(split.info.run_id, "summary.txt")
    assert "split" in Path(summary).read_text()

    # evaluate scores the model training logged: its metrics carry that model and each evaluation set
    train = next(r for r in kids if _step_of(r) == "train")
    assert f"eval/{CLEAN}/accuracy" in train.data.metrics  # still in the training run, as before
    (model,) = mlflow.search_logged_models(
        experiment_ids=[train.info.experiment_id],
        filter_string=f"source_run_id = '{train.info.run_id}' AND name = 'model'",
        output_format="list",
    )
    by_set = {(m.key, m.dataset_name) for m in c.get_logged_model(model.model_id).metrics}
    assert (f"eval/{CLEAN}/accuracy", CLEAN) in by_set
    corrupted = {name for key, name in by_set if key.endswith("/accuracy") and name != CLEAN}
    assert {cond.name for cond in p.corrupt.all_conditions} <= corrupted


def test_the_parent_run_fails_with_the_pipeline(client):
    p, c = client
    with pytest.raises(RuntimeError), pipeline_run(p.mlflow, p.raw(), "pipeline test") as parent:
        raise RuntimeError("a stage failed")
    assert c.get_run(parent).info.status == "FAILED"


def test_a_task_run_made_by_kubeflows_mlflow_integration_is_logged_into_simulated_no_cluster(
    client, monkeypatch
):
    """What KEP-12862's driver does before a task starts (simulated: there is no cluster here): a parent
    run for the pipeline run, a nested run for the task, ``MLFLOW_RUN_ID`` set to the nested one."""
    p, c = client
    cli("ingest")
    cli("validate")
    experiment = c.get_experiment_by_name(p.mlflow.experiment) or c.get_experiment(
        c.create_experiment(p.mlflow.experiment)
    )
    exp_id = experiment.experiment_id
    kfp_parent = c.create_run(exp_id, run_name="kfp run").info.run_id
    task = c.create_run(exp_id, run_name="split", tags={PARENT_TAG: kfp_parent}).info.run_id
    monkeypatch.setenv(PARENT_ENV, task)
    cli("split")
    logged = c.get_run(task)
    assert _step_of(logged) == "split" and any(k.startswith("split/") for k in logged.data.metrics)
    assert children(c, task) == []  # not nested one level further
    assert [r.info.run_id for r in children(c, kfp_parent)] == [task]


def test_without_a_parent_the_data_steps_log_no_run(client):
    p, c = client
    cli("ingest")
    experiment = c.get_experiment_by_name(p.mlflow.experiment)
    assert experiment is None or not c.search_runs([experiment.experiment_id])
