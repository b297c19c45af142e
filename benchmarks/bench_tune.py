"""Tuning throughput: trials per minute with 1 and with 2 workers on one study, CI profile.

Builds a throwaway project from the repository's params.yaml (the CPU/CI profile: synthetic data, 64 px),
runs ingest → validate → split once, then `steelflow tune` as a fresh process per worker count, each on
a fresh SQLite study. The pruner is off here so that every trial does the same work (with pruning, which
trials stop early depends on who finishes first). Prints the figures and writes
benchmarks/results/tune.json.

    .venv/bin/python benchmarks/bench_tune.py [--trials 6] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "tune.json"


def steelflow(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "steelflow", *args], cwd=cwd, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    runs = []
    with tempfile.TemporaryDirectory(prefix="steelflow-bench-tune-") as tmp:
        project = Path(tmp)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for step in ("ingest", "validate", "split"):
            steelflow(step, cwd=project)
        for workers in args.workers:
            started = time.perf_counter()
            steelflow(
                "tune",
                "--no-track",
                "--workers",
                str(workers),
                "--set",
                f"tune.n_trials={args.trials}",
                "--set",
                f"tune.storage=sqlite:///bench-{workers}.db",
                "--set",
                "tune.pruner.kind=none",
                cwd=project,
            )
            seconds = time.perf_counter() - started
            runs.append(
                {"workers": workers, "seconds": seconds, "trials_per_minute": args.trials / seconds * 60}
            )
            rate = runs[-1]["trials_per_minute"]
            print(f"{workers} worker(s): {args.trials} trials in {seconds:.1f} s = {rate:.2f} trials/min")

    base = runs[0]["trials_per_minute"]
    for run in runs:
        run["ratio"] = run["trials_per_minute"] / base
    result = {
        "profile": "params.yaml (CPU/CI)",
        "trials": args.trials,
        "epochs_per_trial": params["tune"]["epochs"],
        "image_size": params["model"]["image_size"],
        "pruner": "none",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(" | ".join(f"{r['workers']} workers: {r['ratio']:.2f}x" for r in runs), f"→ {RESULTS}")


if __name__ == "__main__":
    main()
