"""A password in every URI steelflow takes, and in every secret variable: the whole tracked `dvc repro`
(tune into PostgreSQL, train, evaluate, gate, register into a real MLflow server), `params show`, the
compiled Kubeflow pipeline and the error lines of a server that is gone show it nowhere."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.helpers import LENIENT_GATES, REPO, SMALL, clone_repo, deep_update, run
from tests.support.servers import free_port, fresh_database, mlflow_server

pytestmark = pytest.mark.integration

TRACKING_PASSWORD = "Tr4ckPass-7f3a"  # in MLFLOW_TRACKING_URI
OPTUNA_PASSWORD = "Opt%40una-9c2e"  # in STEELFLOW_OPTUNA_STORAGE, URL-encoded ("Opt@una-9c2e")
SECRETS = {  # variables that are secrets by name (a server without auth takes and ignores them)
    "MLFLOW_TRACKING_PASSWORD": "BasicAuth-5d1b",
    "AWS_SECRET_ACCESS_KEY": "AwsSecret-8e4f0a",
    "STEELFLOW_MLFLOW_ADMIN_PASSWORD": "Admin-3b9d",
}
HIDDEN = [TRACKING_PASSWORD, OPTUNA_PASSWORD, "Opt@una-9c2e", *SECRETS.values()]


def _leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode()
    return [secret for secret in HIDDEN if secret.encode() in data]


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory):
    """The repository cloned with small params, run by `dvc repro` with every secret in its environment;
    yields (clone, everything printed, the MLflow server's URI without a password, its folder, the study's
    database)."""
    tmp = tmp_path_factory.mktemp("secrets")
    changes = deep_update(SMALL, LENIENT_GATES)
    changes["tune"] = {**changes["tune"], "n_trials": 1}  # trials of 2 epochs, the model of 1
    changes["train"] = {**changes["train"], "epochs": 1}
    clone = clone_repo(tmp / "clone", changes)
    with mlflow_server(tmp / "mlflow") as plain, fresh_database("steelflow_secrets") as database:
        env = {
            "MLFLOW_TRACKING_URI": plain.replace("http://", f"http://steelflow:{TRACKING_PASSWORD}@"),
            "STEELFLOW_OPTUNA_STORAGE": (
                f"postgresql+psycopg://postgres:{OPTUNA_PASSWORD}@127.0.0.1:5432/{database}"
            ),
            "MLFLOW_TRACKING_USERNAME": "steelflow",
            **SECRETS,
        }
        printed = []
        for args in (
            ("dvc", "repro"),
            ("steelflow", "params", "show"),
            ("steelflow", "pipeline", "compile", "-o", "compiled/pipeline.yaml"),
        ):
            proc = run(*args, cwd=clone, env=env)
            assert proc.returncode == 0, f"{args}:\n{proc.stdout}\n{proc.stderr}"
            printed.append(proc.stdout + proc.stderr)
        # the server gone: the error lines name it, with its URL
        gone = env | {"MLFLOW_TRACKING_URI": f"http://steelflow:{TRACKING_PASSWORD}@127.0.0.1:{free_port()}"}
        for args in (
            ("steelflow", "evaluate", "--set", "mlflow.retries=0"),
            ("steelflow", "--debug", "register", "--set", "registry.retries=0"),  # with its traceback
        ):
            proc = run(*args, cwd=clone, env=gone)
            assert proc.returncode != 0, f"{args} succeeded without a server:\n{proc.stdout}\n{proc.stderr}"
            printed.append(proc.stdout + proc.stderr)
        dump = subprocess.run(
            ["pg_dump", "--data-only", "-h", "127.0.0.1", "-U", "postgres", database],
            capture_output=True,
            check=True,
        ).stdout
        yield clone, printed, plain, tmp / "mlflow", dump


def test_nothing_printed_shows_a_password(secret_run):
    _, printed, _, _, _ = secret_run
    repro, show, compiled, *failures = printed
    assert "Running stage 'register'" in repro
    assert "View run" in repro and "127.0.0.1" in repro  # steelflow's own run link, without credentials
    assert "postgresql+psycopg://postgres:***@127.0.0.1" in show
    assert "pipeline compile:" in compiled
    for failure in failures:
        assert "error:" in failure or "Traceback" in failure
        assert "steelflow:***@127.0.0.1" in failure  # the URL is named, its password hidden
    for text in printed:
        assert _leaks(text) == [], text


def test_no_file_of_the_project_holds_a_password(secret_run):
    clone, _, _, _, _ = secret_run
    this = clone / Path(__file__).relative_to(REPO)  # the clone's copy of this test holds them all
    files = [p for p in clone.rglob("*") if p.is_file() and ".git" not in p.relative_to(clone).parts]
    files.remove(this)
    for expected in ("dvc.lock", "reports/tuning/best_params.yaml", "reports/registration.json"):
        assert clone / expected in files
    assert (clone / "compiled/pipeline.yaml").is_file()  # the compiled pipeline too
    leaking = {str(p.relative_to(clone)): _leaks(p.read_bytes()) for p in files}
    assert {name: found for name, found in leaking.items() if found} == {}


def test_no_mlflow_record_holds_a_password(secret_run):
    import mlflow

    _, _, plain, server_root, _ = secret_run
    client = mlflow.MlflowClient(tracking_uri=plain, registry_uri=plain)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    records: list = [(r.info.run_name, r.data.params, r.data.tags) for r in runs]
    steps = {r.data.tags.get("steelflow.step") for r in runs}
    assert {"tune", "tune-trial", "train"} <= steps
    assert any(r.data.tags.get("optuna.storage") for r in runs)  # named, without its password
    for r in runs:
        for artifact in ("params.yaml", "tuning/best_params.yaml", "registry/model_card.md"):
            try:
                records.append(Path(client.download_artifacts(r.info.run_id, artifact)).read_text())
            except Exception:  # a run without that artifact
                continue
    models = client.search_registered_models()
    assert models
    for model in models:
        records.append((model.description, model.tags))
        for version in client.search_model_versions(f"name = '{model.name}'"):
            records.append((version.description, version.tags, version.source))
    assert _leaks(repr(records)) == []
    # ...and the server's own store, every byte of it
    for path in server_root.rglob("*"):
        if path.is_file() and path.name != "mlflow-server.log":
            assert _leaks(path.read_bytes()) == [], path


def test_the_study_database_holds_no_password(secret_run):
    *_, dump = secret_run
    assert b"steel" in dump.lower()  # the study is there
    assert _leaks(dump) == []
