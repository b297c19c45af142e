"""`steelflow server`: the MLflow server it becomes — basic auth on unless --insecure, no secret on a command
line. The server itself runs in tests/integration/test_auth.py; here ``os.execve`` only records."""

from __future__ import annotations

import configparser
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steelflow.cli import app

PASSWORD = "correct-horse-battery-staple"
DB_PASSWORD = "db-secret-9f8e7d"
BACKEND = f"postgresql+psycopg://mlflow:{DB_PASSWORD}@db-host:5432/mlflow"
STORES = ["--backend-store-uri", BACKEND, "--artifacts-destination", "s3://steelflow/mlflow"]


@pytest.fixture
def started(monkeypatch) -> list[tuple[list[str], dict[str, str]]]:
    """What `steelflow server` would exec: (arguments, environment) per start; nothing starts."""
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr("steelflow.server.os.execve", lambda path, args, env: calls.append((args, env)))
    for name in (
        "STEELFLOW_MLFLOW_ADMIN_PASSWORD",
        "STEELFLOW_MLFLOW_ADMIN_PASSWORD_FILE",
        "STEELFLOW_MLFLOW_AUTH_DB_URI",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    return calls


def server(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["server", *STORES, *args], env=env)


def auth_settings(env: dict[str, str]) -> configparser.SectionProxy:
    parser = configparser.ConfigParser()  # as MLflow reads it (mlflow/server/auth/config.py)
    assert parser.read(env["MLFLOW_AUTH_CONFIG_PATH"])
    return parser["mlflow"]


def test_the_server_runs_mlflow_basic_auth_where_a_new_user_may_only_read(started):
    result = server(env={"STEELFLOW_MLFLOW_ADMIN_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    ((args, env),) = started
    assert args[1] == "server" and args[args.index("--app-name") + 1] == "basic-auth"
    settings = auth_settings(env)
    assert settings["default_permission"] == "READ"
    assert settings["database_uri"] == BACKEND  # users live in the backend store's database
    assert settings["admin_username"] == "admin"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == PASSWORD  # MLflow creates the admin from it
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_BACKEND_STORE_URI"] == BACKEND and env["MLFLOW_ARTIFACTS_DESTINATION"]
    assert args[args.index("--host") + 1] == "127.0.0.1"  # loopback unless told


def test_no_password_is_on_the_command_line_in_the_settings_file_or_in_the_output(started):
    result = server(env={"STEELFLOW_MLFLOW_ADMIN_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    ((args, env),) = started
    command_line = " ".join(args)  # what every user of the machine reads in /proc/*/cmdline
    assert PASSWORD not in command_line and DB_PASSWORD not in command_line
    path = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
    assert PASSWORD not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the database's password
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert PASSWORD not in result.output
    assert "STEELFLOW_MLFLOW_ADMIN_PASSWORD" not in env  # only MLflow's own variable is handed on


def test_without_an_admin_password_nothing_starts_and_the_error_names_the_variable(started):
    result = server()
    assert result.exit_code == 2
    assert "STEELFLOW_MLFLOW_ADMIN_PASSWORD" in result.output
    assert started == []


def test_a_password_shorter_than_mlflow_accepts_is_refused_before_starting(started):
    result = server(env={"STEELFLOW_MLFLOW_ADMIN_PASSWORD": "short"})
    assert result.exit_code == 2
    assert "12 characters" in result.output and "short" not in result.output.replace("shorter", "")
    assert started == []


def test_the_admin_password_can_come_from_a_file_such_as_a_docker_secret(started, tmp_path):
    secret = tmp_path / "admin-password"
    secret.write_text(PASSWORD + "\n")
    assert server("--admin-password-file", str(secret)).exit_code == 0
    assert server(env={"STEELFLOW_MLFLOW_ADMIN_PASSWORD_FILE": str(secret)}).exit_code == 0
    assert [env["MLFLOW_AUTH_ADMIN_PASSWORD"] for _, env in started] == [PASSWORD, PASSWORD]
    missing = server("--admin-password-file", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and str(tmp_path / "nope") in missing.output


def test_the_settings_go_where_the_user_says_readable_by_them_only(started, tmp_path):
    chosen = tmp_path / "auth.ini"
    chosen.write_text("old")
    chosen.chmod(0o644)
    database = "postgresql+psycopg://auth:p%40ss@db-host:5432/mlflow_auth"  # an escaped '@' in the password
    result = server(
        "--auth-config", str(chosen), "--auth-db-uri", database, "--admin-username", "ops",
        env={"STEELFLOW_MLFLOW_ADMIN_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ((_, env),) = started
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(chosen)
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o600
    assert auth_settings(env)["database_uri"] == database  # '%' survives configparser
    assert auth_settings(env)["admin_username"] == "ops"


def test_a_file_backend_cannot_hold_users_so_an_auth_database_is_asked_for(started, tmp_path):
    result = CliRunner().invoke(
        app,
        ["server", "--backend-store-uri", str(tmp_path / "mlruns"), "--artifacts-destination", str(tmp_path)],
        env={"STEELFLOW_MLFLOW_ADMIN_PASSWORD": PASSWORD},
    )
    assert result.exit_code == 2 and "--auth-db-uri" in result.output
    assert started == []


def test_insecure_runs_without_the_auth_app_and_warns_loudly(started):
    result = server("--insecure")
    assert result.exit_code == 0, result.output
    ((args, env),) = started
    assert "--app-name" not in args and "MLFLOW_AUTH_CONFIG_PATH" not in env
    assert "NO AUTHENTICATION" in result.stderr and "laptop" in result.stderr


def test_insecure_on_an_address_others_can_reach_is_refused(started):
    result = server("--insecure", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "loopback" in result.output and "0.0.0.0" in result.output
    assert started == []
