"""Real servers as child processes on free loopback ports, for integration tests (no mocks, no Docker)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


@contextlib.contextmanager
def running(
    args: list[str], ready: str | Callable[[], object], log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    """Start ``args``; wait until ``ready`` (a URL answering 200, or a check that stops raising); stop the
    process group afterwards."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            if isinstance(ready, str):
                wait_for(lambda: _answers(ready), proc, ready)
            else:
                wait_for(ready, proc, str(log.stem))
            yield
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n--- {log} ---\n{log.read_text()[-4000:]}") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


@contextlib.contextmanager
def mlflow_server(root: Path, backend_uri: str | None = None, artifacts: str | None = None) -> Iterator[str]:
    """A real `mlflow server` (SQLite backend and local artifacts unless told otherwise); yields its URI."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    args = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_uri or f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        artifacts or str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    uri = f"http://127.0.0.1:{port}"
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with running(args, f"{uri}/health", root / "mlflow-server.log", env):
        yield uri


S3_KEYS = {"AWS_ACCESS_KEY_ID": "steelflow-test", "AWS_SECRET_ACCESS_KEY": "steelflow-test-secret"}


def wait_for(check, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {what} was ready")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready within {timeout} s")


@contextlib.contextmanager
def s3_server(root: Path, bucket: str = "steelflow") -> Iterator[str]:
    """A real S3 server (SeaweedFS `weed mini`) with credentials ``S3_KEYS`` and ``bucket``; yields its URL.

    Every port is chosen free (SeaweedFS would otherwise put gRPC at port + 10000).
    """
    root.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin", "webdav")}
    grpc = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
    args = [
        str(VENV_BIN / "weed"),
        "mini",
        f"-dir={root}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
    ]
    args += [f"-{name}.port={port}" for name, port in ports.items()]
    args += [f"-{name}.port.grpc={port}" for name, port in grpc.items()]
    url = f"http://127.0.0.1:{ports['s3']}"
    client = s3_client(url)
    with running(
        args, lambda: client.head_bucket(Bucket=bucket), root / "weed.log", {**S3_KEYS, "S3_BUCKET": bucket}
    ):
        yield url


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    }


def s3_client(url: str):
    import boto3

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", **_boto_keys())


POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"  # the machine's server, trust auth


@contextlib.contextmanager
def fresh_database(prefix: str = "steelflow_test") -> Iterator[str]:
    """A PostgreSQL database of its own on the machine's server; yields its name, drops it afterwards."""
    import uuid

    import psycopg

    database = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{database}"')
    try:
        yield database
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@dataclasses.dataclass(frozen=True)
class AuthServer:
    """A running `steelflow server` with authentication, and its admin's credentials."""

    uri: str
    admin: tuple[str, str] = dataclasses.field(repr=False)
    log: Path


@contextlib.contextmanager
def steelflow_server(
    root: Path, backend_uri: str, artifacts: str, env: dict[str, str] | None = None
) -> Iterator[AuthServer]:
    """`steelflow server` as a team runs it (basic auth on) on a free loopback port, its admin's password
    fresh and handed over in the environment only."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    admin = ("admin", secrets.token_urlsafe(18))
    args = [
        str(VENV_BIN / "steelflow"), "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", artifacts,
        "--port", str(port),
        "--auth-config", str(root / "basic_auth.ini"),
    ]  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    log = root / "steelflow-server.log"
    with running(args, f"{uri}/health", log, {**(env or {}), "STEELFLOW_MLFLOW_ADMIN_PASSWORD": admin[1]}):
        yield AuthServer(uri, admin, log)


@contextlib.contextmanager
def as_user(username: str, password: str) -> Iterator[None]:
    """MLflow clients of this process authenticate as ``username`` (MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    from unittest import mock

    creds = {"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password}
    with mock.patch.dict(os.environ, creds):
        yield


def create_user(server: AuthServer, username: str, grants: dict[tuple[str, str], str] | None = None) -> str:
    """The admin creates ``username`` with a fresh password and grants it ``{(resource_type, resource_id):
    permission}``, e.g. ``{("registered_model", "steel-defect-classifier"): "EDIT"}``; returns the
    password."""
    from mlflow.server import get_app_client

    password = secrets.token_urlsafe(18)
    with as_user(*server.admin):
        client = get_app_client("basic-auth", tracking_uri=server.uri)
        client.create_user(username, password)
        for (resource_type, resource_id), permission in (grants or {}).items():
            client.grant_user_permission(username, resource_type, resource_id, permission)
    return password


class RestartableMlflowServer:
    """A real `mlflow server` that a test can kill (SIGKILL, no goodbye) and start again on the same port
    and store, as a tracking server that dies and comes back does."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        args = [
            str(VENV_BIN / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        with (self.root / "mlflow-server.log").open("a") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                start_new_session=True,
            )
        wait_for(lambda: _answers(f"{self.uri}/health"), self.proc, f"{self.uri}/health")

    def kill(self) -> None:
        """SIGKILL the server and its workers; returns once the port refuses connections."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        self.proc.wait()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                _answers(f"{self.uri}/health")
            except OSError:
                return
            time.sleep(0.2)


@contextlib.contextmanager
def restartable_mlflow_server(root: Path) -> Iterator[RestartableMlflowServer]:
    """A :class:`RestartableMlflowServer`, started; killed afterwards."""
    server = RestartableMlflowServer(root)
    server.start()
    try:
        yield server
    finally:
        server.kill()
