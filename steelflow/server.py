"""`steelflow server`: a team MLflow tracking server — PostgreSQL for runs and the registry, S3 for artifacts.

It is `mlflow server` with the settings a small machine wants: artifacts served through the server
(``--artifacts-destination``; clients need only ``MLFLOW_TRACKING_URI``, never S3 credentials), background
job execution off, one worker unless told otherwise. The server itself reads S3 credentials and endpoint from
its environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``MLFLOW_S3_ENDPOINT_URL``), never from
files in this repository.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from steelflow.errors import ConfigError

BACKEND_ENV = "STEELFLOW_MLFLOW_BACKEND_URI"  # e.g. postgresql+psycopg://mlflow@db:5432/mlflow
ARTIFACTS_ENV = "STEELFLOW_MLFLOW_ARTIFACTS"  # e.g. s3://steelflow/mlflow


def command(backend_uri: str | None, artifacts: str | None, host: str, port: int, workers: int) -> list[str]:
    backend_uri = backend_uri or os.environ.get(BACKEND_ENV)
    artifacts = artifacts or os.environ.get(ARTIFACTS_ENV)
    if not backend_uri:
        raise ConfigError(f"no backend store: pass --backend-store-uri or set {BACKEND_ENV}")
    if not artifacts:
        raise ConfigError(f"no artifact store: pass --artifacts-destination or set {ARTIFACTS_ENV}")
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    return [
        mlflow, "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", artifacts,
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # ~0.5 GB instead of a job runner
    return env


def serve(backend_uri: str | None, artifacts: str | None, host: str, port: int, workers: int) -> None:
    """Replace this process with the MLflow server (so signals reach it directly)."""
    args = command(backend_uri, artifacts, host, port, workers)
    os.execve(args[0], args, environment())
