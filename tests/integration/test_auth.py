"""Authentication for real: `steelflow server` (PostgreSQL backend, SeaweedFS S3 artifacts, MLflow's
basic-auth app) on a free loopback port; who may read, register and move an alias. The whole pipeline run
by a user the admin created is in test_team.py."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from steelflow import config
from steelflow.cli import app
from steelflow.registry import Registry
from tests.support.helpers import repo_params, write_params
from tests.support.servers import S3_KEYS, as_user, create_user, fresh_database, s3_server, steelflow_server

pytestmark = pytest.mark.integration
MODEL = "steel-defect-classifier"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The team server, and what its admin set up: an experiment with a run, versions 1 and 2 of the model,
    version 2 the champion after a promotion from 1."""
    root = tmp_path_factory.mktemp("auth")
    with fresh_database() as database, s3_server(root / "s3") as s3_url:
        team = steelflow_server(
            root / "server",
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
            "s3://steelflow/mlflow",
            {**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3_url},
        )
        with team as running, as_user(*running.admin):
            client = mlflow.MlflowClient(running.uri, running.uri)
            experiment = client.create_experiment("steelflow")
            run = client.create_run(experiment)
            client.log_text(run.info.run_id, "flavors: {}", "model/MLmodel")  # through the server to S3
            client.set_terminated(run.info.run_id)
            client.create_registered_model(MODEL)
            for _ in range(2):
                client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id)
            client.set_registered_model_alias(MODEL, "champion", "2")
            source = f"{run.info.artifact_uri}/model"
            yield {"server": running, "run_id": run.info.run_id, "source": source, "database": database}


def _status(url: str, credentials: tuple[str, str] | None = None, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_without_credentials_every_api_answers_401_and_only_health_is_open(server):
    uri = server["server"].uri
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=5"
    assert _status(f"{uri}/health") == 200
    assert _status(search) == 401
    assert _status(f"{uri}/api/2.0/mlflow/experiments/create", data=b'{"name": "intruder"}') == 401
    assert _status(f"{uri}/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=champion") == 401
    assert _status(f"{uri}/api/2.0/mlflow-artifacts/artifacts") == 401  # the proxied S3 too
    assert _status(search, ("admin", "wrong-password")) == 401
    assert _status(search, server["server"].admin) == 200


def test_a_new_user_can_read_but_cannot_register_a_version_nor_move_the_champion(server):
    team = server["server"]
    password = create_user(team, "reader")  # no grant: MLflow's default_permission, READ
    client = mlflow.MlflowClient(team.uri, team.uri)
    with as_user("reader", password):
        assert "steelflow" in [e.name for e in client.search_experiments()]
        assert client.get_model_version_by_alias(MODEL, "champion").version == "2"
        with pytest.raises(MlflowException) as register:
            client.create_model_version(MODEL, server["source"], server["run_id"])
        assert register.value.get_http_status_code() == 403
        with pytest.raises(MlflowException) as promote:
            client.set_registered_model_alias(MODEL, "champion", "1")
        assert promote.value.get_http_status_code() == 403
    with as_user(*team.admin):
        assert len(client.search_model_versions(f"name='{MODEL}'")) == 2
        assert client.get_model_version_by_alias(MODEL, "champion").version == "2"


def test_a_read_only_user_rolling_back_the_champion_gets_one_line_and_exit_7(server, project, monkeypatch):
    team = server["server"]
    password = create_user(team, "viewer")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.uri)
    write_params(project, repo_params())
    with as_user(*team.admin):  # the promotion of 1 → 2, as `steelflow promote` records it
        Registry(config.load_params(Path("params.yaml"), [])).record(
            action="promote", from_version="1", to_version="2", gates=[], reason="seed"
        )
    with as_user("viewer", password):
        result = CliRunner().invoke(app, ["rollback", "--reason", "not allowed"])
    assert result.exit_code == 7, result.output
    assert "Traceback" not in result.output and password not in result.output
    with as_user(*team.admin):
        assert mlflow.MlflowClient(team.uri).get_model_version_by_alias(MODEL, "champion").version == "2"


def test_a_user_the_admin_granted_edit_on_the_model_registers_and_moves_the_alias(server):
    team = server["server"]
    with as_user(*team.admin):
        experiment_id = mlflow.MlflowClient(team.uri).get_experiment_by_name("steelflow").experiment_id
    password = create_user(
        team,
        "trainer",
        {("experiment", experiment_id): "EDIT", ("registered_model", MODEL): "EDIT"},
    )
    client = mlflow.MlflowClient(team.uri, team.uri)
    with as_user("trainer", password):
        run = client.create_run(experiment_id)
        client.log_text(run.info.run_id, "flavors: {}", "model/MLmodel")
        version = client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id)
        client.set_registered_model_alias(MODEL, "challenger", version.version)
        assert client.get_model_version_by_alias(MODEL, "challenger").version == version.version
        with pytest.raises(MlflowException) as delete:  # deleting needs MANAGE, which nobody granted
            client.delete_model_version(MODEL, "1")
        assert delete.value.get_http_status_code() == 403


def test_the_admin_password_is_on_no_command_line_and_in_no_log(server):
    team = server["server"]
    secret = team.admin[1].encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):  # readable by every user of the machine
        try:
            assert secret not in cmdline.read_bytes(), cmdline
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # a process that ended meanwhile
    assert secret not in team.log.read_bytes()
    settings = team.log.parent / "basic_auth.ini"
    assert settings.stat().st_mode & 0o077 == 0 and secret not in settings.read_bytes()


def test_users_live_beside_the_runs_in_the_backend_database(server):
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{server['database']}") as db:
        users = {name for (name,) in db.execute("SELECT username FROM users")}
        (runs,) = db.execute("SELECT count(*) FROM runs").fetchone()
    assert "admin" in users and runs >= 1
