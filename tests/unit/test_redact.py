"""One redaction rule: no password of a URL, and no secret of the environment, in what steelflow prints,
logs or records."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings

import pytest
from typer.testing import CliRunner

from steelflow import redact
from steelflow.cli import app
from tests.support.helpers import REPO

PASSWORD = "Pa55-w0rd_xyz"
SERVER = f"http://alice:{PASSWORD}@mlflow.example:5000"


@pytest.fixture(autouse=True)
def no_secrets_in_env(monkeypatch):
    """The rule reads the environment: start each test from one that holds no secret."""
    import os

    for name in list(os.environ):
        if redact._SECRET_NAME.search(name) or name in ("MLFLOW_TRACKING_URI", "STEELFLOW_OPTUNA_STORAGE"):
            monkeypatch.delenv(name)


def test_a_url_inside_a_sentence_loses_its_password_and_nothing_else():
    line = f"MLflow at {SERVER} failed while logging metrics: connection refused"
    assert redact.redact(line) == (
        "MLflow at http://alice:***@mlflow.example:5000 failed while logging metrics: connection refused"
    )


def test_every_url_of_a_text_loses_its_password():
    text = (
        f"API request to {SERVER}/api/2.0/mlflow/runs/create failed; "
        f"storage 'postgresql+psycopg://bob:{PASSWORD}@db:5432/optuna', "
        f'{{"uri": "redis://:{PASSWORD}@cache:6379/0"}}'
    )
    shown = redact.redact(text)
    assert PASSWORD not in shown
    assert "http://alice:***@mlflow.example:5000/api/2.0/mlflow/runs/create" in shown
    assert "'postgresql+psycopg://bob:***@db:5432/optuna'" in shown
    assert '"redis://:***@cache:6379/0"' in shown


def test_a_password_with_special_characters_is_hidden_whole():
    for password in ("p@ss:w!rd#1", "pa%40ss%2Fw0rd", "x?y&z=1$"):
        shown = redact.redact(f"cannot open postgresql://u:{password}@db:5432/optuna: timeout")
        assert shown == "cannot open postgresql://u:***@db:5432/optuna: timeout", password


def test_urls_without_a_password_are_left_alone():
    for text in (
        "http://127.0.0.1:5000/#/experiments/1/runs/abc",
        "postgresql://steelflow@db:5432/optuna",
        "https://registry.example:443/@scope/package",
        "s3://bucket/prefix and sqlite:////tmp/mlflow.db",
        "user:pass@host is no URL, and a:b@c neither",
        "",
    ):
        assert redact.redact(text) == text


def test_secret_values_from_the_environment_are_hidden_wherever_they_appear(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "tracking-pass-123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    monkeypatch.setenv("STEELFLOW_MLFLOW_ADMIN_PASSWORD", "admin-secret-9")
    monkeypatch.setenv("STEELFLOW_OPTUNA_STORAGE", "postgresql://u:db%2Fpass%40word@db/optuna")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")  # too short to hide outside a URL: no false hits
    text = (
        "login tracking-pass-123 / admin-secret-9 failed; key wJalrXUtnFEMI/K7MDENG; "
        "psycopg: password for db/pass@word rejected; token tok in stock"
    )
    assert redact.redact(text) == (
        "login *** / *** failed; key ***; psycopg: password for *** rejected; token tok in stock"
    )


def test_a_tree_of_params_is_redacted_in_every_string_and_left_alone_elsewhere():
    tree = {"mlflow": {"tracking_uri": SERVER, "retries": 3}, "data": {"classes": ["a", f"{SERVER}/x"]}}
    assert redact.tree(tree) == {
        "mlflow": {"tracking_uri": "http://alice:***@mlflow.example:5000", "retries": 3},
        "data": {"classes": ["a", "http://alice:***@mlflow.example:5000/x"]},
    }


def test_the_logging_filter_redacts_the_message_its_arguments_and_its_traceback(capsys):
    logger = logging.getLogger("steelflow.test-redact")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redact.RedactFilter())
    logger.addHandler(handler)
    try:
        logger.warning("Retrying %s (%d)", SERVER, 2)
        try:
            raise ConnectionError(f"HTTPConnectionPool: {SERVER}/api refused")
        except ConnectionError:
            logger.exception("request to %s failed", SERVER)
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert PASSWORD not in err
    assert "Retrying http://alice:***@mlflow.example:5000 (2)" in err
    assert "ConnectionError: HTTPConnectionPool: http://alice:***@mlflow.example:5000/api refused" in err


def test_after_install_every_logger_and_warning_is_redacted(caplog):
    redact.install()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("mlflow.utils.rest_utils").warning("API request to %s failed", SERVER)
        logging.getLogger("urllib3.connectionpool").warning(f"Retrying {SERVER}")
    assert PASSWORD not in caplog.text and "alice:***@" in caplog.text
    # what Python's own showwarning prints a warning with
    shown = warnings.formatwarning(f"cannot reach {SERVER}", UserWarning, "steelflow/x.py", 1)
    assert PASSWORD not in shown and "alice:***@" in shown


def test_install_turns_mlflows_own_run_link_off(monkeypatch):
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    redact.install()
    from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT

    assert MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get() is True


def test_the_run_link_steelflow_prints_has_no_user_and_no_password():
    from steelflow.tracking import run_link

    link = "http://mlflow.example:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert run_link(SERVER + "/", "3", "abc") == link
    assert run_link("sqlite:///mlflow.db", "3", "abc") is None


def test_the_cli_error_line_shows_stars_not_the_password(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", SERVER)
    result = CliRunner().invoke(app, ["relocate-artifacts", "--params", str(REPO / "params.yaml")])
    assert result.exit_code == 2
    assert "error: mlflow.tracking_uri is http://alice:***@mlflow.example:5000" in result.output
    assert PASSWORD not in result.output


def test_the_debug_traceback_shows_stars_not_the_password(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "steelflow",
            "--debug",
            "relocate-artifacts",
            "--params",
            str(REPO / "params.yaml"),
        ],
        cwd=tmp_path,
        env={**_plain_env(), "MLFLOW_TRACKING_URI": SERVER},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr
    assert "http://alice:***@mlflow.example:5000" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


def test_params_show_hides_secret_values_too(monkeypatch):
    monkeypatch.setenv("STEELFLOW_OPTUNA_STORAGE", f"postgresql://u:{PASSWORD}@db/optuna")
    args = ["params", "show", "--params", str(REPO / "params.yaml"), "--json"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["tune.storage"]["value"] == "postgresql://u:***@db/optuna"
    assert PASSWORD not in out.output


def test_the_study_handed_to_kubeflow_workers_carries_no_password(tmp_path, monkeypatch):
    from steelflow.tuning.study import StudyRef

    url = f"postgresql://steelflow:{PASSWORD}@db:5432/optuna"
    ref = StudyRef(
        name="s", storage_url=url, params={"tune": {"storage": "sqlite:///optuna.db"}}, cache_dir="."
    )
    ref.save(tmp_path / "study.json")
    assert PASSWORD not in (tmp_path / "study.json").read_text()
    monkeypatch.setenv("STEELFLOW_OPTUNA_STORAGE", url)  # each pod has it from the secret
    assert StudyRef.load(tmp_path / "study.json").storage_url == url


def test_compiling_a_pipeline_refuses_a_password_in_the_params(tmp_path):
    from pipelines import compile_pipeline
    from steelflow.errors import ConfigError

    overrides = [f"mlflow.tracking_uri={SERVER}", "data.source=synthetic"]
    with pytest.raises(ConfigError) as e:
        compile_pipeline(tmp_path / "p.yaml", REPO / "params.yaml", overrides)
    assert "mlflow.tracking_uri" in str(e.value) and PASSWORD not in str(e.value)
    assert not (tmp_path / "p.yaml").exists()


def _plain_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not redact._SECRET_NAME.search(k)}


def test_the_runs_table_link_opens_steelflows_view_in_model_training_without_the_password():
    from steelflow.tracking import experiment_link

    assert experiment_link(SERVER, "3") == (
        "http://mlflow.example:5000/#/experiments/3/runs?viewStateShareKey=steelflow&workflowType=machine_learning"
    )
    assert experiment_link("sqlite:///mlflow.db", "3") is None


def test_a_variable_another_thread_removes_while_secrets_are_read_is_skipped_not_a_crash():
    """MLflow's telemetry thread sets and removes _MLFLOW_TELEMETRY_SESSION_ID while training logs its
    params; reading the environment then failed the stage with a KeyError."""

    from collections.abc import Mapping

    class Vanishing(Mapping):  # as os.environ: a Mapping whose items() reads name by name
        values = {"MLFLOW_TRACKING_PASSWORD": "s3cret-value-1"}

        def __iter__(self):  # lists a name that is gone by the time it is read
            yield from [*self.values, "_MLFLOW_TELEMETRY_SESSION_ID"]

        def __getitem__(self, name):
            return self.values[name]

        def __len__(self):
            return len(self.values) + 1

    environ = Vanishing()
    assert redact.secret_values(environ) == ["s3cret-value-1"]
