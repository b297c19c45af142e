"""Benchmark: an HTTP load test of `mlflow models serve` on loopback.

Run after ``dvc repro``: ``.venv/bin/python benchmarks/bench_http.py [--model URI] [--requests 2000]
[--clients 8]``. Starts ``mlflow models serve`` for the model (default: the version
``reports/registration.json`` names) on a free loopback port, then ``--clients`` threads send
``--requests`` requests in all, each one NEU-CLS image as base64 in ``dataframe_split`` (the files taken in
turn), and the run stops at ``--max-seconds`` whatever is left. Reports throughput, p50 / p95 / p99 latency
and errors (any answer but 200, or no answer); the floor is 0 errors over ≥ 2000 requests from 8 clients.
Writes ``benchmarks/results/http.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support.servers import free_port, running  # noqa: E402  (the tests' server runner, reused)

RESULT = REPO / "benchmarks" / "results" / "http.json"
NEU_CLS = REPO.parent / "shared" / "datasets" / "NEU-CLS"


def bodies(folder: Path, n: int) -> list[bytes]:
    files = sorted(folder.glob("*.bmp"))[:n]
    return [
        json.dumps(
            {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(f.read_bytes()).decode()]]}}
        ).encode()
        for f in files
    ]


def load(url: str, payloads: list[bytes], requests: int, clients: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds

    def client() -> None:
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            request = urllib.request.Request(
                url, data=payloads[i % len(payloads)], headers={"Content-Type": "application/json"}
            )
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=60) as r:
                    r.read()
                    ok = r.status == 200
                    why = f"HTTP {r.status}"
            except (urllib.error.URLError, OSError) as e:
                ok, why = False, str(e)
            with lock:
                (latencies.append(time.perf_counter() - start) if ok else errors.append(why))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = sorted(latencies)

    def pct(q: float) -> float:
        return 1000 * done[min(len(done) - 1, int(q * len(done)))] if done else float("nan")

    return {
        "requests_asked": requests,
        "requests_answered": len(done),
        "errors": len(errors),
        "first_errors": errors[:5],
        "clients": clients,
        "seconds": wall,
        "requests_per_s": len(done) / wall,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "floor_passed": not errors and len(done) >= min(requests, 2000) and clients >= 8,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--images", type=Path, default=NEU_CLS)
    args = ap.parse_args()
    model = args.model or json.loads((REPO / "reports" / "registration.json").read_text())["model_uri"]
    port = free_port()
    venv = Path(sys.executable).parent
    cmd = [
        str(venv / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local",
        "--host", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    env = {"PATH": f"{venv}{os.pathsep}{os.environ['PATH']}"}
    log = REPO / "benchmarks" / "results" / "http-serve.log"
    payloads = bodies(args.images, 200)
    with running(cmd, f"http://127.0.0.1:{port}/ping", log, env):
        url = f"http://127.0.0.1:{port}/invocations"
        load(url, payloads[:8], 16, 2, 60)  # warm-up
        result = {"server": "mlflow models serve", "model": model, **load(
            url, payloads, args.requests, args.clients, args.max_seconds
        )}  # fmt: skip
    log.unlink(missing_ok=True)
    print(
        f"{result['server']}: {result['requests_answered']}/{args.requests} requests from {args.clients} "
        f"clients in {result['seconds']:.1f} s = {result['requests_per_s']:.1f} requests/s; p50 "
        f"{result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; "
        f"{result['errors']} errors (floor {'passed' if result['floor_passed'] else 'FAILED'})"
    )
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"→ {RESULT}")


if __name__ == "__main__":
    main()
