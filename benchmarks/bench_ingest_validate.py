"""Benchmark: ingest + validate of the full NEU-CLS set, and the decoded cache against decoding every epoch.

Ingest decodes every image faithfully and takes its perceptual hash and quality measures; validate runs the
Great Expectations suite with the near-duplicate, shortcut and quality checks on (the defaults).

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench_ingest_validate.py [--source DIR]``).
Prints a table and writes ``benchmarks/results/ingest_validate.json``. Each CLI step runs as a fresh process,
as ``dvc repro`` runs it, so Python start-up and the Great Expectations import are included.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "datasets" / "NEU-CLS"
RESULT = REPO / "benchmarks" / "results" / "ingest_validate.json"
FLOOR_S = (
    20.0  # issue #15: ingest + validate of the 1800 NEU-CLS images with the new checks, GX import included
)


def _timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.source.is_dir():
        sys.exit(f"dataset not found: {args.source}")

    steelflow = [sys.executable, "-m", "steelflow"]
    results: dict[str, object] = {"source": str(args.source), "python": platform.python_version(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"]["source"] = str(args.source)
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        for _ in range(args.repeats):
            shutil.rmtree(work / "data", ignore_errors=True)
            ingest_s = _timed([*steelflow, "ingest"], work)
            validate_s = _timed([*steelflow, "validate"], work)
            import_s = _timed([sys.executable, "-c", "import great_expectations"], work)
            results["runs"].append(
                {
                    "ingest_s": ingest_s,
                    "validate_s": validate_s,
                    "total_s": ingest_s + validate_s,
                    "gx_import_s": import_s,
                }
            )
        n_images = len((work / "data" / "manifest.csv").read_text().splitlines()) - 1
        report = json.loads((work / "reports" / "validation.json").read_text())
        checks = {
            "near_duplicate_groups": [g["paths"] for g in report["near_duplicates"]["groups"]],
            "shortcut_found": report["shortcuts"].get("found"),
            "quality_flags": {name: flag["count"] for name, flag in report["quality"].items()},
        }

        # The fast data path: decode every training image (what an epoch would cost without the cache)
        # against loading the decoded cache, in this process.
        _timed([*steelflow, "split"], work)
        from steelflow.data import cache, images, manifest

        train = manifest.read(work / "data" / "splits" / "train.csv")
        start = time.perf_counter()
        for p in train["path"]:
            images.resize(images.load(work / "data" / p, 1), params["data"]["cache_size"])
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        cache.load(cache.split_path(work / "data" / "cache", "train"))
        cache_s = time.perf_counter() - start

    best = min(results["runs"], key=lambda r: r["total_s"])
    results.update(
        n_images=n_images,
        checks=checks,
        best_total_s=best["total_s"],
        floor_s=FLOOR_S,
        within_floor=best["total_s"] <= FLOOR_S,
        train_epoch_decode_s=decode_s,
        train_epoch_cache_s=cache_s,
        cache_speedup=decode_s / cache_s,
    )
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(results, indent=2) + "\n")

    print(f"NEU-CLS ingest + validate ({n_images} images, fresh processes, best of {args.repeats}):")
    for r in results["runs"]:
        print(
            f"  ingest {r['ingest_s']:5.2f} s  validate {r['validate_s']:5.2f} s  total {r['total_s']:5.2f} s"
            f"  (GX import alone {r['gx_import_s']:.2f} s)"
        )
    print(
        f"  best total {best['total_s']:.2f} s"
        f"  (floor {FLOOR_S:.0f} s: {'ok' if results['within_floor'] else 'MISSED'})"
    )
    print(
        f"Training images per epoch ({len(train)}): decode {decode_s:.2f} s vs cache {cache_s:.3f} s "
        f"→ {results['cache_speedup']:.0f}× faster"
    )
    groups = "; ".join(" + ".join(Path(p).stem for p in g) for g in checks["near_duplicate_groups"])
    print(f"Near-duplicate groups: {groups or 'none'}; shortcut: {checks['shortcut_found']}; quality flags:")
    print("  " + ", ".join(f"{name} {count}" for name, count in checks["quality_flags"].items()))
    print(f"wrote {RESULT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
