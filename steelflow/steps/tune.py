"""Step 5a, tune: an Optuna study over params keys, whose best values ``train`` applies (train.use_tuned).

Reads params sections ``tune`` (the search), ``model`` and ``train`` (the base every trial starts from) and
the cache ``data/cache/splits/{train,val}/`` (shard sets). Writes ``reports/tuning/best_params.yaml``
(dotted params keys → values), ``reports/tuning/trials.csv`` and, under ``reports/tuning/plots/``, the
optimisation history, the rung-by-rung curves, the clean-vs-robust front and the parameter importances.

A trial is a training run with the trial's values set on the base params, on the full schedule of
``tune.max_epochs``; after every epoch it reports its score (``tune.objective``), and at each rung of
successive halving (or Hyperband) only the best 1 in ``reduction_factor`` climbs on
(:mod:`steelflow.tuning.objective`). ``best_params`` comes from the trials that reached the top rung,
never from a snapshot at a lower one.

Three functions make the step, so that a Kubeflow pipeline can run them as separate pods:
:func:`prepare` creates the study and queues exactly the trials still missing; :func:`work` (one per worker
process, any number at once) claims queued trials until none is left; :func:`report` writes the outputs.
:func:`tune` runs all three; :func:`start` and :func:`finish` add the study's MLflow run around them.

Where the rest lives: the study, its queue, claims, heartbeats and retries in
:mod:`steelflow.tuning.study`; the study's MLflow run and its trials' child runs in
:mod:`steelflow.tuning.tracking`; the fidelity schedule, scores and rung plots in
:mod:`steelflow.tuning.objective`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
import time
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from steelflow import atomic, paths, progress
from steelflow.config import (
    ROBUST_FAMILIES,
    ConfigError,
    Params,
    TuneConfig,
    check_search_space,
    parse_params,
)
from steelflow.data import cache
from steelflow.errors import DataError, TuningFailed
from steelflow.step import FanOut, Option, Produces, Step
from steelflow.tracking import data_version
from steelflow.tuning import objective as fidelity
from steelflow.tuning.report import (
    METRIC,
    announce,
    baseline_of,
    draw_plots,
    finished_line,
    plain,
    position,
)
from steelflow.tuning.result import TuneResult
from steelflow.tuning.study import (
    FINISHED,
    Database,
    StudyRef,
    claim,
    counted,
    hide_password,
    load_study,
    objective_of,
    open_study,
    queue_missing,
    storage_url,
    study_name,
    tune_cfg,
)
from steelflow.tuning.tracking import ParentRun, TrialLogger
from steelflow.tuning.trial import run_trial

__all__ = [
    "FINISHED",
    "StudyRef",
    "TuneResult",
    "finish",
    "prepare",
    "report",
    "start",
    "study_name",
    "tune",
    "work",
]

# Heartbeats and stale-trial retries are "experimental" in Optuna since 2.8; we rely on them on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from us instead


# --- the step ---------------------------------------------------------------------------------------


def tune(
    params: Params,
    workers: int | None = None,
    cache_dir: Path = paths.CACHE / "splits",
    out_dir: Path = paths.TUNING,
    track: bool = False,
) -> TuneResult:
    """Prepare the study, run ``workers`` processes on it (``tune.workers`` by default), write the outputs.

    With ``track`` the study is one MLflow run (reused when the study continues) and every trial a run
    nested under it.
    """
    cfg = tune_cfg(params)
    workers = workers or cfg.workers
    started = time.perf_counter()
    ref = start(params, cache_dir, track, workers)
    try:
        dead: list[int] = []
        if workers == 1:
            work(ref, 0)
        else:
            ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch threads
            procs = [ctx.Process(target=work, args=(ref, i, workers)) for i in range(workers)]
            for proc in procs:
                proc.start()
            for i, proc in enumerate(procs):
                proc.join()
                if proc.exitcode != 0:
                    dead.append(i)
    except BaseException:
        if ref.mlflow_parent_run:
            ParentRun(params, ref).close(None, out_dir, ok=False)
        raise
    result = finish(params, ref, out_dir)
    result.seconds = time.perf_counter() - started
    result.dead_workers = dead
    return result


def deadline_of(cfg: TuneConfig) -> float:
    """When workers started now stop taking trials (``tune.timeout``)."""
    return time.time() + cfg.timeout if cfg.timeout else math.inf


def start(
    params: Params, cache_dir: Path = paths.CACHE / "splits", track: bool = False, workers: int | None = None
) -> StudyRef:
    """:func:`prepare`, and with ``track`` the study's MLflow run, whose id the returned ref carries.

    The ref also carries the run's fan-out (``workers``, default ``tune.workers``) and its one deadline
    (``tune.timeout`` from now), which every worker obeys, in this process or in a pod of its own.
    """
    cfg = tune_cfg(params)
    ref = dataclasses.replace(
        prepare(params, cache_dir), workers=workers or cfg.workers, deadline=deadline_of(cfg)
    )
    return ParentRun(params, ref).ref if track else ref


def finish(params: Params, ref: StudyRef, out_dir: Path = paths.TUNING) -> TuneResult:
    """:func:`report`, and close the study's MLflow run (when ``ref`` has one) with its summary."""
    parent = ParentRun(params, ref) if ref.mlflow_parent_run else None
    try:
        result = report(params, ref, out_dir)
    except BaseException:
        if parent is not None:
            parent.close(None, out_dir, ok=False)
        raise
    if parent is not None:
        parent.close(result, out_dir, ok=True)
    return result


def prepare(params: Params, cache_dir: Path = paths.CACHE / "splits") -> StudyRef:
    """Check the search space, create (or load) the study and queue the trials it still lacks."""
    cfg = tune_cfg(params)
    check_search_space(params)
    if params.split.val == 0:
        raise ConfigError(
            "tune needs a validation split to score trials, but split.val is 0: set split.val to 0.2"
        )
    objective = objective_of(params)
    if objective.needs_robust and not any(getattr(params.train.robust, f).p for f in ROBUST_FAMILIES):
        raise ConfigError(
            f"tune.objective {cfg.objective!r} scores trials under train.robust's families, "
            f"but every one has p 0: set tune.objective to accuracy, or train.robust.{ROBUST_FAMILIES[0]}.p "
            "to 0.5"
        )
    for name in ("train", "val"):
        if not cache.exists(Path(cache_dir) / name):
            raise DataError(f"{Path(cache_dir) / name} not found: run `steelflow split` first")
    note = fidelity.rung_note(cfg, objective)  # a small budget scales the rungs instead of failing
    if note:
        progress.say(note)
    ref = StudyRef(
        name=study_name(params),
        storage_url=storage_url(cfg),
        params=params.raw(),
        cache_dir=str(cache_dir),
    )
    study = load_study(ref, cfg, worker=0)
    study.set_user_attr("data_version", data_version())
    queue_missing(study, params, cfg)
    return ref


def work(ref: StudyRef, index: int, n_workers: int = 1) -> None:
    """One worker: claim queued trials and run them until the queue is empty (or the run's deadline,
    ``ref.deadline``, passed). ``n_workers``: how many share this machine's cores."""
    deadline = ref.deadline
    params = parse_params(ref.params)
    cfg = tune_cfg(params)
    if n_workers > 1:
        progress.set_bars(False)  # N bars in one terminal are noise; each trial prints one line instead
        if params.train.threads is None:
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
    study, storage = open_study(ref, cfg, worker=index)
    logger = TrialLogger(params, ref) if ref.mlflow_parent_run else None
    db = Database(cfg.grace_seconds)
    worker = f", worker {index}" if n_workers > 1 else ""
    with progress.overall("tuning", cfg.n_trials) as bar:
        while True:  # the deadline is checked after each trial, so every worker runs at least one
            db(optuna.storages.fail_stale_trials, study)  # a dead worker's trial → FAIL, and a retry queued
            claimed = db(claim, study, storage)
            if claimed is None:
                running = db(study.get_trials, deepcopy=False, states=(TrialState.RUNNING,))
                if not running or time.time() >= deadline:
                    return  # nothing queued, nothing that may still fail and come back as a retry
                time.sleep(min(cfg.heartbeat_seconds, 5))
                continue
            at, total = position(db(study.get_trials, deepcopy=False), claimed[0].number, cfg.n_trials)
            bar(at - 1, f"tuning: trial {at}/{total}")
            frozen = run_trial(*claimed, study, storage, params, cfg, ref, db, on_start=announce(at, total))
            done = sum(t.state in FINISHED for t in counted(db(study.get_trials, deepcopy=False)))
            progress.say(finished_line(frozen, at, total, cfg.n_trials - done, worker))
            bar(done, f"tuning: {done}/{total} trials")
            if logger is not None:
                logger.log(frozen)
            if time.time() >= deadline:
                return


def report(params: Params, ref: StudyRef, out_dir: Path = paths.TUNING) -> TuneResult:
    """Write best_params.yaml, trials.csv and the plots; fail if no trial completed."""
    cfg = tune_cfg(params)
    study = load_study(ref, cfg, worker=0)
    trials = study.get_trials(deepcopy=False)
    kept = counted(trials)
    states = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    counts = {s.name: sum(t.state == s for t in kept) for s in states}
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if not completed:
        errors = sorted(
            {
                str(t.user_attrs.get("error") or t.user_attrs.get("diverged") or t.state.name)
                for t in trials
                if t.state != TrialState.WAITING
            }
        )
        raise TuningFailed(
            f"no trial of study {ref.name!r} completed ({counts}); errors: {'; '.join(errors) or 'none'}"
        )
    objective = objective_of(params)
    top = fidelity.top_rung(trials, objective)
    if not top:
        raise TuningFailed(
            f"no trial of study {ref.name!r} reached the top rung ({objective.budget} epochs; {counts}): "
            f"raise tune.n_trials to {cfg.n_trials * objective.reduction_factor}, or set tune.pruner.kind "
            "to none (every trial runs the whole budget)"
        )
    best = fidelity.pick_best(top, objective, cfg.max_clean_drop, cfg.min_improvement)
    best, test = fidelity.guard_baseline(
        best, top, objective, cfg.max_clean_drop, cfg.min_improvement, cfg.significance
    )
    baseline = baseline_of(kept, objective)
    n_finished = sum(counts[s.name] for s in FINISHED)
    out_dir = Path(out_dir)
    clean, robust = best.user_attrs[fidelity.CLEAN], best.user_attrs[fidelity.ROBUST]
    value = robust if objective.kind == "pareto" else best.values[0]
    doc = {
        "study": ref.name,
        "storage": hide_password(ref.storage_url),
        "trial": best.number,
        "objective": cfg.objective,
        "value": value,
        "clean": clean,
        "robust": robust,
        "metric": METRIC[cfg.objective].format(
            budget=objective.budget, score=cfg.robust_score, drop=cfg.max_clean_drop
        ),
        "epochs": objective.budget,
        "top_rung_trials": len(top),
        "finished_trials": n_finished,
        "params": {k: plain(v) for k, v in best.params.items()},
        "baseline": fidelity.is_baseline(best),
        "min_improvement": cfg.min_improvement,
        "significance": test,  # the paired bootstrap of the study's pick against the baseline
        "baseline_trial": baseline,
    }
    if objective.needs_robust:
        doc["pareto_front"] = fidelity.pareto_front(top)
    with atomic.atomic_path(out_dir / paths.BEST_PARAMS.name) as tmp:
        tmp.write_text(
            "# written by `steelflow tune`; `train` applies `params` when train.use_tuned is true\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"))
    with atomic.atomic_path(out_dir / paths.TRIALS_CSV.name) as tmp:
        frame.to_csv(tmp, index=False)
    with atomic.atomic_path(out_dir / paths.TUNING_PLOTS.name) as tmp:
        draw_plots(study, objective, best.number, tmp)
    return TuneResult(
        study_name=ref.name,
        storage=hide_password(ref.storage_url),
        counts=counts,
        n_trials=cfg.n_trials,
        complete=n_finished >= cfg.n_trials,
        best_trial=best.number,
        best_value=float(value),
        best_params=doc["params"],
        best_clean=float(clean),
        best_robust=None if robust is None else float(robust),
        baseline=doc["baseline"],
        baseline_trial=baseline,
        significance=test,
    )


# --- the declaration --------------------------------------------------------------------------------


def summary(result: TuneResult) -> list[str]:
    counts = ", ".join(f"{n} {state.lower()}" for state, n in result.counts.items() if n)
    robust = f", robust {result.best_robust:.3f}" if result.best_robust is not None else ""
    lines = [
        f"tune: study {result.study_name} ({counts}) in {result.seconds:.0f} s; best trial "
        f"{result.best_trial}{_baseline_note(result)}: val accuracy {result.best_clean:.3f}{robust} "
        f"→ {paths.BEST_PARAMS}"
    ]
    if result.dead_workers:
        lines.append(
            f"warning: tune: worker(s) {result.dead_workers} died; their trials were failed and retried"
        )
    if not result.complete:
        lines.append(
            f"warning: tune: the study is not complete ({result.n_trials} trials asked for); "
            "run `steelflow tune` again to continue it"
        )
    return lines


def _baseline_note(result: TuneResult) -> str:
    """How the best trial stands to the baseline (the hand-set values), for the summary line."""
    b = result.baseline_trial
    if b is None:
        return ""
    test = result.significance
    if result.baseline and test and test["kept_baseline"]:
        return (
            f" (the baseline: trial {test['rival']} scored higher on {test['score']} validation accuracy, "
            f"but lost or tied in {test['p']:.0%} of bootstrap resamples of the images, above "
            f"tune.significance {test['significance']})"
        )
    if result.baseline:
        return " (the baseline: the hand-set values)"
    if not b["top_rung"]:
        at = f" at {b['epochs']} epochs" if b["epochs"] else ""
        return f" (the baseline, trial {b['number']}, {b['state'].lower()}{at})"
    scores = f"val accuracy {b['clean']:.3f}" + (
        f", robust {b['robust']:.3f}" if b["robust"] is not None else ""
    )
    return f" (beat the baseline, trial {b['number']}: {scores})"


STEP = Step(
    "tune",
    run=tune,
    tracks=True,
    help="Search tune.space with Optuna → reports/tuning/best_params.yaml (train.use_tuned applies it).",
    # the whole tree: each trial trains a variant of it, and the study records it
    sections=("params",),
    inputs=(paths.CACHE_SPLITS,),
    params=("model", "train", "tune"),
    outs=(paths.BEST_PARAMS, paths.TRIALS_CSV, paths.TUNING_PLOTS),
    plots=(paths.TUNING_PLOTS,),
    options=(
        Option("workers", int | None, None, "processes (default: tune.workers)", short="-w"),
        Option("track", bool, True, "log the study to MLflow", flag="--track/--no-track", kfp=True),
    ),
    summary=summary,
    consumes=("manifest", "splits"),
    produces=(Produces("tuning"), Produces("metrics", "Metrics")),
    gpu=True,
    cache=False,  # a shared study on a server
    retries=True,
    fan_out=FanOut(start=functools.partial(start, track=True), work=work, finish=finish, load=StudyRef.load),
)
