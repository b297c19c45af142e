"""Real servers as child processes on free loopback ports, for integration tests (no mocks, no Docker)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def running(args: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Start ``args``, wait for ``ready_url`` to answer 200, stop the process group afterwards."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            wait_http(ready_url, proc)
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
