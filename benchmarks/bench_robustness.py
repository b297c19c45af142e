"""Robustness on real NEU-CLS: clean-trained vs robust-trained CASI-Net, with every input stage, over seeds.

Builds a throwaway project from profiles/paper.yaml on the real NEU-CLS (the paper's 70/30 split, 20 % of
train held out for early stopping), at a CPU size (default 64 px), runs ingest → validate → split →
corrupt once, then trains and evaluates one model per row and seed: training regime (``clean``:
``train.robust.enabled`` off, the paper's; ``robust``: on; ``consistency``: on, with AugMix's
Jensen–Shannon loss, ``train.robust.consistency.weight`` = ``--consistency-weight``) × input stage
(``model.input_norm``) × training seed (``train.seed`` 0 .. ``--seeds`` − 1; the data, split and test
corruptions stay the same). Runs are separate processes, ``--jobs`` at a time, one thread each. Columns:
the clean test set, the six Table 1 conditions and the hold-out block (corruption families training never
sees), and per run the worst Table 1 condition and the worst and mean hold-out.

Each row is the mean ± sd (n − 1) over its seeds, and every row is compared with the reference row
(``--reference``, default the first) on the same seeds: the mean and sd of the paired differences, a
paired t-test and a sign test (scipy). With a clean-trained row, every run's mCE against that row's mean
graded errors (``--mce-baseline``; :func:`add_mce`). Prints the tables and writes
benchmarks/results/robustness.json, robustness.png (means with ± sd error bars), robustness-graded.png
(each graded family's mean error by severity) and robust_training_examples.png (training images and
what robust training makes of them; not for ``--data synthetic``).

    .venv/bin/python benchmarks/bench_robustness.py [--size 64] [--epochs 25] [--jobs 2] [--seeds 1]
        [--norms none standardize flatfield local] [--regimes clean robust consistency]
        [--consistency-weight 12] [--reference REGIME/NORM] [--mce-baseline REGIME/NORM]
        [--data DIR | synthetic] [--per-class N] [--workdir DIR] [--results DIR] [--set KEY=VALUE ...]
        [--out NAME] [--collect]

``--set`` applies params overrides to every row, for an ablation
(e.g. ``--set train.robust.noise.spectrum=[0,0]``). Seed 0's run of a row keeps the folder name runs had
before seeds (``rows/<regime>-<norm>``), so ``--collect`` reads older workdirs as one-seed rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FLOORS = {"clean": 0.985, "table1": 0.95, "holdout": 0.90}  # issue 31's floors, on the mean over seeds
AGGREGATES = ("table1_worst", "holdout_worst", "holdout_mean")  # per run, beside the conditions
REGIMES = ("clean", "robust", "consistency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=str(REPO.parent / "shared" / "datasets" / "NEU-CLS"),
        help="a folder of class folders, or 'synthetic' (the procedural images; a smoke run)",
    )
    parser.add_argument("--per-class", type=int, help="--data synthetic: images per class")
    parser.add_argument("--size", type=int, default=64, help="cache and model image size, px")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (one thread each)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per row: train.seed 0..K-1")
    parser.add_argument("--norms", nargs="+", default=["none", "standardize", "flatfield", "local"])
    parser.add_argument("--regimes", nargs="+", default=["clean", "robust"], choices=REGIMES)
    parser.add_argument(
        "--mce-baseline",
        default="clean/none",
        help="REGIME/NORM whose graded errors (mean over its seeds) normalise every run's mCE "
        "(default: the paper's clean-trained CASI-Net; falls back to the first clean row)",
    )
    parser.add_argument(
        "--mce-from",
        type=Path,
        help="take the --mce-baseline row's runs from this earlier result (its JSON) instead of this run's: "
        "rows trained apart, on the same data and ladders",
    )
    parser.add_argument(
        "--consistency-weight", type=float, default=12.0, help="the consistency regime's λ (AugMix: 12)"
    )
    parser.add_argument(
        "--reference", help="REGIME/NORM the other rows are compared with (default: the first)"
    )
    parser.add_argument("--workdir", type=Path, help="keep the project here (default: a temporary folder)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and PNGs go")
    parser.add_argument("--out", default="robustness", help="name of the JSON and PNG under --results")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="params overrides")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="write the report from the runs already trained in --workdir (of --regimes x --norms x "
        "--seeds), training none: for runs made apart (--row) or a run that was stopped",
    )
    parser.add_argument("--row", nargs=3, metavar=("REGIME", "NORM", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:  # one run, in its own process (what the parent runs --jobs of at once)
        return _train_row(args.workdir, args.row[0], args.row[1], int(args.row[2]), args.consistency_weight)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    rows = [(r, n) for r in args.regimes for n in args.norms]
    reference = tuple(args.reference.split("/", 1)) if args.reference else rows[0]
    if reference not in rows:
        parser.error(
            f"--reference {args.reference} is not one of the rows (REGIME/NORM of --regimes x --norms)"
        )

    started = time.perf_counter()
    runs = [(r, n, seed) for r, n in rows for seed in range(args.seeds)]
    prep = None
    if args.collect:
        if not args.workdir:
            parser.error("--collect needs --workdir, the folder the rows were trained in")
        found = [run for run in runs if (args.workdir / "rows" / _folder(*run) / "row.json").is_file()]
        if not found:
            parser.error(f"no trained rows under {args.workdir / 'rows'}")
        results = [
            json.loads((args.workdir / "rows" / _folder(*run) / "row.json").read_text()) for run in found
        ]
    with tempfile.TemporaryDirectory(prefix="steelflow-bench-robust-") as tmp:
        project = args.workdir or Path(tmp)
        if not args.collect:
            project.mkdir(parents=True, exist_ok=True)
            _write_params(project, args)
            prep = time.perf_counter()
            for step in ("ingest", "validate", "split", "corrupt"):
                _steelflow(project, step)
            prep = time.perf_counter() - prep
            if args.data != "synthetic":
                examples(project, args.results / "robust_training_examples.png")
            weight = args.consistency_weight
            with ThreadPoolExecutor(args.jobs) as pool:
                results = list(pool.map(lambda run: _run_row(project, *run, weight), runs))
        baseline = add_mce(project, results, args.mce_baseline, args.mce_from)
    params = yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())
    holdout = [c["name"] for c in params["corrupt"]["holdout"]]
    summary = summarise(results, holdout)
    paired = compare(summary, reference)
    report = {
        "data": args.data,
        "image_size": args.size,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "consistency_weight": args.consistency_weight,
        "holdout": holdout,
        "overrides": args.set,
        "floors": FLOORS,
        "reference": "/".join(reference),
        "mce_baseline": baseline,  # the row whose mean graded errors normalise every run's mCE
        "summary": summary,  # per row: mean and sd over its seeds, each column
        "paired": paired,  # per row against the reference: paired differences over the common seeds
        "rows": results,  # every run
        "prepare_seconds": prep,
        "total_seconds": None if args.collect else time.perf_counter() - started,
        "row_seconds": sum(r["seconds"] for r in results),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": "benchmarks/bench_robustness.py " + " ".join(sys.argv[1:]),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(summary, holdout))
    if baseline is not None:
        print("\n" + mce_table(summary, baseline))
    if paired:
        print(f"\npaired against {'/'.join(reference)} (same seeds):\n" + paired_table(paired))
    _plot(summary, holdout, args.results / f"{args.out}.png")
    if any(r["graded_error"] for r in summary):
        _plot_graded(summary, args.results / f"{args.out}-graded.png")
    took = f"{report['row_seconds']:.0f} s of rows" if args.collect else f"{report['total_seconds']:.0f} s"
    print(f"total {took} → {args.results / args.out}.json, {args.out}.png")


def _folder(regime: str, norm: str, seed: int) -> str:
    """Seed 0 keeps the name runs had before seeds, so older workdirs are read as one-seed rows."""
    return f"{regime}-{norm}" if seed == 0 else f"{regime}-{norm}-s{seed}"


def _write_params(project: Path, args: argparse.Namespace) -> None:
    params = yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())
    params["data"]["source"] = "synthetic" if args.data == "synthetic" else str(Path(args.data).resolve())
    if args.per_class:
        params["data"]["synthetic"]["per_class"] = args.per_class
    if args.data == "synthetic":  # a smoke run's few images: the profile's NEU-CLS minimum would refuse them
        per_class = params["data"]["synthetic"]["per_class"]
        params["validate"]["min_per_class"] = min(params["validate"]["min_per_class"], per_class)
    params["data"]["cache_size"] = args.size
    params["model"]["image_size"] = args.size
    # the profile's hand-set values: a row is one regime × input stage, never tune's best values
    params["train"].update(epochs=args.epochs, patience=0, threads=1, use_tuned=False)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if args.set:  # validated here, once, so a typo fails before any training
        sys.path.insert(0, str(REPO))
        from steelflow.config import load_params

        load_params(project / "params.yaml", args.set)
        (project / "overrides.json").write_text(json.dumps(args.set))


def _steelflow(project: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "steelflow", *args], cwd=project, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"steelflow {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")


def _run_row(project: Path, regime: str, norm: str, seed: int, weight: float) -> dict:
    cmd = [sys.executable, __file__, "--workdir", str(project), "--row", regime, norm, str(seed)]
    cmd += ["--consistency-weight", str(weight)]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    row = json.loads((project / "rows" / _folder(regime, norm, seed) / "row.json").read_text())
    print(
        f"{regime:>11} {norm:<11} seed {seed} {row['seconds']:6.0f} s  " + _cells(row["accuracy"]), flush=True
    )
    return row


def _train_row(project: Path, regime: str, norm: str, seed: int, weight: float) -> None:
    os.chdir(project)
    sys.path.insert(0, str(REPO))
    from steelflow.config import load_params
    from steelflow.reproduce import train_and_evaluate

    overrides = json.loads(Path("overrides.json").read_text()) if Path("overrides.json").exists() else []
    robust = "false" if regime == "clean" else "true"
    regime_sets = [f"model.input_norm={norm}", f"train.robust.enabled={robust}", f"train.seed={seed}"]
    if regime == "consistency":
        regime_sets.append(f"train.robust.consistency.weight={weight}")
    elif regime == "robust":  # the robust row is the one without the loss, whatever --set says
        regime_sets.append("train.robust.consistency.weight=0")
    p = load_params("params.yaml", [*overrides, *regime_sets])
    out = Path("rows") / _folder(regime, norm, seed)
    start = time.perf_counter()
    trained, scored = train_and_evaluate(p, p.model, p.train, out)
    row = {
        "regime": regime,
        "input_norm": norm,
        "seed": seed,
        "accuracy": scored.accuracy,
        "summary": scored.summary,
        "best_epoch": trained.best_epoch,
        "graded": _graded_errors(out),
        "train_seconds": trained.seconds,
        "seconds": time.perf_counter() - start,
    }
    (out / "row.json").write_text(json.dumps(row, indent=2))


def _cells(acc: dict[str, float]) -> str:
    return " ".join(f"{k}={100 * v:.1f}" for k, v in acc.items())


def _graded_errors(folder: Path) -> dict | None:
    """The run's errors per graded family and severity (what ``evaluate`` wrote), if it graded any."""
    path = folder / "graded_errors.json"
    return json.loads(path.read_text()) if path.is_file() else None


# --- mCE: every run's graded errors against the baseline row's, ImageNet-C's way (steelflow.mce) --------


def add_mce(project: Path, results: list[dict], wanted: str, earlier: Path | None = None) -> str | None:
    """Give each run ``mce`` (``mce``, ``relative_mce`` and the same per group: ``table1_``, ``holdout_``)
    against the baseline row: ``wanted`` (REGIME/NORM), else the first clean-trained row; with ``earlier``
    (a result JSON), that result's ``wanted`` runs (:func:`earlier_baseline`). The baseline's errors are
    the mean over its seeds, one fixed reference as ImageNet-C's AlexNet is. Returns the row used, or None
    (no clean row, or no graded ladders: no mCE)."""
    sys.path.insert(0, str(REPO))
    from steelflow.config import load_params

    for r in results:  # rows trained before row.json carried them
        if r.get("graded") is None:
            r["graded"] = _graded_errors(project / "rows" / _folder(r["regime"], r["input_norm"], r["seed"]))
    graded = [r for r in results if r.get("graded") and r["graded"].get("families")]
    corrupt = load_params(project / "params.yaml").corrupt
    if earlier is not None:
        name = f"{wanted} ({earlier.name})"
        baseline = earlier_baseline(earlier, wanted, corrupt)
    else:
        keys = [f"{r['regime']}/{r['input_norm']}" for r in graded]
        name = wanted if wanted in keys else next((k for k in keys if k.startswith("clean/")), None)
        if name is None:
            return None
        baseline = mean_errors([r["graded"] for r, k in zip(graded, keys, strict=True) if k == name])
    for r in graded:
        r["mce"] = run_mce(r["graded"], baseline, corrupt)
    return name


def earlier_baseline(path: Path, row: str, corrupt) -> dict:
    """Row ``row`` (REGIME/NORM) of an earlier result (its JSON): its runs' graded errors averaged over its
    seeds (:func:`mean_errors`). Every run must be graded on ``corrupt``'s ladders and test images per class
    (steelflow.mce.check_baseline), else its errors are not comparable: SystemExit naming the file."""
    from steelflow import mce
    from steelflow.errors import DataError

    runs = [
        r["graded"]
        for r in json.loads(path.read_text())["rows"]
        if f"{r['regime']}/{r['input_norm']}" == row and (r.get("graded") or {}).get("families")
    ]
    if not runs:
        raise SystemExit(f"{path}: no graded run of {row} to normalise mCE by")
    try:
        for run in runs:
            mce.check_baseline(run, corrupt.graded.families, corrupt.graded.per_class, f"{path} {row}")
    except DataError as e:
        raise SystemExit(str(e)) from None
    return {**runs[0], **mean_errors(runs), "model": {"row": row, "seeds": len(runs)}}


def mean_errors(runs: list[dict]) -> dict:
    """Graded-errors files averaged over runs (seeds): clean error and each family's error per severity."""
    return {
        "clean_error": _mean([r["clean_error"] for r in runs]),
        "families": {
            f: [_mean([r["families"][f][s] for r in runs]) for s in range(len(e))]
            for f, e in runs[0]["families"].items()
        },
    }


def run_mce(graded: dict, baseline: dict, corrupt) -> dict:
    """One run's mCE and relative mCE (all families and per group) against ``baseline`` (steelflow.mce)."""
    from steelflow import mce

    acc = {f: [1.0 - e for e in errs] for f, errs in graded["families"].items()}
    groups = {f: corrupt.graded_group(f) for f in acc}
    out = mce.graded_summary(acc, 1.0 - graded["clean_error"], groups, baseline)
    return {k: v for k, v in out.items() if k.endswith("mce")}


# --- over seeds: mean ± sd per row, paired differences between rows ------------------------------------


def columns(acc: dict[str, float], holdout: list[str]) -> dict[str, float]:
    """One run's accuracies and its aggregates: the worst Table 1 condition, the worst and mean hold-out."""
    table1 = [v for k, v in acc.items() if k != "original" and k not in holdout]
    held = [acc[k] for k in holdout if k in acc]
    out = dict(acc) | {"table1_worst": min(table1) if table1 else math.nan}
    return out | {
        "holdout_worst": min(held) if held else math.nan,
        "holdout_mean": sum(held) / len(held) if held else math.nan,
    }


def summarise(results: list[dict], holdout: list[str]) -> list[dict]:
    """Per (regime, input stage), in the order first seen: its seeds, and each column's per-seed values,
    mean and sd (n − 1; null for one seed)."""
    rows: dict[tuple[str, str], dict] = {}
    for r in sorted(results, key=lambda r: r.get("seed", 0)):
        row = rows.setdefault(
            (r["regime"], r["input_norm"]),
            {"regime": r["regime"], "input_norm": r["input_norm"], "seeds": [], "values": {}},
        )
        row["seeds"].append(r.get("seed", 0))
        for name, value in columns(r["accuracy"], holdout).items():
            row["values"].setdefault(name, []).append(value)
        for name, value in (r.get("mce") or {}).items():  # per run; None where no family has a CE
            row.setdefault("mce_values", {}).setdefault(name, []).append(value)
        for family, errors in ((r.get("graded") or {}).get("families") or {}).items():
            row.setdefault("graded_runs", {}).setdefault(family, []).append(errors)
    for row in rows.values():
        row["mean"] = {k: _mean(v) for k, v in row["values"].items()}
        row["sd"] = {k: _sd(v) for k, v in row["values"].items()}
        row["floors_met"] = meets(row["mean"], holdout)
        measured = {k: v for k, v in row.get("mce_values", {}).items() if None not in v}
        row["mce_values"] = measured
        row["mce"] = {k: {"mean": _mean(v), "sd": _sd(v)} for k, v in measured.items()}
        runs = row.pop("graded_runs", {})  # family → per run, the error at each severity
        row["graded_error"] = {
            f: [_mean(list(level)) for level in zip(*e, strict=True)] for f, e in runs.items()
        }
    return list(rows.values())


def compare(summary: list[dict], reference: tuple[str, str]) -> list[dict]:
    """Every other row against ``reference`` on the seeds both ran (two at least): per column the mean and
    sd of the paired differences (row − reference), the paired t-test's p and the sign test's (wins, losses,
    p), where scipy is installed."""
    ref = next((r for r in summary if (r["regime"], r["input_norm"]) == reference), None)
    if ref is None:
        return []
    out = []
    for row in summary:
        if row is ref:
            continue
        common = sorted(set(row["seeds"]) & set(ref["seeds"]))
        if len(common) < 2:
            continue
        cells, mce_cells = {}, {}
        for name in ref["values"]:
            a = [row["values"][name][row["seeds"].index(s)] for s in common]
            b = [ref["values"][name][ref["seeds"].index(s)] for s in common]
            cells[name] = paired(a, b)
        for name in set(ref["mce_values"]) & set(row["mce_values"]):  # lower is better
            a = [row["mce_values"][name][row["seeds"].index(s)] for s in common]
            b = [ref["mce_values"][name][ref["seeds"].index(s)] for s in common]
            mce_cells[name] = paired(a, b)
        out.append(
            {
                "regime": row["regime"],
                "input_norm": row["input_norm"],
                "seeds": common,
                "columns": cells,
                "mce": mce_cells,
            }
        )
    return out


def paired(a: list[float], b: list[float]) -> dict:
    """``a`` against ``b``, run for run (same seeds)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    wins, losses = sum(v > 0 for v in d), sum(v < 0 for v in d)
    out = {
        "mean_diff": _mean(d),
        "sd_diff": _sd(d),
        "wins": wins,
        "losses": losses,
        "t_p": None,
        "sign_p": None,
    }
    try:
        from scipy import stats
    except ImportError:  # the figures above stand; the tests need scipy
        return out
    if _sd(d):
        out["t_p"] = float(stats.ttest_rel(a, b).pvalue)
    elif d:  # every difference the same: no spread to test against
        out["t_p"] = 1.0 if d[0] == 0 else 0.0
    out["sign_p"] = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
    return out


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _sd(v: list[float]) -> float | None:
    if len(v) < 2:
        return None
    m = _mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def _pm(mean: float, sd: float | None) -> str:
    return f"{100 * mean:.1f}" if sd is None else f"{100 * mean:.1f} ± {100 * sd:.1f}"


def table(summary: list[dict], holdout: list[str]) -> str:
    """Markdown: one row per (regime, input stage), mean ± sd over its seeds of every column."""
    names = list(summary[0]["mean"])
    head = "| training | input stage | seeds | " + " | ".join(names) + " | floors met (means) |"
    lines = [head, "|---|---|---:|" + "---:|" * (len(names) + 1)]
    for r in summary:
        cells = " | ".join(_pm(r["mean"][n], r["sd"][n]) for n in names)
        met = "yes" if r["floors_met"] else "no"
        lines.append(f"| {r['regime']} | {r['input_norm']} | {len(r['seeds'])} | {cells} | {met} |")
    return "\n".join(lines)


def paired_table(paired_rows: list[dict]) -> str:
    """Markdown: per row against the reference, the mean ± sd of the paired differences (points), the
    paired t-test's p and the sign test's wins–losses, on the clean set and the aggregates."""
    names = ["original", *AGGREGATES]
    lines = ["| row | seeds | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for r in paired_rows:
        cells = []
        for n in names:
            c = r["columns"][n]
            sd = f" ± {100 * c['sd_diff']:.1f}" if c["sd_diff"] is not None else ""
            t = f", t p={c['t_p']:.2f}" if c["t_p"] is not None else ""
            cells.append(f"{100 * c['mean_diff']:+.1f}{sd} ({c['wins']}–{c['losses']}{t})")
        lines.append(f"| {r['regime']} / {r['input_norm']} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


MCE_COLUMNS = (
    "mce",
    "relative_mce",
    "table1_mce",
    "table1_relative_mce",
    "holdout_mce",
    "holdout_relative_mce",
)


def mce_table(summary: list[dict], baseline: str) -> str:
    """Markdown: per row, mean ± sd over its seeds of the mCE and relative mCE (all families, Table 1's,
    the hold-out's), in % of the baseline row's (100 = as the baseline; lower is better)."""
    names = [n for n in MCE_COLUMNS if any(n in r["mce"] for r in summary)]
    lines = [
        f"mCE against {baseline} (its mean graded errors over its seeds = 100; lower is better)",
        "| training | input stage | seeds | " + " | ".join(names) + " |",
        "|---|---|---:|" + "---:|" * len(names),
    ]
    for r in summary:
        cells = " | ".join(
            _pm(r["mce"][n]["mean"], r["mce"][n]["sd"]) if n in r["mce"] else "–" for n in names
        )
        lines.append(f"| {r['regime']} | {r['input_norm']} | {len(r['seeds'])} | {cells} |")
    return "\n".join(lines)


def meets(acc: dict[str, float], holdout: list[str]) -> bool:
    table1 = [v for k, v in acc.items() if k != "original" and k not in holdout and k not in AGGREGATES]
    held = [acc[k] for k in holdout if k in acc]
    return (
        acc["original"] >= FLOORS["clean"]
        and min(table1) >= FLOORS["table1"]
        and (not held or min(held) >= FLOORS["holdout"])
    )


def examples(project: Path, out: Path, n: int = 8, draws: int = 3) -> None:
    """The first training image of each class (and more), then ``draws`` robust-training draws of each."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch
    from PIL import Image

    from steelflow.config import load_params
    from steelflow.data import cache
    from steelflow.training.loop import augment

    p = load_params(project / "params.yaml")
    data = cache.load(cache.split_path(project / "data" / "cache", "train"))
    picks = [int(np.flatnonzero(data.labels == k)[0]) for k in range(len(data.classes))]
    picks += [i for i in range(len(data)) if i not in picks][: max(0, n - len(picks))]
    x = torch.from_numpy(data.images[picks]).permute(0, 3, 1, 2).float() / 255
    rows = [x]
    for d in range(draws):
        torch.manual_seed(d)
        rows.append(augment(x.clone(), p.train))
    grid = torch.cat([torch.cat(list(r[:, 0]), dim=1) for r in rows], dim=0)
    img = Image.fromarray((grid.numpy() * 255).round().astype(np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.resize((img.width * 2, img.height * 2), Image.Resampling.NEAREST).save(out)


def _plot(summary: list[dict], holdout: list[str], out: Path) -> None:
    """Each row's mean per condition (and the aggregates, right of the second line), ± sd error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(summary[0]["mean"])
    x = np.arange(len(names))
    width = 0.8 / len(summary)
    fig, ax = plt.subplots(figsize=(0.75 * len(names) + 3, 5))
    for i, r in enumerate(summary):
        mean = np.array([100 * r["mean"][n] for n in names])
        sd = np.array([100 * (r["sd"][n] or 0.0) for n in names])
        label = f"{r['regime']} / {r['input_norm']} (n={len(r['seeds'])})"
        ax.errorbar(
            x + (i - (len(summary) - 1) / 2) * width, mean, yerr=sd, fmt="o", ms=4, capsize=3, label=label
        )
    ax.axvline(len(names) - len(AGGREGATES) - 0.5, color="black", linewidth=1.5)
    if holdout:
        ax.axvline(len(names) - len(AGGREGATES) - len(holdout) - 0.5, color="grey", linewidth=1)
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set_ylabel("test accuracy, % (mean ± sd over seeds)")
    ax.set_ylim(max(0, ax.get_ylim()[0]), 100.5)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Test accuracy by condition (grey line: hold-out after it; black: per-run aggregates)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _plot_graded(summary: list[dict], out: Path) -> None:
    """One panel a graded family: each row's mean error (%) at each severity, mildest first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(next(r["graded_error"] for r in summary if r["graded_error"]))
    cols = 5
    rows = -(-len(families) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.6 * rows), sharey=True, squeeze=False)
    for ax, family in zip(axes.flat, families, strict=False):
        for r in summary:
            if family in r["graded_error"]:
                errors = [100 * e for e in r["graded_error"][family]]
                label = f"{r['regime']} / {r['input_norm']} (n={len(r['seeds'])})"
                ax.plot(range(1, len(errors) + 1), errors, marker="o", ms=3, label=label)
        ax.set_title(family, fontsize=10)
        ax.set_xticks(range(1, len(errors) + 1))  # the ladder's severities, however many
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(families) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("test error, %")
    for ax in axes[-1]:
        ax.set_xlabel("severity")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Graded corruptions: mean test error over seeds by severity")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
