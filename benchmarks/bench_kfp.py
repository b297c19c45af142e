"""Orchestration overhead of Kubeflow's local runner: the whole pipeline through kfp.local against the same
step functions called one after another in a single Python process, on the same data and params.

Builds two throwaway projects from params.yaml (the CPU/CI profile by default) with their own MLflow and
Optuna SQLite files. "direct" runs ingest → validate → split → corrupt → tune → train → evaluate → gate →
register by calling the functions the CLI and the components call; "kfp" runs `steelflow pipeline run
--local`, where each step is a subprocess (its own interpreter, imports, workspace and artifact copies).
Both are timed as whole processes. Prints the figures, with the per-task times kfp.local logs, and writes
benchmarks/results/kfp.json.

    .venv/bin/python benchmarks/bench_kfp.py [--set dotted.key=value ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "kfp.json"

# One process, the step functions in pipeline order; prints one JSON line of per-step seconds.
DIRECT = """
import json, sys, time
t0 = time.perf_counter()
from steelflow import config, paths
from steelflow.registry import candidate_gates
from steelflow.steps.evaluate import tracked as evaluate
from steelflow.steps.register import register
from steelflow.steps.train import train
from steelflow.steps import corrupt, ingest, split, tune, validate
p = config.load_params("params.yaml", sys.argv[1:])
times = {"imports": time.perf_counter() - t0}
def step(name, fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    times[name] = time.perf_counter() - t
    return out
step("ingest", ingest.ingest, p.data)
step("validate", validate.validate, paths.MANIFEST, p.data, p.validate_)
step("split", split.split, p.data, p.split)
step("corrupt", corrupt.corrupt, p.data, p.corrupt)
step("tune", tune.tune, p, track=True)
step("train", train, p)
step("evaluate", evaluate, p)
gates = step("gate", candidate_gates, p)
assert all(g.passed for g in gates), gates
step("register", register, p)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="dotted.key=value")
    args = parser.parse_args()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "STEELFLOW_OPTUNA_STORAGE")
    }
    env["STEELFLOW_GIT_COMMIT"] = _git("rev-parse", "HEAD")  # the projects are not checkouts
    with tempfile.TemporaryDirectory(prefix="steelflow-bench-kfp-") as tmp:
        projects = {name: Path(tmp) / name for name in ("direct", "kfp")}
        for project in projects.values():
            project.mkdir()
            (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

        started = time.perf_counter()
        direct = subprocess.run(
            [sys.executable, "-c", DIRECT, *args.overrides],
            cwd=projects["direct"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        direct_s = time.perf_counter() - started
        direct_steps = json.loads(direct.stdout.strip().splitlines()[-1])

        sets = [a for o in args.overrides for a in ("--set", o)]
        started = time.perf_counter()
        kfp = subprocess.run(
            [sys.executable, "-m", "steelflow", "pipeline", "run", "--local", *sets],
            cwd=projects["kfp"],
            env=env,
            capture_output=True,
            text=True,
        )
        kfp_s = time.perf_counter() - started
        if kfp.returncode != 0:
            sys.exit(f"kfp run failed:\n{kfp.stdout[-3000:]}\n{kfp.stderr[-3000:]}")
        kfp_tasks = task_seconds(kfp.stdout + kfp.stderr)

    result = {
        "what": "whole pipeline: step functions in one process vs kfp.local (one process a task)",
        "command": "python benchmarks/bench_kfp.py " + " ".join(f"--set {o}" for o in args.overrides),
        "profile": "params.yaml (CPU/CI profile)" + (f" with {args.overrides}" if args.overrides else ""),
        "direct_seconds": round(direct_s, 1),
        "kfp_local_seconds": round(kfp_s, 1),
        "overhead_seconds": round(kfp_s - direct_s, 1),
        "ratio": round(kfp_s / direct_s, 2),
        "direct_step_seconds": {k: round(v, 1) for k, v in direct_steps.items()},
        "kfp_task_seconds": kfp_tasks,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": dt.date.today().isoformat(),
    }
    print(f"direct (one process):      {direct_s:7.1f} s")
    overhead = f"overhead {kfp_s - direct_s:+.1f} s, {kfp_s / direct_s:.2f}x"
    print(f"kfp.local (process a task): {kfp_s:7.1f} s   {overhead}")
    print("per step, direct vs kfp task:")
    for name, seconds in direct_steps.items():
        kfp_task = sum(v for k, v in kfp_tasks.items() if k.split("-")[0] == name)
        print(f"  {name:<10} {seconds:6.1f} s   {kfp_task:6.1f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"→ {RESULTS.relative_to(REPO)}")


def task_seconds(log: str) -> dict[str, float]:
    """Each task's wall time, from the time stamps kfp.local prints when a task finishes."""
    clean = re.sub(r"\x1b\[[0-9;]*m", "", log)
    stamps = [
        (dt.datetime.strptime(m[1], "%H:%M:%S.%f"), m[2])
        for m in re.finditer(
            r"^(\d\d:\d\d:\d\d\.\d+) - INFO - (?:Running pipeline|Task '([\w-]+)' finished)", clean, re.M
        )
    ]
    out: dict[str, float] = {}
    for (before, _), (after, task) in zip(stamps, stamps[1:], strict=False):
        out[task] = round(out.get(task, 0.0) + (after - before).total_seconds(), 1)
    return out


def _git(*args: str) -> str:
    return (
        subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip() or "unknown"
    )


if __name__ == "__main__":
    main()
