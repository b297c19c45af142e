"""Where records go and what identifies them: stores anchored at the project root (DVC's during an
experiment), DVC experiment tags, one params hash, one bounded retry budget, moving a project with its
artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steelflow import config, project, tracking
from steelflow.cli import app
from steelflow.errors import ConfigError
from steelflow.registry import unreachable
from tests.support.helpers import repo_params, write_params


def test_relative_sqlite_stores_resolve_at_dvc_root_during_an_experiment(tmp_path, monkeypatch):
    temp_clone = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"
    temp_clone.mkdir(parents=True)
    monkeypatch.chdir(temp_clone)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))  # what DVC sets for experiment stages
    assert project.anchored("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'repo' / 'mlflow.db'}"
    assert (
        project.anchored("sqlite:///optuna.db?timeout=5")
        == f"sqlite:///{tmp_path / 'repo'}/optuna.db?timeout=5"
    )
    for kept in ("sqlite:////abs/mlflow.db", "sqlite:///:memory:", "http://mlflow:5000", "postgresql://db/x"):
        assert project.anchored(kept) == kept
    monkeypatch.delenv("DVC_ROOT")
    assert project.anchored("sqlite:///mlflow.db") == f"sqlite:///{temp_clone.resolve() / 'mlflow.db'}"


def test_the_dvc_experiment_is_tagged(monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-lr")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    assert project.experiment_tags() == {"dvc.exp_name": "lucky-lr", "dvc.exp_baseline_rev": "a" * 40}


def test_one_params_hash_covers_what_shapes_the_model_only():
    tree = config.parse_params(repo_params()).raw()
    base = tracking.lineage_hash(tree)
    elsewhere = {**tree, "train": {**tree["train"], "device": "cuda", "threads": 4, "use_tuned": True}}
    other_registry = {**tree, "registry": {**tree["registry"], "quantize": "static"}}
    assert tracking.lineage_hash(elsewhere) == tracking.lineage_hash(other_registry) == base
    tuned = {**tree, "train": {**tree["train"], "lr": 0.01}}
    assert tracking.lineage_hash(tuned) != base


@pytest.mark.usefixtures("project")  # a project folder with small params as the cwd
def test_study_names_read_as_variant_data_hash():
    from steelflow.steps.tune import study_name

    name = study_name(config.load_params())
    variant, data, digest = name.rsplit("-", 2)
    assert (variant, data, len(digest)) == ("casinet", "synthetic", 12)
    assert project.data_label("synthetic") == "synthetic"
    assert project.data_label("../shared/datasets/NEU-CLS/") == "NEU-CLS"
    assert project.data_label("s3://steelflow/neu cls") == "neu_cls"


def test_connection_failures_are_told_by_type_not_by_words():
    import mlflow
    from mlflow.exceptions import MlflowException

    from tests.support.servers import free_port

    closed = mlflow.MlflowClient(f"http://127.0.0.1:{free_port()}")
    with tracking.mlflow_http(0, 0, 5), pytest.raises(MlflowException) as refused:
        closed.search_experiments()
    assert unreachable(refused.value)  # requests' ConnectionError in its chain
    # an answer from a server that is there, whatever words it uses, is not "unreachable"
    assert not unreachable(MlflowException("connection refused by policy: timed out, unavailable"))


def test_mlflow_http_settings_are_scoped_to_the_calls_inside(monkeypatch):
    import os

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
    with tracking.mlflow_http(0, 0, 7):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"


def test_the_default_retry_budget_gives_up_on_a_dead_server_well_within_a_minute():
    import mlflow

    from tests.support.servers import free_port

    cfg = config.parse_params(repo_params())
    registry = tracking.RetryBudget.of(cfg.mlflow, cfg.registry.retries, cfg.registry.backoff_seconds)
    for budget in (tracking.RetryBudget.of(cfg.mlflow), registry):
        assert budget.worst_case_seconds < 50, budget  # a server that hangs on every request
    closed = mlflow.MlflowClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(tracking.ServerUnreachable, match=r"gave up after 2 retries in \d+ s \(.+\)"):
        tracking.RetryBudget(retries=2, backoff_seconds=0.05, timeout_seconds=5).call(
            closed.search_experiments
        )


def test_a_server_that_accepts_but_never_answers_is_bounded_by_the_request_timeout():
    import socket
    import time

    import mlflow

    with socket.socket() as hung:  # listens, never accepts nor answers: the kernel completes the connect
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        client = mlflow.MlflowClient(f"http://127.0.0.1:{hung.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(tracking.ServerUnreachable, match="no answer within 1 s"):
            tracking.RetryBudget(retries=1, backoff_seconds=0.1, timeout_seconds=1).call(
                client.search_experiments
            )
    assert time.monotonic() - started < 10  # MLflow alone: 7 retries of 120 s each


def test_a_server_answer_is_not_retried():
    from mlflow.exceptions import MlflowException

    calls = []

    def refuses():
        calls.append(1)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: no such run")

    with pytest.raises(MlflowException):
        tracking.RetryBudget(retries=3, backoff_seconds=1, timeout_seconds=5).call(refuses)
    assert calls == [1]


@pytest.mark.parametrize(
    ("key", "value"),
    [("timeout_seconds", 0), ("timeout_seconds", "soon"), ("retries", -1), ("backoff_factor", 3600)],
)
def test_a_bad_retry_budget_is_refused_naming_its_key(key, value):
    assert config.parse_params(repo_params(mlflow={"timeout_seconds": 3})).mlflow.timeout_seconds == 3
    with pytest.raises(ConfigError, match=rf"mlflow\.{key}"):
        config.parse_params(repo_params(mlflow={key: value}))


@pytest.mark.slow
def test_a_moved_project_finds_its_artifacts_after_relocate(tmp_path, monkeypatch):
    import mlflow

    old = tmp_path / "old"
    old.mkdir()
    write_params(old, repo_params(mlflow={"experiment": "moving"}))
    monkeypatch.chdir(old)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = config.load_params().mlflow
    (old / "note.txt").write_text("kept\n")
    with tracking.MlflowTracker(cfg, "train test", {"train": {"lr": 0.1}}, {}) as t:
        t.log_artifact(old / "note.txt", "training")
        run_id = t.run_id
    shutil.move(old, tmp_path / "new")
    monkeypatch.chdir(tmp_path / "new")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exports it
    client = mlflow.MlflowClient(tracking.tracking_uri(cfg))
    with pytest.raises(Exception):  # noqa: B017 (MLflow raises its own kinds for a missing folder)
        mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path="training/note.txt",
            tracking_uri=client.tracking_uri,
            dst_path=str(tmp_path / "a"),
        )

    result = CliRunner().invoke(app, ["relocate-artifacts"])
    assert result.exit_code == 0, result.output
    assert f"{old / 'mlruns'} → {tmp_path / 'new' / 'mlruns'}" in result.output
    got = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path="training/note.txt",
        tracking_uri=client.tracking_uri,
        dst_path=str(tmp_path / "b"),
    )
    assert Path(got).read_text() == "kept\n"
    again = CliRunner().invoke(app, ["relocate-artifacts"])
    assert "already at" in again.output


def test_steelflows_experiments_are_classic_ml_with_the_key_metrics_as_columns_best_clean_first():
    from steelflow.tracking.tracker import KEY_METRICS, VIEW_KEY, experiment_tags

    tags = experiment_tags()
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI view
    view = json.loads(tags[f"mlflow.sharedViewState.{VIEW_KEY}"])
    assert [c for c in view["selectedColumns"] if c.startswith("metrics.")] == [
        f"metrics.`{m}`" for m in KEY_METRICS
    ]
    assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`eval/clean_accuracy`", False)


def test_a_fixture_that_sets_mlflows_store_leaves_no_trace_for_later_tests(tmp_path, monkeypatch):
    """What tests/unit/test_deploy.py's module-scoped store does: without ``mlflow_state_kept`` the
    exported URI and experiment id pointed every later test of the xdist worker at that store."""
    import os

    import mlflow

    from tests.support.helpers import mlflow_state_kept

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    before = mlflow.get_tracking_uri()
    with mlflow_state_kept():
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")
        mlflow.set_experiment("elsewhere")
        assert os.environ["MLFLOW_EXPERIMENT_ID"]  # what MLflow exports for subprocesses
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_EXPERIMENT_ID" not in os.environ
    assert mlflow.get_tracking_uri() == before
