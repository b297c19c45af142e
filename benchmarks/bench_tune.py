"""Does tuning earn its keep? Tuned values against the hand-set defaults, and how well trials predict.

Builds a throwaway project, runs ingest → validate → split → corrupt once and the profile's own study
(`steelflow tune`, multi-fidelity), then, as separate processes ``--jobs`` at a time (one thread each):

Every training is one of the study's trial configurations trained in full with one of ``--seeds``
(train.seed), evaluated on the test split (``trial<N>-seed<S>``); the groups below are sets of those rows.

- **tuned vs defaults**: the study's ``best_params`` (the chosen trial's rows) and the profile's hand-set
  values (the baseline trial's rows, tune.baseline; ``defaults-seed<S>`` when the study has none): mean ±
  standard deviation of clean and worst-condition (Table 1) test accuracy. Floor: tuned ≥ defaults on
  both. When ``best_params`` are the baseline trial's (the hand-set values won the study), the tuned values
  are the defaults: reported as identical, with a note. When they are because the bootstrap turned a rival
  down (tune.significance), the rival's rows are shown too (``rival``): what the plain rule would have
  shipped, so the report shows whether turning it down was right.
- **rank correlation**: up to ``--configs`` of the study's trials (pruned ones included); Spearman's ρ
  between each trial's score at the rung it reached and its configuration's full-training score, averaged
  over the seeds (one training is one draw: seed-to-seed spread is as large as the spread between good
  configurations): on validation (what the study optimises) and on the test split. Floor: ρ ≥ 0.5 on
  validation. ρ against the one training with the trial's own seed is reported beside it. A trial whose
  loss diverged is listed but not retrained: with its seed the full run diverges the same way.

``--throughput`` measures instead what it always did: trials per minute with 1 and 2 workers on one
study (the default profile, pruner off so that every trial does the same work) → results/tune.json.

Data: ``synthetic`` is params.yaml (the default profile); a folder (NEU-CLS) uses profiles/paper.yaml at
``--size`` px with ``--epochs``, as benchmarks/bench_robustness.py does. Prints the figures and writes
benchmarks/results/<--out>.json and .png.

    .venv/bin/python benchmarks/bench_tune.py [--data synthetic|DIR] [--size 64] [--epochs 15]
        [--seeds 0 1 2] [--configs 8] [--trials N] [--workers 2] [--jobs 2] [--set KEY=VALUE ...]
        [--out tune-default]
    .venv/bin/python benchmarks/bench_tune.py --throughput [--trials 6] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MIN_SPEARMAN = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic", help="synthetic (params.yaml) or a NEU-CLS folder")
    parser.add_argument("--size", type=int, default=64, help="folder data: cache and model size, px")
    parser.add_argument("--epochs", type=int, default=15, help="folder data: train.epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", type=int, default=8, help="trials retrained in full for Spearman's ρ")
    parser.add_argument("--trials", type=int, help="tune.n_trials (default: the profile's)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="processes on the study")
    parser.add_argument("--throughput", action="store_true", help="trials/min with each --workers count")
    parser.add_argument("--jobs", type=int, default=2, help="full trainings at once (one thread each)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="params overrides")
    parser.add_argument(
        "--mce-baseline",
        type=Path,
        default=RESULTS / "robustness-seeds25-3.json",
        help="a bench_robustness.py result whose --mce-row (mean over its seeds) normalises every mCE",
    )
    parser.add_argument("--mce-row", default="clean/none", help="REGIME/NORM of that result (the paper's)")
    parser.add_argument("--out", default="tune-default")
    parser.add_argument("--workdir", type=Path, help="keep the project here (default: a temporary folder)")
    parser.add_argument("--row", nargs=2, metavar=("NAME", "VALUES_JSON"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--collect", action="store_true", help="report the rows a (stopped) run left in --workdir so far"
    )
    args = parser.parse_args()
    if args.collect:
        return collect(args)
    if args.row:
        return _train_row(args.workdir, args.row[0], json.loads(args.row[1]))
    if args.throughput:
        return throughput(args.trials or 6, args.workers)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="steelflow-bench-tune-") as tmp:
        project = args.workdir or Path(tmp)
        project.mkdir(parents=True, exist_ok=True)
        params = _write_params(project, args)
        for step in ("ingest", "validate", "split", "corrupt"):
            _steelflow(project, step)
        tick = time.perf_counter()
        _steelflow(project, "tune", "--no-track", "--workers", str(args.workers[0]))
        study_seconds = time.perf_counter() - tick
        best = yaml.safe_load((project / "reports/tuning/best_params.yaml").read_text())
        trials = _trials(project, best["study"])
        identical = tuned_are_defaults(best)
        shown = " (the baseline: the hand-set values)" if identical else ""
        if best.get("baseline") and not identical:
            shown = f" (the baseline, which sampled {best['baseline_trial']['sampled']})"
        print(f"study: {len(trials)} trials in {study_seconds:.0f} s, best trial {best['trial']}{shown}")
        print(f"  best_params: {best['params']}")

        configs = retrainable(trials)[: args.configs]
        rows = planned_rows(best, trials, configs, args.seeds)
        with ThreadPoolExecutor(args.jobs) as pool:
            done = dict(
                zip([r[0] for r in rows], pool.map(lambda r: _run_row(project, *r), rows), strict=True)
            )
        baseline = add_mce(project, done, args.mce_baseline, args.mce_row)

    report = _report(args, params, best, trials, configs, done, study_seconds)
    report["mce_baseline"] = baseline
    report["total_seconds"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(report, RESULTS / f"{args.out}.png")
    print(summary(report))
    print(f"total {report['total_seconds']:.0f} s → {RESULTS / args.out}.json, {args.out}.png")


def _write_params(project: Path, args: argparse.Namespace) -> dict:
    if args.data == "synthetic":
        params = yaml.safe_load((REPO / "params.yaml").read_text())
    else:
        params = yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())
        params["data"]["source"] = str(Path(args.data).resolve())
        params["data"]["cache_size"] = args.size
        params["model"]["image_size"] = args.size
        params["train"]["epochs"] = args.epochs
    params["train"].update(patience=0, threads=1, use_tuned=False)
    if args.trials:
        params["tune"]["n_trials"] = args.trials
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sys.path.insert(0, str(REPO))
    from steelflow.config import load_params

    load_params(project / "params.yaml", args.set)  # a typo fails here, before any training
    if args.set:
        tree = load_params(project / "params.yaml", args.set).raw()
        (project / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
        params = tree
    return params


# what tuned, defaults and rival are compared on: test accuracy (clean, the worst Table 1 condition, the
# worst hold-out) and, with graded ladders, mCE against the paper's clean-trained model (lower is better)
COMPARED = ("clean", "worst", "holdout_worst", "mce", "table1_mce", "holdout_mce", "holdout_relative_mce")


MCE_LABELS = {"holdout_mce": "hold-out mCE", "table1_mce": "Table 1 mCE", "mce": "mCE"}


def same_seeds(a: list[dict], b: list[dict], key: str) -> tuple[list[float], list[float]]:
    """``key`` of two groups' trainings on the seeds both have a value for, in the same order."""
    theirs = {r["values"].get("train.seed"): r.get(key) for r in b if not r.get("diverged")}
    pairs = [
        (r[key], theirs[s])
        for r in a
        if not r.get("diverged")
        and r.get(key) is not None
        and theirs.get(s := r["values"].get("train.seed")) is not None
    ]
    return [x for x, _ in pairs], [y for _, y in pairs]


def paired_test(a: list[float], b: list[float]) -> dict | None:
    """bench_robustness.py's paired comparison (mean ± sd of a − b, t-test, sign test); None under 2 seeds."""
    if len(a) < 2:
        return None
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_robustness import paired

    return {**paired(a, b), "seeds": len(a)}


def tuned_are_defaults(best: dict) -> bool:
    """Are ``best_params`` the hand-set values? The baseline trial won, and it ran the hand-set value of
    every key (none lay outside the search space; the study's name holds the values it ran)."""
    return bool(best.get("baseline")) and not (best.get("baseline_trial") or {}).get("sampled")


def rejected_rival(best: dict, trials: list[dict]) -> dict | None:
    """The trial that beat the baseline on the rule but not in the bootstrap (tune.significance)."""
    test = best.get("significance") or {}
    if not test.get("kept_baseline"):
        return None
    return next(t for t in trials if t["number"] == test["rival"])


def row_groups(best: dict, trials: list[dict]) -> dict[str, int | str]:
    """Whose rows each compared group is: a trial number (its configuration's rows), or "defaults"
    (rows of their own: the study has no retrainable baseline trial that ran every hand-set value)."""
    base = best.get("baseline_trial") or {}
    ran_defaults = base and not base.get("sampled")
    retrained = {t["number"] for t in retrainable(trials)}
    groups: dict[str, int | str] = {
        "defaults": base["number"] if ran_defaults and base["number"] in retrained else "defaults",
        "tuned": best["trial"],
    }
    rival = rejected_rival(best, trials)
    if rival is not None:  # what the plain rule would have shipped: was the bootstrap right?
        groups["rival"] = rival["number"]
    return groups


def planned_rows(
    best: dict, trials: list[dict], configs: list[dict], seeds: list[int]
) -> list[tuple[str, dict]]:
    """Every full training the report needs, as (name, params overrides): each retrained configuration and
    each compared group's trial × seed, and the hand-set values' own rows when no baseline trial ran them."""
    groups = row_groups(best, trials)
    wanted = {t["number"] for t in configs} | {n for n in groups.values() if isinstance(n, int)}
    rows = [
        (f"trial{t['number']}-seed{s}", {**t["params"], "train.seed": s})
        for t in trials
        if t["number"] in wanted
        for s in seeds
    ]
    if groups["defaults"] == "defaults":
        rows += [(f"defaults-seed{s}", {"train.seed": s}) for s in seeds]
    return rows


def _prefix(group: int | str) -> str:
    return f"trial{group}" if isinstance(group, int) else group


def retrainable(trials: list[dict]) -> list[dict]:
    """The trials whose values a full training can score: finished, and their loss did not diverge."""
    return [t for t in trials if t["state"] in ("COMPLETE", "PRUNED") and not t.get("diverged")]


def _steelflow(project: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "steelflow", *args], cwd=project, check=True, capture_output=True, env=env
    )


def _trials(project: Path, study: str) -> list[dict]:
    """Every trial of the study: number, state, values, last rung and its (clean, robust) scores there."""
    import optuna

    storage = f"sqlite:///{project / 'optuna.db'}"  # the bench's study: the profile's default storage
    study = optuna.load_study(study_name=study, storage=storage)
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "params": t.params,
            "epochs": t.user_attrs.get("epochs"),
            "last_rung": t.user_attrs.get("last_rung"),
            "clean": t.user_attrs.get("clean"),
            "robust": t.user_attrs.get("robust"),
            "baseline": bool(t.user_attrs.get("steelflow.baseline")),  # the hand-set values (tune.baseline)
            "diverged": t.user_attrs.get("diverged"),  # pruned because its loss became NaN or infinite
        }
        for t in study.trials
    ]


def _run_row(project: Path, name: str, values: dict) -> dict:
    cmd = [sys.executable, __file__, "--workdir", str(project), "--row", name, json.dumps(values)]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    row = json.loads((project / "rows" / name / "row.json").read_text())
    if row.get("diverged"):
        print(f"{name:>16}: diverged ({row['diverged']})", flush=True)
    else:
        print(
            f"{name:>16}: clean {row['clean']:.3f}  worst {row['worst']:.3f}  ({row['seconds']:.0f} s)",
            flush=True,
        )
    return row


def _train_row(project: Path, name: str, values: dict) -> None:
    """One full training with ``values`` set, evaluated on the test split (in its own process)."""
    os.chdir(project)
    sys.path.insert(0, str(REPO))
    from steelflow.config import load_params, with_overrides
    from steelflow.reproduce import train_and_evaluate
    from steelflow.training.loop import TrainingDiverged
    from steelflow.tuning.objective import Objective

    base = load_params("params.yaml")
    p = with_overrides(base, values)
    out = Path("rows") / name
    start = time.perf_counter()
    # a trial's configuration is scored as its trial was: under the hand-set families (the study's
    # train.robust, the same views for every trial, even where the space searches train.robust.*), at the
    # rungs and the top
    scoring = name.startswith("trial")
    objective = Objective.of(p.tune, p.train.epochs)
    try:
        trained, scored = train_and_evaluate(
            p,
            p.model,
            p.train,
            out,
            robust_val=base.train.robust if scoring else None,
            robust_val_epochs=objective.robust_epochs(p.tune.pruner.kind) if scoring else None,
        )
    except TrainingDiverged as e:  # a seed the values diverge with: recorded, never averaged in
        out.mkdir(parents=True, exist_ok=True)
        row = {"name": name, "values": values, "diverged": str(e), "seconds": time.perf_counter() - start}
        (out / "row.json").write_text(json.dumps(row, indent=2))
        return
    holdout = set(p.corrupt.holdout_names)
    table1 = {k: v for k, v in scored.accuracy.items() if k != "original" and k not in holdout}
    key = f"val_robust_{p.tune.robust_score}"
    robust = [r[key] for r in trained.history if key in r]
    row = {
        "name": name,
        "values": values,
        "clean": scored.accuracy["original"],
        "worst": min(table1.values()),
        "holdout_worst": min((scored.accuracy[k] for k in holdout), default=None),
        "accuracy": scored.accuracy,
        "val_clean": max(r["val_accuracy"] for r in trained.history),
        "val_robust": max(robust) if robust else None,
        "graded": _graded_errors(out),  # the graded ladders' errors, for mCE (None without corrupt.graded)
        "seconds": time.perf_counter() - start,
    }
    (out / "row.json").write_text(json.dumps(row, indent=2))


def _graded_errors(folder: Path) -> dict | None:
    path = folder / "graded_errors.json"
    return json.loads(path.read_text()) if path.exists() else None


def add_mce(project: Path, done: dict[str, dict], path: Path, row: str) -> dict | None:
    """Give each training's row its mCE and relative mCE (all families, Table 1's, the hold-out's;
    ImageNet-C's definitions, steelflow.mce) against ``row`` (REGIME/NORM) of a bench_robustness.py result:
    its graded errors averaged over its seeds, as that benchmark's own mCE is; one fixed reference, the same
    for every group compared. bench_robustness.earlier_baseline reads it and refuses one measured on other
    ladders or test images per class. Returns what the baseline is, or None (no graded ladders, or no such
    result: no mCE)."""
    sys.path.insert(0, str(REPO))
    from steelflow.config import load_params

    corrupt = load_params(project / "params.yaml").corrupt
    if not corrupt.graded.families or not path.exists():
        return None
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_robustness import earlier_baseline, run_mce

    baseline = earlier_baseline(path, row, corrupt)
    for name, r in done.items():
        graded = r.get("graded") or _graded_errors(project / "rows" / name)
        if r.get("diverged") or not graded:
            continue
        r.update(run_mce(graded, baseline, corrupt))
    where = str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    return {"result": where, **baseline["model"]}


def collect(args: argparse.Namespace) -> None:
    """The report over the rows finished so far in ``--workdir`` (a run stopped before its end)."""
    project = args.workdir
    params = yaml.safe_load((project / "params.yaml").read_text())
    source = params["data"]["source"]
    args.data = source if source != "synthetic" else "synthetic"
    best = yaml.safe_load((project / "reports/tuning/best_params.yaml").read_text())
    trials = _trials(project, best["study"])
    configs = retrainable(trials)[: args.configs]
    done = {p.parent.name: json.loads(p.read_text()) for p in (project / "rows").glob("*/row.json")}
    baseline = add_mce(project, done, args.mce_baseline, args.mce_row)
    report = _report(args, params, best, trials, configs, done, study_seconds=None)
    report["mce_baseline"] = baseline
    trainings = len(planned_rows(best, trials, configs, args.seeds))
    report["partial"] = f"{len(done)} of {trainings} trainings finished"
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(report, RESULTS / f"{args.out}.png")
    print(summary(report))
    print(f"{report['partial']} → {RESULTS / args.out}.json, {args.out}.png")


def _report(args, params, best, trials, configs, done, study_seconds) -> dict:
    def rows_of(prefix: str) -> list[dict]:
        return [done[f"{prefix}-seed{s}"] for s in args.seeds if f"{prefix}-seed{s}" in done]

    def stats(prefix: str, key: str) -> dict:
        rows = rows_of(prefix)
        values = [r[key] for r in rows if not r.get("diverged") and r.get(key) is not None]
        diverged = len(rows) - len(values)  # a seed that diverged: no model, so no accuracy to average
        if not values:
            return {"mean": float("nan"), "sd": float("nan"), "values": [], "diverged": diverged}
        return {
            "mean": statistics.mean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values,
            "diverged": diverged,
        }

    identical = tuned_are_defaults(best)
    groups = row_groups(best, trials)
    compare = {who: {k: stats(_prefix(group), k) for k in COMPARED} for who, group in groups.items()}
    paired = {  # each group against the defaults, seed by seed (bench_robustness's paired test)
        who: {
            k: paired_test(*same_seeds(rows_of(_prefix(group)), rows_of(_prefix(groups["defaults"])), k))
            for k in COMPARED
        }
        for who, group in groups.items()
        if who != "defaults" and group != groups["defaults"]
    }
    meets = (
        all(compare["tuned"][k]["mean"] >= compare["defaults"][k]["mean"] for k in ("clean", "worst"))
        and compare["tuned"]["clean"]["diverged"] <= compare["defaults"]["clean"]["diverged"]
    )
    note = None
    test = best.get("significance") or {}
    if identical and test.get("kept_baseline"):
        note = (
            f"best_params are the baseline's (trial {best['trial']}): trial {test['rival']} won the rule on "
            f"{test['score']} validation accuracy but lost or tied in {test['p']:.0%} of the bootstrap "
            f"resamples (tune.significance {test['significance']}); 'tuned' repeats the defaults' figures, "
            f"and 'rival' is trial {test['rival']}'s values, what the plain rule would have shipped"
        )
    elif identical:
        note = (
            f"best_params are the baseline's (trial {best['trial']}): no other top-rung trial beat the "
            f"hand-set values by more than tune.min_improvement ({best.get('min_improvement', 0.0)}), so "
            "the tuned values are the defaults; 'tuned' repeats the defaults' figures"
        )
    objective = params["tune"]["objective"]
    trial_key = "clean" if objective == "accuracy" else "robust"  # pareto: its pick rule's primary score
    keys = {"validation": f"val_{trial_key}", "test_clean": "clean", "test_worst": "worst"}
    own_seed = f"seed{params['train']['seed']}"  # the seed every trial of the study trained with

    def full(t: dict) -> dict | None:
        """The configuration's full trainings: per key, the mean over its seeds and the trial's own seed."""
        rows = [r for r in rows_of(f"trial{t['number']}") if not r.get("diverged")]
        if not rows:
            return None
        own = done.get(f"trial{t['number']}-{own_seed}") or {}
        out = {k: statistics.mean(r[k] for r in rows) for k in ("val_clean", "val_robust", "clean", "worst")}
        out["sd"] = {k: statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0 for k in keys.values()}
        out["own_seed"] = {k: own.get(k) for k in keys.values()}
        out["seeds"] = len(rows)
        return out

    scored = [(t, full(t)) for t in configs if t[trial_key] is not None]
    scored = [(t, f) for t, f in scored if f is not None]
    xs = [t[trial_key] for t, _ in scored]
    rho = {name: spearman(xs, [f[key] for _, f in scored]) for name, key in keys.items()}
    interval = spearman_interval(xs, [f[keys["validation"]] for _, f in scored])
    own = [(x, f["own_seed"]) for x, (_, f) in zip(xs, scored, strict=True)]
    own = [(x, o) for x, o in own if o[keys["validation"]] is not None]  # --seeds without the trial's seed
    rho_own = {name: spearman([x for x, _ in own], [o[key] for _, o in own]) for name, key in keys.items()}
    return {
        "data": args.data,
        "image_size": params["model"]["image_size"],
        "epochs": params["train"]["epochs"],
        "tune": {
            k: params["tune"][k]
            for k in ("n_trials", "objective", "robust_score", "max_clean_drop", "pruner")
        },
        "study_seconds": study_seconds,
        "best": best,
        "trials": trials,
        "seeds": args.seeds,
        "compare": compare,
        "paired": paired,  # group − defaults per seed (mCE: lower is better)
        "tuned_is_baseline": bool(best.get("baseline")),
        "tuned_are_defaults": identical,
        "tuned_note": note,
        "tuned_meets_defaults": meets,
        "spearman": {
            "trial_score": trial_key,
            "configs": len(scored),
            "diverged_in_study": [t["number"] for t in trials if t.get("diverged")],  # not retrained
            "rho": rho,  # against the mean over --seeds of each configuration's full trainings
            "rho_own_seed": rho_own,  # against the one full training with the trial's own seed
            "validation_interval": interval,  # 95 %, bootstrap over the configurations
            "floor": MIN_SPEARMAN,
            "pairs": [
                {
                    "trial": t["number"],
                    "state": t["state"],
                    "last_rung": t["last_rung"],
                    "trial_score": t[trial_key],
                    "full": f,
                }
                for t, f in scored
            ],
        },
        "overrides": args.set,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": "benchmarks/bench_tune.py " + " ".join(sys.argv[1:]),
    }


def throughput(trials: int, worker_counts: list[int]) -> None:
    """Trials per minute with each worker count, a fresh SQLite study each, pruner off."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    runs = []
    with tempfile.TemporaryDirectory(prefix="steelflow-bench-tune-") as tmp:
        project = Path(tmp)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for step in ("ingest", "validate", "split"):
            _steelflow(project, step)
        for workers in worker_counts:
            started = time.perf_counter()
            overrides = [
                f"tune.n_trials={trials}",
                f"tune.storage=sqlite:///bench-{workers}.db",
                "tune.pruner.kind=none",
            ]
            _steelflow(
                project,
                "tune",
                "--no-track",
                "--workers",
                str(workers),
                *[a for o in overrides for a in ("--set", o)],
            )
            seconds = time.perf_counter() - started
            runs.append({"workers": workers, "seconds": seconds, "trials_per_minute": trials / seconds * 60})
            rate = runs[-1]["trials_per_minute"]
            print(f"{workers} worker(s): {trials} trials in {seconds:.1f} s = {rate:.2f} trials/min")
    for run in runs:
        run["ratio"] = run["trials_per_minute"] / runs[0]["trials_per_minute"]
    result = {
        "profile": "params.yaml (CPU/CI)",
        "trials": trials,
        "epochs_per_trial": params["tune"]["max_epochs"] or params["train"]["epochs"],
        "image_size": params["model"]["image_size"],
        "pruner": "none",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "runs": runs,
    }
    (RESULTS / "tune.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        " | ".join(f"{r['workers']} workers: {r['ratio']:.2f}x" for r in runs), f"→ {RESULTS / 'tune.json'}"
    )


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's ρ (average ranks for ties); None for fewer than 3 pairs or a side without spread."""
    if len(a) < 3:
        return None
    with warnings.catch_warnings():  # a side without spread: ρ is undefined (None), not worth a warning
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = float(stats.spearmanr(a, b).statistic)
    return None if math.isnan(rho) else rho


def spearman_interval(a: list[float], b: list[float], resamples: int = 2000) -> list[float] | None:
    """A 95 % percentile interval of ρ over configurations drawn with replacement (seeded): how far a
    handful of configurations pins ρ down. Draws without spread (ρ undefined) are left out, so the interval
    is taken from scipy's bootstrap distribution rather than its own (NaN) interval."""
    if len(a) < 3:
        return None

    def rho(x: np.ndarray, y: np.ndarray) -> float:
        found = spearman(list(x), list(y))
        return math.nan if found is None else found

    with warnings.catch_warnings():  # scipy's own interval is NaN when some draws are: not the one used
        warnings.simplefilter("ignore")
        draws = stats.bootstrap(
            (np.asarray(a), np.asarray(b)),
            rho,
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(0),
        ).bootstrap_distribution
    found = draws[~np.isnan(draws)]
    if not found.size:
        return None
    return [float(np.percentile(found, 2.5)), float(np.percentile(found, 97.5))]


def summary(report: dict) -> str:
    lines = [
        f"data {report['data']}, {report['image_size']} px, {report['epochs']} epochs, "
        f"objective {report['tune']['objective']}, seeds {report['seeds']}"
    ]
    for who in ("defaults", "tuned", "rival"):
        c = report["compare"].get(who)
        if c is None:
            continue
        if who == "tuned" and report.get("tuned_are_defaults"):
            lines.append(f"     tuned: identical to the defaults, not trained again ({report['tuned_note']})")
            continue
        lines.append(
            f"  {who:>8}: clean {100 * c['clean']['mean']:.1f} ± {100 * c['clean']['sd']:.1f} %, "
            f"worst {100 * c['worst']['mean']:.1f} ± {100 * c['worst']['sd']:.1f} %, "
            f"hold-out worst {100 * c['holdout_worst']['mean']:.1f} ± {100 * c['holdout_worst']['sd']:.1f} %"
            + "".join(
                f", {MCE_LABELS[k]} {100 * c[k]['mean']:.1f} ± {100 * c[k]['sd']:.1f}"
                for k in MCE_LABELS
                if c[k]["values"]
            )
        )
        for key, test in (report.get("paired") or {}).get(who, {}).items():
            if test is not None:
                t = f", t p={test['t_p']:.2f}" if test["t_p"] is not None else ""
                lines.append(
                    f"    {who} − defaults, {key}: {100 * test['mean_diff']:+.1f} ± "
                    f"{100 * (test['sd_diff'] or 0):.1f} ({test['wins']} up, {test['losses']} down{t})"
                )
    if report.get("mce_baseline"):
        b = report["mce_baseline"]
        lines.append(f"  mCE in % of {b['row']} ({b['seeds']} seeds, {b['result']}); lower is better")
    same = " (the same values)" if report.get("tuned_are_defaults") else ""
    lines.append(
        f"  tuned >= defaults on clean and worst: {'yes' if report['tuned_meets_defaults'] else 'NO'}{same}"
    )
    s = report["spearman"]
    if not s["configs"]:  # --configs 0: no trial retrained for ρ
        return "\n".join(lines)

    def shown(rho: dict) -> str:
        return ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} n/a" for k, v in rho.items())

    lines.append(
        f"  Spearman ρ (trial {s['trial_score']} at its last rung vs full training, {s['configs']} configs): "
        f"mean over seeds: {shown(s['rho'])} (floor {s['floor']} on validation)"
    )
    if s.get("validation_interval"):
        lo, hi = s["validation_interval"]
        lines.append(f"    validation ρ, 95 % bootstrap interval over configurations: {lo:.2f} to {hi:.2f}")
    lines.append(f"    vs the trial's own seed only: {shown(s['rho_own_seed'])}")
    return "\n".join(lines)


def _plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = report["spearman"]["pairs"]
    mces = [k for k in MCE_LABELS if any(c[k]["values"] for c in report["compare"].values())]
    panels = 1 + bool(mces) + bool(pairs)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    left = axes[0][0]
    same = report.get("tuned_are_defaults")
    groups = [w for w in ("defaults", "tuned", "rival") if w in report["compare"]]

    def bars(ax, keys: list[str]) -> None:
        width = 0.8 / len(groups)
        for i, who in enumerate(groups):
            c = report["compare"][who]
            label = "tuned (= defaults)" if who == "tuned" and same else who
            if who == "rival":
                label = f"rival (trial {report['best']['significance']['rival']}, turned down)"
            for j, key in enumerate(keys):
                x = j + (i - (len(groups) - 1) / 2) * width
                ax.bar(
                    x,
                    100 * c[key]["mean"],
                    width,
                    yerr=100 * c[key]["sd"],
                    capsize=3,
                    color=("tab:grey", "tab:blue", "tab:orange")[i],
                    hatch="//" if who == "tuned" and same else None,
                    label=label if j == 0 else None,
                )
                ax.scatter(
                    [x] * len(c[key]["values"]), [100 * v for v in c[key]["values"]], c="black", s=8, zorder=3
                )

    bars(left, ["clean", "worst", "holdout_worst"])
    left.set_xticks(range(3), ["clean", "worst Table 1", "worst hold-out"])
    left.set(
        ylabel="test accuracy (%)", ylim=(0, 100), title=f"tuned vs defaults, {len(report['seeds'])} seeds"
    )
    left.legend()
    if mces:
        middle = axes[0][1]
        bars(middle, mces)
        middle.set_xticks(range(len(mces)), [MCE_LABELS[k] for k in mces])
        middle.axhline(100, color="black", lw=0.8, ls="--")
        base = report.get("mce_baseline") or {}
        middle.set(ylabel=f"% of {base.get('row', 'the baseline')}'s (lower is better)", title="mCE")
    if not pairs:
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        return
    right = axes[0][-1]
    key = "val_" + report["spearman"]["trial_score"]
    right.errorbar(
        [p["trial_score"] for p in pairs],
        [p["full"][key] for p in pairs],
        yerr=[p["full"]["sd"][key] for p in pairs],
        fmt="none",
        ecolor="lightgrey",
    )
    right.scatter(
        [p["trial_score"] for p in pairs],
        [p["full"][key] for p in pairs],
        c=["tab:blue" if p["state"] == "COMPLETE" else "tab:orange" for p in pairs],
        zorder=3,
    )
    for p in pairs:
        right.annotate(
            f"#{p['trial']} (rung {p['last_rung']})",
            (p["trial_score"], p["full"][key]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    rho = report["spearman"]["rho"]["validation"]
    right.set(
        xlabel=f"trial's {report['spearman']['trial_score']} score at its last rung",
        ylabel=f"full training's score (validation, mean ± sd of {len(report['seeds'])} seeds)",
        title=f"Spearman ρ = {rho:.2f}" if rho is not None else "Spearman ρ: n/a",
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
