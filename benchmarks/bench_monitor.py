"""Drift watch on real NEU-CLS: false alarms on clean batches, detection of each corruption, time per batch.

Half of NEU-CLS (stratified by class, seeded) is the reference, measured as ``steelflow monitor
--build-reference`` measures it (:func:`steelflow.monitor.measures.quality`); batches of ``--batch-size``
are drawn from the other half: clean (``--batches`` of them: the false-alarm rate, goal ≤
``monitor.false_alarm_rate`` + 2 points) and the same batches under every condition of params.yaml's
``corrupt.conditions`` and ``corrupt.holdout`` (the detection rate, goal ≥ 95 %). The thresholds are
calibrated once for the batch size, as ``steelflow monitor`` calibrates them. Seconds per batch: the real
path on files (measure 64 files, calibrate, judge, draw the page), median of three.

Quality measures only by default; ``--model URI`` (a pyfunc trained on NEU-CLS: models:/…, runs:/…, or a
saved pyfunc folder) adds its confidence (``monitor.confidence``). Give it with ``--split`` (that model's
test split, ``data/splits/test.csv``): only the images listed there are used, so the reference and the
batches are images the model was not fitted to, as ``monitor.reference_split`` keeps them in a project.
Writes benchmarks/results/monitor.json.

    .venv/bin/python benchmarks/bench_monitor.py [--batches 200] [--batch-size 64] [--per-class 150]
        [--model URI --split PROJECT/data/splits/test.csv] [--out monitor.json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from steelflow.config import load_params  # noqa: E402
from steelflow.data import corruptions, images, quality  # noqa: E402
from steelflow.monitor import drift, measures, report, watch  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "NEU-CLS"))
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--per-class", type=int, default=150, help="pool images per class (the rest: reference)"
    )
    parser.add_argument("--model", help="a pyfunc URI trained on NEU-CLS: adds the confidence measure")
    parser.add_argument("--split", help="a split CSV (the model's test split): use only the images it lists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="monitor.json")
    args = parser.parse_args()

    p = load_params(REPO / "params.yaml")
    cfg = p.monitor
    files = sorted(Path(args.data).glob("*.bmp"))
    if args.split:  # by file name: a project's split rows name its copy of each image
        listed = {Path(p).name for p in pd.read_csv(args.split)["path"]}
        files = [f for f in files if f.name in listed]
        if not files:
            raise SystemExit(f"{args.split}: lists none of the images in {args.data}")
    rng = np.random.default_rng(args.seed)
    ref_files, pool = [], []
    for prefix in sorted({f.name.split("_")[0] for f in files}):
        group = [f for f in files if f.name.split("_")[0] == prefix]
        order = rng.permutation(len(group))
        half = len(group) // 2
        ref_files += [group[i] for i in order[:half]]
        pool += [group[i] for i in order[half:][: args.per_class]]
    model = _model(args.model)
    wanted = [m for m in cfg.measures if model is not None or m != "confidence"]
    ref_table = measures.quality(ref_files, p.data)
    if model is not None:
        ref_table["confidence"] = _confidence(model, [images.load(f, 1) for f in ref_files], cfg.confidence)
    reference = {m: ref_table[m].to_numpy() for m in wanted}

    conditions = [*p.corrupt.conditions, *p.corrupt.holdout]
    clean = [images.load(f, 1) for f in pool]
    shas = [hashlib.sha256(f.read_bytes()).hexdigest() for f in pool]
    pool_measures = {"clean": _measure(clean, model, cfg.confidence)}
    for c in conditions:
        started = time.perf_counter()
        bad = [
            corruptions.apply(img, c, corruptions.rng_for(args.seed, s, c.name))
            for img, s in zip(clean, shas, strict=True)
        ]
        pool_measures[c.name] = _measure(bad, model, cfg.confidence)
        print(f"  measured {c.name} ({time.perf_counter() - started:.1f} s)", flush=True)

    calibration = drift.calibrate(
        reference, args.batch_size, cfg.false_alarm_rate, cfg.calibration_batches, cfg.seed
    )
    draws = [rng.choice(len(pool), args.batch_size, replace=False) for _ in range(args.batches)]
    rates: dict[str, dict] = {}
    for name, table in pool_measures.items():
        flags = np.array(
            [
                [v.drifted for v in drift.judge({m: table[m][idx] for m in wanted}, reference, calibration)]
                for idx in draws
            ]
        )
        rates[name] = {
            "flagged": float(flags.any(axis=1).mean()),
            "by_measure": dict(zip(wanted, flags.mean(axis=0).round(4).tolist(), strict=True)),
        }
    seconds = _seconds_per_batch(pool, draws[:3], p, reference, cfg, model)
    detection = {k: v["flagged"] for k, v in rates.items() if k != "clean"}
    result = {
        "data": args.data,
        "reference_images": len(ref_files),
        "pool_images": len(pool),
        "batch_size": args.batch_size,
        "batches": args.batches,
        "measures": wanted,
        "model": args.model,
        "split": args.split,
        "confidence": cfg.confidence if model is not None else None,
        "false_alarm_rate_param": cfg.false_alarm_rate,
        "calibration": {
            "batches": calibration.batches,
            "tail": calibration.tail,
            "resampled_rate": calibration.false_alarm_rate,
        },
        "false_alarm_rate": rates["clean"]["flagged"],
        "false_alarm_goal_met": rates["clean"]["flagged"] <= cfg.false_alarm_rate + 0.02,
        "detection_rate": detection,
        "detection_goal_met": {k: v >= 0.95 for k, v in detection.items()},
        "by_measure": {k: v["by_measure"] for k, v in rates.items()},
        "seconds_per_batch": seconds,
        "machine": platform.platform(),
    }
    print(
        f"false alarms: {result['false_alarm_rate']:.3f} over {args.batches} clean batches "
        f"of {args.batch_size} "
        f"(param {cfg.false_alarm_rate}; resampled {calibration.false_alarm_rate:.3f})"
    )
    for name, rate in detection.items():
        print(f"  detected {name:<18} {rate:6.1%}   {rates[name]['by_measure']}")
    print(f"seconds per batch ({', '.join(wanted)}; on files): {seconds:.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(result, indent=2))
    print(f"→ {RESULTS / args.out}")


def _measure(grays: list[np.ndarray], model, confidence: str) -> dict[str, np.ndarray]:
    rows = [quality.measure(g) for g in grays]
    out = {k: np.array([r[k] for r in rows]) for k in ("brightness", "sharpness", "entropy")}
    out["size"] = np.array([np.sqrt(g.shape[0] * g.shape[1]) for g in grays]).round(3)
    out["mode"] = np.array(["L"] * len(grays))  # a corrupted grayscale image is stored as grayscale
    if model is not None:
        out["confidence"] = _confidence(model, grays, confidence)
    return out


def _model(uri: str | None):
    if uri is None:
        return None
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(uri)


def _confidence(model, grays: list[np.ndarray], kind: str) -> np.ndarray:
    """``monitor.confidence`` of the model's answer for each image, as :func:`measures.confidence` takes it
    (the images go in as PNG bytes, what ``steelflow predict`` sends)."""
    cells = []
    for g in grays:
        buffer = io.BytesIO()
        Image.fromarray(g).save(buffer, format="PNG")
        cells.append(buffer.getvalue())
    answers = []
    for start in range(0, len(cells), 64):
        rows = model.predict(pd.DataFrame({"image": cells[start : start + 64]}))
        p = rows[[c for c in rows.columns if c.startswith("p_")]].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
        answers.append(pd.DataFrame({"max_softmax": p.max(axis=1), "prediction_entropy": entropy + 0.0}))
    return pd.concat(answers)[measures.CONFIDENCE[kind]].to_numpy()


def _seconds_per_batch(pool, draws, p, reference, cfg, model) -> float:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for b, idx in enumerate(draws):
            folder = Path(tmp) / str(b)
            folder.mkdir()
            for i in idx:
                (folder / pool[i].name).write_bytes(pool[i].read_bytes())
            started = time.perf_counter()
            files = sorted(folder.iterdir())
            table = measures.quality(files, p.data)
            if model is not None:  # as `steelflow monitor` runs it: every file read and classified
                answers = measures.confidence(model, files, p.predict.batch_size)
                table["confidence"] = answers[measures.CONFIDENCE[cfg.confidence]].to_numpy()
            batch = {m: table[m].to_numpy() for m in reference}
            result = watch.judged(batch, reference, cfg) | {
                "batch": str(folder),
                "reference": "bench",
                "model": None if model is None else {"uri": "bench"},
            }
            report.page(result, batch, reference)
            times.append(time.perf_counter() - started)
    return float(np.median(times))


if __name__ == "__main__":
    main()
