"""Team set-up costs: `dvc push` / `dvc pull` of NEU-CLS to a local S3 server, and logging one run to a
remote MLflow server (PostgreSQL + S3 artifacts, via `steelflow server`) against the local SQLite file.

Everything runs on this machine (SeaweedFS as the S3 server, the machine's PostgreSQL), so the figures are
the software's overhead, not a network's. Prints the figures and writes benchmarks/results/team.json.

    .venv/bin/python benchmarks/bench_team.py [--neu ../shared/datasets/NEU-CLS]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.servers import S3_KEYS, VENV_BIN, free_port, running, s3_server  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "team.json"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def timed(*args: str, cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, env={**os.environ, **env}, check=True, capture_output=True)
    return time.perf_counter() - start


def dvc_round_trip(neu: Path, s3_url: str, work: Path) -> dict[str, float]:
    repo = work / "dvc-repo"
    (repo / "data").mkdir(parents=True)
    env = {**S3_KEYS, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    for cmd in (
        ["dvc", "init", "-q"],
        ["dvc", "remote", "add", "-d", "team", "s3://steelflow/neu"],
        ["dvc", "remote", "modify", "team", "endpointurl", s3_url],
    ):
        subprocess.run(cmd, cwd=repo, env={**os.environ, **env}, check=True, capture_output=True)
    shutil.copytree(neu, repo / "data" / "NEU-CLS")
    size = sum(f.stat().st_size for f in (repo / "data" / "NEU-CLS").rglob("*") if f.is_file())
    add = timed("dvc", "add", "data/NEU-CLS", cwd=repo, env=env)
    push = timed("dvc", "push", cwd=repo, env=env)
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data" / "NEU-CLS")
    pull = timed("dvc", "pull", cwd=repo, env=env)
    return {"files": sum(1 for _ in (repo / "data" / "NEU-CLS").rglob("*.bmp")), "megabytes": size / 1e6,
            "dvc_add_s": add, "dvc_push_s": push, "dvc_pull_s": pull}  # fmt: skip


def log_one_run(uri: str, artifact: Path) -> float:
    """What a training run logs: ~60 params, 25 epochs × 6 metrics, 7 × 6 final metrics, a few artifacts."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench")
    start = time.perf_counter()
    with mlflow.start_run():
        mlflow.log_params({f"section.key_{i}": i for i in range(60)})
        for epoch in range(1, 26):
            mlflow.log_metrics({f"m{i}": epoch * 0.01 * i for i in range(6)}, step=epoch)
        mlflow.log_metrics({f"eval.c{c}.m{i}": 0.5 for c in range(7) for i in range(6)})
        for _ in range(3):
            mlflow.log_artifact(str(artifact), "files")
    return time.perf_counter() - start


def logging_overhead(s3_url: str, work: Path, runs: int) -> dict[str, float]:
    import psycopg

    artifact = work / "artifact.bin"
    artifact.write_bytes(os.urandom(9_000_000))  # about a CASI-Net checkpoint
    database = f"steelflow_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{database}"')
    try:
        local = [log_one_run(f"sqlite:///{work / 'local.db'}", artifact) for _ in range(runs)]
        port = free_port()
        args = [
            str(VENV_BIN / "steelflow"), "server", "--insecure",  # loopback; as measured before auth
            "--backend-store-uri", f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
            "--artifacts-destination", "s3://steelflow/mlflow", "--port", str(port),
        ]  # fmt: skip
        env = {**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3_url}
        with running(args, f"http://127.0.0.1:{port}/health", work / "server.log", env):
            remote = [log_one_run(f"http://127.0.0.1:{port}", artifact) for _ in range(runs)]
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    best_local, best_remote = min(local), min(remote)
    return {"runs_each": runs, "local_sqlite_s": best_local, "remote_server_s": best_remote,
            "ratio": best_remote / best_local}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neu", type=Path, default=REPO.parent / "shared" / "datasets" / "NEU-CLS")
    parser.add_argument("--runs", type=int, default=3, help="logged runs per store (best is kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="steelflow-bench-team-") as tmp:
        work = Path(tmp)
        with s3_server(work / "s3") as s3_url:
            dvc = dvc_round_trip(args.neu, s3_url, work)
            print(
                f"dvc: {dvc['files']} files, {dvc['megabytes']:.0f} MB: push {dvc['dvc_push_s']:.1f} s, "
                f"pull {dvc['dvc_pull_s']:.1f} s (add {dvc['dvc_add_s']:.1f} s)"
            )
            logging = logging_overhead(s3_url, work, args.runs)
            print(
                f"one run logged: local SQLite {logging['local_sqlite_s']:.2f} s, remote server "
                f"{logging['remote_server_s']:.2f} s ({logging['ratio']:.2f}x)"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"dvc_neu_cls": dvc, "mlflow_logging": logging}, indent=2) + "\n")
    print(f"→ {RESULTS}")


if __name__ == "__main__":
    main()
