"""Benchmark: end-to-end `steelflow predict` on the real NEU-CLS folder (1800 BMPs), decode included.

Run after ``dvc repro`` (it registers a version): ``.venv/bin/python benchmarks/bench_predict.py
[--model models:/steel-defect-classifier/1] [--images ../shared/datasets/NEU-CLS]``. Times the command as a
user runs it (a fresh process: imports, model download and load, reading, decoding, classifying and
writing the CSV) and reports images/s; the process's own "predict" phase is timed separately from its
start-up by a second run on a single image. Writes ``benchmarks/results/predict.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "predict.json"
NEU_CLS = REPO.parent / "shared" / "datasets" / "NEU-CLS"


def timed_predict(inputs: list[str], model: str, out: Path) -> tuple[float, int]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    proc = subprocess.run(
        ["steelflow", "predict", *inputs, "--model", model, "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 12):
        raise SystemExit(f"steelflow predict failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--model", default=None, help="model URI (default: the version reports/registration.json names)"
    )
    ap.add_argument("--images", type=Path, default=NEU_CLS)
    args = ap.parse_args()
    model = args.model or json.loads((REPO / "reports" / "registration.json").read_text())["model_uri"]
    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in {".bmp", ".png", ".jpg"})
    with tempfile.TemporaryDirectory() as tmp:
        one, _ = timed_predict([str(files[0])], model, Path(tmp) / "one.csv")
        total, code = timed_predict([str(args.images)], model, Path(tmp) / "all.csv")
        rows = sum(1 for _ in (Path(tmp) / "all.csv").open()) - 1
    result = {
        "model": model,
        "images": rows,
        "exit_code": code,
        "seconds_total": total,
        "seconds_one_image": one,
        "images_per_s_end_to_end": rows / total,
        "images_per_s_after_startup": rows / max(total - one, 1e-9),
    }
    print(
        f"steelflow predict on {rows} NEU-CLS files: {total:.1f} s end to end "
        f"({result['images_per_s_end_to_end']:.0f} images/s); start-up and model load {one:.1f} s, "
        f"so {result['images_per_s_after_startup']:.0f} images/s after it (exit {code})"
    )
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"→ {RESULT}")


if __name__ == "__main__":
    main()
