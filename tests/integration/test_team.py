"""Team set-up for real: a SeaweedFS S3 server, `steelflow server` (MLflow on PostgreSQL with S3 artifacts,
basic auth on), `dvc repro` logging into it as a user the admin created, a DVC remote on S3, and ingest from
s3://. All as processes on loopback."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner

from steelflow.cli import app
from tests.support.helpers import LENIENT_GATES, SMALL, clone_repo, deep_update, repo_params, sh, write_params
from tests.support.servers import (
    S3_KEYS,
    VENV_BIN,
    as_user,
    create_user,
    free_port,
    fresh_database,
    running,
    s3_client,
    s3_server,
    steelflow_server,
)

pytestmark = pytest.mark.integration
BUCKET = "steelflow"
MODEL = "steel-defect-classifier"


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """S3, a PostgreSQL database of its own, `steelflow server` with basic auth, and a clone that ran
    `dvc repro` on them as ``trainer``: a user the admin created and granted EDIT on the experiment and the
    registered model the admin made first, as README's "Team set-up" says."""
    root = tmp_path_factory.mktemp("team")
    with fresh_database() as database, s3_server(root / "s3", BUCKET) as s3_url:
        server_env = {**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3_url}  # only the server holds S3 keys
        backend = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
        with steelflow_server(root / "server", backend, f"s3://{BUCKET}/mlflow", server_env) as server:
            uri = server.uri
            with as_user(*server.admin):
                admin = mlflow.MlflowClient(uri, uri)
                experiment_id = admin.create_experiment("steelflow")
                admin.create_registered_model(MODEL)
            grants = {("experiment", experiment_id): "EDIT", ("registered_model", MODEL): "EDIT"}
            trainer = ("trainer", create_user(server, "trainer", grants))
            clone = clone_repo(root / "clone", deep_update(SMALL, LENIENT_GATES))  # SMALL registers
            client_env = {
                "MLFLOW_TRACKING_URI": uri,
                "MLFLOW_TRACKING_USERNAME": trainer[0],
                "MLFLOW_TRACKING_PASSWORD": trainer[1],
            }
            for key in (*S3_KEYS, "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
                client_env[key] = ""  # the client has no S3 access: artifacts go through the server
            output = sh("dvc", "repro", cwd=clone, env=client_env)
            yield {
                "uri": uri, "s3": s3_url, "clone": clone, "output": output, "database": database,
                "admin": server.admin, "trainer": trainer,
            }  # fmt: skip


def test_repro_logs_and_registers_into_the_postgres_server_with_artifacts_in_s3(team):
    client = mlflow.MlflowClient(team["uri"], team["uri"])
    with as_user(*team["trainer"]):
        experiment = client.get_experiment_by_name("steelflow")
        runs = client.search_runs([experiment.experiment_id])
        challenger = client.get_model_version_by_alias(MODEL, "challenger")
    steps = {r.data.tags.get("steelflow.step") for r in runs}
    assert {"train", "tune", "tune-trial"} <= steps  # evaluate logs into the training run, keeping its tags
    trained = [r for r in runs if r.data.tags.get("steelflow.step") == "train"]
    assert any("eval/clean_accuracy" in r.data.metrics for r in trained)
    assert challenger.run_id == (team["clone"] / "metrics/mlflow_run_id.txt").read_text().strip()
    assert not (team["clone"] / "mlflow.db").exists()  # nothing went to the local SQLite default

    # the runs live in PostgreSQL...
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{team['database']}") as db:
        (n_runs,) = db.execute("SELECT count(*) FROM runs").fetchone()
    assert n_runs == len(runs)
    # ...and the model's files are objects in the bucket
    s3 = s3_client(team["s3"])
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="mlflow/")
            for o in p.get("Contents", [])]  # fmt: skip
    assert any(k.endswith("model.pt") for k in keys)
    assert any(k.endswith("MLmodel") for k in keys)


def _digests(folder: Path, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        path = folder / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            out[str(f.relative_to(folder))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def test_dvc_push_then_pull_into_an_empty_cache_restores_identical_files(team):
    clone, env = team["clone"], {**S3_KEYS}
    sh("dvc", "remote", "add", "-d", "team", f"s3://{BUCKET}/dvc", cwd=clone)
    sh("dvc", "remote", "modify", "team", "endpointurl", team["s3"], cwd=clone)
    # the shard sets, not the per-image copies: data/images is recorded (cache: false), not stored
    tracked = ["data/manifest.csv", "data/splits", "data/cache", "models/model.pt"]
    before = _digests(clone, tracked)
    sh("dvc", "push", cwd=clone, env=env)
    pushed = s3_client(team["s3"]).list_objects_v2(Bucket=BUCKET, Prefix="dvc/", MaxKeys=1000)
    per_image = [*(clone / "data/images").rglob("*.png"), *(clone / "data/corrupted").rglob("*.png")]
    shard_files = [p for p in (clone / "data/cache").rglob("*") if p.is_file()]
    assert 0 < pushed["KeyCount"] < len(per_image)  # not one object per image
    assert pushed["KeyCount"] >= len(shard_files)

    shutil.rmtree(clone / ".dvc" / "cache")
    for name in tracked:
        path = clone / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    sh("dvc", "pull", cwd=clone, env=env)
    assert _digests(clone, tracked) == before
    config = (clone / ".dvc" / "config").read_text()
    assert S3_KEYS["AWS_SECRET_ACCESS_KEY"] not in config and S3_KEYS["AWS_ACCESS_KEY_ID"] not in config


def test_ingest_from_s3_gives_the_manifest_of_the_local_folder(team, image_folder, tmp_path, monkeypatch):
    s3 = s3_client(team["s3"])
    for f in image_folder.rglob("*.png"):
        s3.upload_file(str(f), BUCKET, f"datasets/small/{f.relative_to(image_folder).as_posix()}")
    for key, value in {**S3_KEYS, "AWS_ENDPOINT_URL": team["s3"]}.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    manifests = {}
    for name, source in (("local", str(image_folder)), ("s3", f"s3://{BUCKET}/datasets/small")):
        project = tmp_path / name
        project.mkdir()
        write_params(project, repo_params(data={"source": source}))
        monkeypatch.chdir(project)
        result = runner.invoke(app, ["ingest"])
        assert result.exit_code == 0, result.output
        manifests[name] = pd.read_csv(project / "data/manifest.csv")
    pd.testing.assert_frame_equal(manifests["s3"], manifests["local"])

    # an object that changed under a manifest that knows it is refused, naming it
    changed = next(image_folder.rglob("*.png"))
    s3.put_object(
        Bucket=BUCKET, Key=f"datasets/small/{changed.relative_to(image_folder).as_posix()}",
        Body=(image_folder.parent / "source" / "rust" / "img_0.png").read_bytes(),
    )  # fmt: skip
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 3, result.output
    assert changed.name in result.output and "sha256" in result.output


def test_s3_down_during_ingest_fails_with_the_endpoint_and_keeps_local_data(project, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    for key, value in {**S3_KEYS, "AWS_ENDPOINT_URL": dead}.items():
        monkeypatch.setenv(key, value)
    write_params(project, repo_params(data={"source": f"s3://{BUCKET}/datasets/small", "s3_retries": 2}))
    (project / "data" / "images").mkdir(parents=True)
    (project / "data" / "images" / "keep.txt").write_text("previous data")
    result = CliRunner().invoke(app, ["ingest"])
    assert result.exit_code == 3, result.output
    assert dead in result.output and "2 attempts" in result.output
    assert (project / "data" / "images" / "keep.txt").read_text() == "previous data"


def test_no_credentials_in_the_repository():
    """Keys and passwords come from the environment: nothing key-like is committed."""
    import re
    import subprocess

    from tests.support.helpers import REPO

    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    patterns = [
        re.compile(r"AKIA[0-9A-Z]{16}"),  # an AWS access key id
        re.compile(r"(?i)(aws_secret_access_key|secret_key|password)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{16,}"),
        re.compile(
            r"(?i)postgres(ql)?(\+\w+)?://[^:@/\s]+:(?!\$)[^@/\s]+@"
        ),  # a password in a URL ($VAR is fine)
    ]
    # the throwaway test server's keys; fake ones planted where a compiled pipeline must not pick them up,
    # and where `params show` must hide them
    allowed = {
        "tests/support/servers.py",
        "tests/integration/test_team.py",
        "tests/unit/test_server_command.py",  # fake database passwords kept off the command line
        "tests/unit/test_kubeflow_pipeline.py",
        "tests/unit/test_config.py",
        "tests/unit/test_redact.py",  # fake passwords the redaction rule must hide
        "tests/integration/test_secrets.py",  # fake passwords planted in every URI, then looked for
    }
    hits = []
    for rel in files:
        path = REPO / rel
        if rel in allowed or not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        text = path.read_text(errors="ignore")
        hits += [f"{rel}: {m.group(0)[:40]}" for p in patterns for m in p.finditer(text)]
    assert not hits, hits
    assert "access_key_id" not in (REPO / ".dvc" / "config").read_text()


def test_s3_down_during_dvc_push_names_the_endpoint_and_keeps_the_cache(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "a.txt").write_text("local data")
    dead = f"http://127.0.0.1:{free_port()}"
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "add", "data", cwd=repo)
    sh("dvc", "remote", "add", "-d", "team", f"s3://{BUCKET}/dvc", cwd=repo)
    sh("dvc", "remote", "modify", "team", "endpointurl", dead, cwd=repo)
    proc = subprocess.run(
        ["dvc", "push"], cwd=repo, capture_output=True, text=True,
        env={**os.environ, **S3_KEYS, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    assert proc.returncode != 0
    assert dead in proc.stdout + proc.stderr
    assert (repo / "data" / "a.txt").read_text() == "local data"
    assert any((repo / ".dvc" / "cache").rglob("*"))


def test_s3_down_behind_the_server_fails_training_clearly_and_keeps_local_outputs(tmp_path, project):
    """The server's artifact store is unreachable: upload fails after retries with an error naming the
    server, and the trained model and its metrics stay on disk."""
    runner = CliRunner()
    for step in ("ingest", "validate", "split"):
        assert runner.invoke(app, [step]).exit_code == 0
    port = free_port()
    args = [
        str(VENV_BIN / "steelflow"), "server", "--insecure",  # a laptop's server: loopback, no users
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--port", str(port),
    ]  # fmt: skip
    env = {**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "2"}
    uri = f"http://127.0.0.1:{port}"
    with running(args, f"{uri}/health", tmp_path / "server.log", env), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
            mp.delenv(key, raising=False)  # restored after: the tracker sets them from params
        result = runner.invoke(
            app, ["train", "--set", "mlflow.retries=1", "--set", "mlflow.backoff_factor=0"]
        )
    assert result.exit_code == 10, result.output
    assert uri in result.output and "kept" in result.output, result.output
    assert (project / "models" / "model.pt").is_file(), result.output
    assert (project / "metrics" / "train.json").is_file()
