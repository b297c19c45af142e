"""Step 5a, tune: an Optuna study over params keys, whose best values ``train`` applies (train.use_tuned).

Reads params sections ``tune`` (the search), ``model`` and ``train`` (the base every trial starts from) and
the cache ``data/cache/splits/{train,val}.npz``. Writes ``reports/tuning/best_params.yaml`` (dotted params
keys → values), ``reports/tuning/trials.csv`` and, under ``reports/tuning/plots/``, the optimisation
history, the rung-by-rung curves, the clean-vs-robust front and the parameter importances.

A trial is a training run with the trial's values set on the base params, on the full schedule of
``tune.max_epochs``; after every epoch it reports its score (``tune.objective``), and at each rung of
successive halving (or Hyperband) only the best 1 in ``reduction_factor`` climbs on
(:mod:`steelflow.steps.tune_objective`). ``best_params`` comes from the trials that reached the top rung,
never from a snapshot at a lower one. The study lives in an RDB storage (SQLite file by default,
PostgreSQL for teams) under a name derived from the params and the data version, so rerunning continues
the same study until it holds ``tune.n_trials`` trials.

Three functions make the step, so that a Kubeflow pipeline can run them as separate pods:
:func:`prepare` creates the study and queues exactly the trials still missing; :func:`work` (one per worker
process, any number at once) claims queued trials until none is left; :func:`report` writes the outputs.
:func:`tune` runs all three; :func:`start` and :func:`finish` add the study's MLflow run around them.
Why a queue: Optuna's own ``optimize`` creates a new trial whenever it finds none waiting, so N workers
stopping "at n_trials" overshoot it. Claiming a queued trial is one atomic
WAITING → RUNNING update in the storage, so no trial is run twice and none is lost.

A trial that raises (NaN loss, out of memory) is told FAIL with its error, and the worker goes on. A worker
that dies mid-trial stops its heartbeat; after ``tune.grace_seconds`` any worker marks that trial FAIL
and Optuna's ``RetryHeartbeatStaleTrialCallback`` queues a copy with the same values (``tune.retries``
times at most).
A failed trial that was retried is not counted: the study is complete when it holds ``n_trials`` trials
that are finished or replaced by their retry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import yaml
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from steelflow import io, paths, progress
from steelflow.config import (
    ROBUST_FAMILIES,
    ConfigError,
    Params,
    SearchParam,
    TuneConfig,
    check_search_space,
    parse_params,
    with_overrides,
)
from steelflow.errors import DataError, TuningFailed
from steelflow.project import anchored, data_label
from steelflow.steps import tune_objective as fidelity
from steelflow.tracking import data_version, params_hash

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
T = TypeVar("T")

# Heartbeats and stale-trial retries are "experimental" in Optuna since 2.8; we rely on them on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from us instead


@dataclasses.dataclass(frozen=True)
class StudyRef:
    """What a worker needs to find the study: picklable, so it crosses into spawned processes."""

    name: str
    storage_url: str
    params: dict[str, Any]  # the params tree (params.yaml spelling)
    cache_dir: str
    mlflow_parent_run: str | None = None

    def save(self, path: str | Path) -> None:
        """As JSON: how a Kubeflow run hands the study from its start step to the worker pods."""
        io.write_text(path, json.dumps(dataclasses.asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> StudyRef:
        return cls(**json.loads(Path(path).read_text()))


@dataclasses.dataclass
class TuneResult:
    study_name: str
    storage: str  # with any password hidden
    counts: dict[str, int]
    n_trials: int
    complete: bool
    best_trial: int
    best_value: float  # the objective's value (pareto: the robust score) of the trial train applies
    best_params: dict[str, Any]
    best_clean: float = 0.0
    best_robust: float | None = None
    seconds: float = 0.0
    dead_workers: list[int] = dataclasses.field(default_factory=list)


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
    cfg = _tune_cfg(params)
    workers = workers or cfg.workers
    started = time.perf_counter()
    ref = start(params, cache_dir, track)
    try:
        deadline = deadline_of(cfg)
        dead: list[int] = []
        if workers == 1:
            work(ref, 0, deadline)
        else:
            ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch threads
            procs = [ctx.Process(target=work, args=(ref, i, deadline, workers)) for i in range(workers)]
            for proc in procs:
                proc.start()
            for i, proc in enumerate(procs):
                proc.join()
                if proc.exitcode != 0:
                    dead.append(i)
    except BaseException:
        if ref.mlflow_parent_run:
            _ParentRun(params, ref).close(None, out_dir, ok=False)
        raise
    result = finish(params, ref, out_dir)
    result.seconds = time.perf_counter() - started
    result.dead_workers = dead
    return result


def deadline_of(cfg: TuneConfig) -> float:
    """When workers started now stop taking trials (``tune.timeout``)."""
    return time.time() + cfg.timeout if cfg.timeout else math.inf


def start(params: Params, cache_dir: Path = paths.CACHE / "splits", track: bool = False) -> StudyRef:
    """:func:`prepare`, and with ``track`` the study's MLflow run, whose id the returned ref carries."""
    ref = prepare(params, cache_dir)
    return _ParentRun(params, ref).ref if track else ref


def finish(params: Params, ref: StudyRef, out_dir: Path = paths.TUNING) -> TuneResult:
    """:func:`report`, and close the study's MLflow run (when ``ref`` has one) with its summary."""
    parent = _ParentRun(params, ref) if ref.mlflow_parent_run else None
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
    cfg = _tune_cfg(params)
    check_search_space(params)
    if params.split.val == 0:
        raise ConfigError("tune needs a validation split to score trials, but split.val is 0")
    for name in ("train", "val"):
        if not (Path(cache_dir) / f"{name}.npz").is_file():
            raise DataError(f"{Path(cache_dir) / name}.npz not found: run `steelflow split` first")
    objective = _objective(params)
    if cfg.pruner.kind in ("successive_halving", "hyperband") and cfg.pruner.min_epochs >= objective.budget:
        raise ConfigError(
            f"tune.pruner.min_epochs ({cfg.pruner.min_epochs}) must be below a trial's budget "
            f"({objective.budget} epochs: tune.max_epochs, or train.epochs when null)"
        )
    if objective.needs_robust and not any(getattr(params.train.robust, f).p for f in ROBUST_FAMILIES):
        raise ConfigError(
            f"tune.objective {cfg.objective!r} scores trials under train.robust's families, "
            "but every one has p 0"
        )
    ref = StudyRef(
        name=study_name(params),
        storage_url=storage_url(cfg),
        params=params.raw(),
        cache_dir=str(cache_dir),
    )
    study = _load_study(ref, cfg, worker=0)
    study.set_user_attr("data_version", data_version())
    missing = cfg.n_trials - len(_counted(study.get_trials(deepcopy=False)))
    for _ in range(max(0, missing)):
        study.enqueue_trial({}, user_attrs={"queued_by": _who()})
    return ref


def work(ref: StudyRef, index: int, deadline: float = math.inf, n_workers: int = 1) -> None:
    """One worker: claim queued trials and run them until the queue is empty (or the deadline passed)."""
    params = parse_params(ref.params)
    cfg = _tune_cfg(params)
    if n_workers > 1:
        progress.set_bars(False)  # N bars in one terminal are noise; each trial prints one line instead
        if params.train.threads is None:
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
    study, storage = _open(ref, cfg, worker=index)
    logger = _TrialLogger(params, ref) if ref.mlflow_parent_run else None
    db = _Database(cfg.grace_seconds)
    while True:  # the deadline is checked after each trial, so every worker runs at least one
        db(optuna.storages.fail_stale_trials, study)  # a dead worker's trial → FAIL, and a retry queued
        claimed = db(_claim, study, storage)
        if claimed is None:
            running = db(study.get_trials, deepcopy=False, states=(TrialState.RUNNING,))
            if not running or time.time() >= deadline:
                return  # nothing queued, nothing that may still fail and come back as a retry
            time.sleep(min(cfg.heartbeat_seconds, 5))
            continue
        frozen = _run(*claimed, study, storage, params, cfg, ref, db)
        _print_trial(frozen, index)
        if logger is not None:
            logger.log(frozen)
        if time.time() >= deadline:
            return


def report(params: Params, ref: StudyRef, out_dir: Path = paths.TUNING) -> TuneResult:
    """Write best_params.yaml, trials.csv and the plots; fail if no trial completed."""
    cfg = _tune_cfg(params)
    study = _load_study(ref, cfg, worker=0)
    trials = study.get_trials(deepcopy=False)
    counted = _counted(trials)
    states = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    counts = {s.name: sum(t.state == s for t in counted) for s in states}
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if not completed:
        errors = sorted(
            {str(t.user_attrs.get("error", t.state.name)) for t in trials if t.state != TrialState.WAITING}
        )
        raise TuningFailed(
            f"no trial of study {ref.name!r} completed ({counts}); errors: {'; '.join(errors) or 'none'}"
        )
    objective = _objective(params)
    top = fidelity.top_rung(trials, objective)
    if not top:
        raise TuningFailed(
            f"no trial of study {ref.name!r} reached the top rung ({objective.budget} epochs; {counts}): "
            "raise tune.n_trials, or lower tune.pruner.reduction_factor"
        )
    best = fidelity.pick_best(top, objective, cfg.max_clean_drop)
    n_finished = sum(counts[s.name] for s in FINISHED)
    out_dir = Path(out_dir)
    clean, robust = best.user_attrs[fidelity.CLEAN], best.user_attrs[fidelity.ROBUST]
    value = robust if objective.kind == "pareto" else best.values[0]
    doc = {
        "study": ref.name,
        "storage": _hide_password(ref.storage_url),
        "trial": best.number,
        "objective": cfg.objective,
        "value": value,
        "clean": clean,
        "robust": robust,
        "metric": _METRIC[cfg.objective].format(
            budget=objective.budget, score=cfg.robust_score, drop=cfg.max_clean_drop
        ),
        "epochs": objective.budget,
        "top_rung_trials": len(top),
        "finished_trials": n_finished,
        "params": {k: _plain(v) for k, v in best.params.items()},
    }
    if objective.needs_robust:
        doc["pareto_front"] = fidelity.pareto_front(top)
    with io.atomic_path(out_dir / "best_params.yaml") as tmp:
        tmp.write_text(
            "# written by `steelflow tune`; `train` applies `params` when train.use_tuned is true\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"))
    with io.atomic_path(out_dir / "trials.csv") as tmp:
        frame.to_csv(tmp, index=False)
    with io.atomic_path(out_dir / "plots") as tmp:
        _plots(study, objective, best.number, tmp)
    return TuneResult(
        study_name=ref.name,
        storage=_hide_password(ref.storage_url),
        counts=counts,
        n_trials=cfg.n_trials,
        complete=n_finished >= cfg.n_trials,
        best_trial=best.number,
        best_value=float(value),
        best_params=doc["params"],
        best_clean=float(clean),
        best_robust=None if robust is None else float(robust),
    )


_METRIC = {
    "accuracy": "best clean validation accuracy over {budget} epochs",
    "robust": "best {score} validation accuracy under train.robust's families over {budget} epochs",
    "pareto": "most robust ({score} family) top-rung trial within {drop} of the best clean validation "
    "accuracy, over {budget} epochs",
}


def _objective(params: Params) -> fidelity.Objective:
    return fidelity.Objective.of(_tune_cfg(params), params.train.epochs)


# --- the study --------------------------------------------------------------------------------------


def study_name(params: Params) -> str:
    """Same params and data → same name, so a rerun continues the study. ``n_trials``, ``timeout`` and
    ``workers`` are left out (raising ``n_trials`` extends the study), and so are the base values of
    the searched keys (a trial sets them anyway)."""
    cfg = _tune_cfg(params)
    tree = params.raw()
    for key in cfg.space:
        section, *rest = key.split(".")
        node = tree[section]
        for part in rest[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(rest[-1], None)
    identity = {
        "data_version": data_version(),
        "data.cache_size": params.data.cache_size,
        "split": tree["split"],
        "model": tree["model"],
        "train": {k: v for k, v in tree["train"].items() if k not in ("device", "threads", "use_tuned")},
        "tune": {
            k: v
            for k, v in tree["tune"].items()
            if k in ("space", "sampler", "pruner", "objective", "robust_score")
        },
        "budget": _objective(params).budget,
    }
    return f"{params.model.variant}-{data_label(params.data.source)}-{params_hash(identity)[:12]}"


def storage_url(cfg: TuneConfig) -> str:
    # relative sqlite:/// from the project root: a `dvc exp run --temp` study lands in the project's file
    return anchored(os.environ.get(paths.OPTUNA_STORAGE_ENV) or cfg.storage)


def _load_study(ref: StudyRef, cfg: TuneConfig, worker: int) -> optuna.Study:
    return _open(ref, cfg, worker)[0]


def _open(ref: StudyRef, cfg: TuneConfig, worker: int) -> tuple[optuna.Study, BaseStorage]:
    """The study and the storage it lives in (a worker claims trials through the storage itself)."""
    url = ref.storage_url
    if url.startswith("sqlite"):  # workers share the file: wait for its lock rather than fail
        engine: dict[str, Any] = {"connect_args": {"timeout": cfg.grace_seconds}}
    else:  # reconnect after a database restart
        engine = {"pool_pre_ping": True}
    retry = RetryHeartbeatStaleTrialCallback(max_retry=cfg.retries) if cfg.retries else None
    try:
        storage = RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=cfg.heartbeat_seconds,
            grace_period=cfg.grace_seconds,
            heartbeat_stale_trial_callback=retry,
        )
    except Exception as e:  # SQLAlchemy reports a bad URL or an unreachable server in many ways
        raise ConfigError(f"tune.storage: cannot open {_hide_password(url)}: {e}") from None
    if url.startswith("sqlite"):
        _serialize_sqlite(storage.engine)
    # TPE models a multi-objective space too (MOTPE), and unlike NSGA-II needs no population of trials
    sampler = optuna.samplers.TPESampler(
        seed=cfg.sampler.seed + worker,  # one seed per worker, or parallel workers would suggest alike
        n_startup_trials=cfg.sampler.startup_trials,
        constant_liar=True,  # running trials count as bad guesses, so parallel workers spread out
    )
    objective = fidelity.Objective.of(cfg, int((ref.params.get("train") or {}).get("epochs", 1)))
    study = optuna.create_study(
        study_name=ref.name,
        storage=storage,
        directions=objective.directions,
        sampler=sampler,
        pruner=_pruner(cfg, objective),
        load_if_exists=True,
    )
    if study.metric_names != objective.metric_names:
        study.set_metric_names(objective.metric_names)  # the dashboard's axis names
    # Claim and heartbeat through the storage the study wraps (Optuna's trial cache in front of the
    # database), exactly as Study.ask does; the bare RDBStorage would leave that cache behind.
    return study, study._storage


def _serialize_sqlite(engine: Any) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    Python's sqlite3 starts a transaction only at the first write, so Optuna's ``SELECT … FOR UPDATE``
    locks nothing there: two workers could both read a trial as WAITING and both claim it (seen in CI:
    one worker then died updating a trial the other had finished). Taking the lock at BEGIN makes the
    claim's read and write one step, as on PostgreSQL. SQLAlchemy's recipe for SQLite transactions.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _manual_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 leaves BEGIN to us

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners (table creation) are dropped


def _pruner(cfg: TuneConfig, objective: fidelity.Objective) -> optuna.pruners.BasePruner:
    """Optuna's pruner for one objective; pareto's rung rule is :func:`fidelity.pareto_promotable`."""
    p = cfg.pruner
    if objective.kind == "pareto":
        return optuna.pruners.NopPruner()
    if p.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs)
    if p.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_epochs, reduction_factor=p.reduction_factor, min_early_stopping_rate=0
        )
    if p.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_epochs, max_resource=objective.budget, reduction_factor=p.reduction_factor
        )
    return optuna.pruners.NopPruner()


def _counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Every trial but the failed ones that were replaced by a retry."""
    replaced = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    return [t for t in trials if t.number not in replaced]


def _claim(study: optuna.Study, storage: BaseStorage) -> tuple[optuna.Trial, int] | None:
    """Take one queued trial: WAITING → RUNNING is atomic in the storage, so each goes to one worker."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id), trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def _run(
    trial: optuna.Trial,
    trial_id: int,
    study: optuna.Study,
    storage: BaseStorage,
    params: Params,
    cfg: TuneConfig,
    ref: StudyRef,
    db: _Database,
) -> FrozenTrial:
    """One trial: training on the full schedule, pruned at a rung it does not climb; told COMPLETE, PRUNED
    or FAIL. Its curve, scores and last rung are user attributes, pruned or not."""
    from steelflow.steps.train import train

    db(trial.set_user_attr, "worker", _who())
    started = time.perf_counter()
    state, value, interrupted = TrialState.FAIL, None, False
    objective = fidelity.Objective.of(cfg, params.train.epochs)
    curve: list[list[Any]] = []

    def scored() -> tuple[float, float | None]:
        clean, robust = objective.scores(curve)
        db(trial.set_user_attr, fidelity.CURVE, curve)
        db(trial.set_user_attr, fidelity.EPOCHS, len(curve))
        db(trial.set_user_attr, fidelity.LAST_RUNG, objective.last_rung(len(curve)))
        db(trial.set_user_attr, fidelity.CLEAN, clean)
        db(trial.set_user_attr, fidelity.ROBUST, robust)
        return clean, robust

    with _heartbeat(storage, trial_id, cfg.heartbeat_seconds):
        try:
            values = {key: db(_suggest, trial, key, spec) for key, spec in cfg.space.items()}
            trial_params = with_overrides(
                params, {**values, "train.epochs": objective.budget, "train.patience": 0}
            )

            def report_epoch(row: dict[str, float]) -> None:
                epoch = int(row["epoch"])
                robust_now = row.get(objective.robust_key) if objective.needs_robust else None
                curve.append([epoch, row["val_accuracy"], robust_now])
                clean, robust = scored()
                if objective.kind == "pareto":
                    if epoch in objective.rungs and cfg.pruner.kind != "none":
                        db(trial.set_user_attr, f"rung_{epoch}", [clean, robust])
                        others = db(study.get_trials, deepcopy=False)
                        if not fidelity.pareto_promotable(
                            trial.number, epoch, others, objective.reduction_factor
                        ):
                            raise optuna.TrialPruned(
                                f"not in the top 1/{objective.reduction_factor} of rung {epoch}"
                            )
                    return
                if objective.needs_robust and robust_now is None:
                    return  # not an epoch the robust score is taken at (nor a rung)
                db(trial.report, objective.value(clean, robust), step=epoch)
                if db(trial.should_prune):
                    raise optuna.TrialPruned(
                        f"{objective.metric_names[0]} {objective.value(clean, robust):.3f} at epoch {epoch}"
                    )

            with tempfile.TemporaryDirectory(prefix=f"steelflow-trial-{trial.number}-") as tmp:
                result = train(
                    trial_params.model,
                    trial_params.train,
                    cache_dir=Path(ref.cache_dir),
                    model_path=Path(tmp) / "model.pt",
                    checkpoint_path=Path(tmp) / "checkpoint.pt",
                    metrics_path=Path(tmp) / "train.json",
                    history_path=Path(tmp) / "history.csv",
                    on_epoch=report_epoch,
                    robust_val=params.train.robust if objective.needs_robust else None,
                    robust_val_epochs=objective.robust_epochs(cfg.pruner.kind),
                )
            state, value = TrialState.COMPLETE, objective.value(*scored())
            db(trial.set_user_attr, "best_epoch", result.best_epoch)
        except optuna.TrialPruned as e:
            state = TrialState.PRUNED
            db(trial.set_user_attr, "pruned", str(e))
        except Exception as e:  # NaN loss, out of memory, a bad value: recorded, and the study goes on
            db(trial.set_user_attr, "error", f"{type(e).__name__}: {e}"[:1000])
        except KeyboardInterrupt:
            db(trial.set_user_attr, "error", "interrupted (Ctrl-C)")
            interrupted = True
        db(trial.set_user_attr, "seconds", round(time.perf_counter() - started, 2))
    db(study.tell, trial, value if state == TrialState.COMPLETE else None, state=state)
    if interrupted:
        raise KeyboardInterrupt
    return db(storage.get_trial, trial_id)


class _Database:
    """Call a storage operation, retrying while the database is unreachable (a restart, a failover), for
    up to ``patience`` seconds; connections are checked before use (pool_pre_ping), so calls after the
    database is back get fresh ones."""

    def __init__(self, patience: float):
        self.patience = patience

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from sqlalchemy.exc import DBAPIError, OperationalError

        deadline, wait = time.monotonic() + self.patience, 0.5
        while True:
            try:
                return fn(*args, **kwargs)
            except (OperationalError, DBAPIError, optuna.exceptions.StorageInternalError) as e:
                if time.monotonic() + wait > deadline:
                    raise
                print(f"tune: the study's database is unreachable ({type(e).__name__}); retrying", flush=True)
                time.sleep(wait)
                wait = min(wait * 2, 5.0)


def _suggest(trial: optuna.Trial, key: str, spec: SearchParam) -> Any:
    if spec.kind == "categorical":
        return trial.suggest_categorical(key, spec.choices)
    if spec.kind == "int":
        step = int(spec.step) if spec.step else 1
        return trial.suggest_int(key, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)


@contextlib.contextmanager
def _heartbeat(storage: BaseStorage, trial_id: int, interval: float) -> Iterator[None]:
    """Record the trial's heartbeat every ``interval`` seconds while it runs (Optuna does this only inside
    ``Study.optimize``, which our queue-claiming loop does not use)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a storage hiccup: the next beat tries again
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# --- MLflow: one parent run per study, one nested run per trial -------------------------------------


class _ParentRun:
    """The study's MLflow run: created on the first `steelflow tune`, reused while the study continues."""

    def __init__(self, params: Params, ref: StudyRef):
        from mlflow import MlflowClient

        from steelflow.tracking import ensure_experiment, flatten, run_tags, tracking_uri

        self._client = MlflowClient(tracking_uri(params.mlflow))
        self._params = params
        if ref.mlflow_parent_run:  # opened by `start` (here, or in another pod): nothing to look up
            self.run_id, self.ref = ref.mlflow_parent_run, ref
            return
        exp_id = ensure_experiment(self._client, params.mlflow.experiment)  # artifacts at the project root
        found = self._client.search_runs(
            [exp_id],
            filter_string=f"tags.`optuna.study_name` = '{ref.name}' and tags.`steelflow.step` = 'tune'",
            max_results=1,
        )
        if found:
            self.run_id = found[0].info.run_id
            self._client.update_run(self.run_id, status="RUNNING")
            self.ref = dataclasses.replace(ref, mlflow_parent_run=self.run_id)
            return
        tree = params.raw()
        tags = run_tags(tree, "cpu", "tune") | {
            "optuna.study_name": ref.name,
            "optuna.storage": _hide_password(ref.storage_url),
        }
        tags.pop("device", None)  # trials may run anywhere; each trial's run says where
        run = self._client.create_run(exp_id, run_name=f"tune {ref.name}", tags=tags)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        flat = flatten({"tune": tree["tune"], "model": tree["model"], "train": tree["train"]})
        self._client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in flat.items()])
        self.ref = dataclasses.replace(ref, mlflow_parent_run=self.run_id)

    def close(self, result: TuneResult | None, out_dir: Path, ok: bool) -> None:
        from mlflow.entities import Metric

        if result is not None:
            log_missing_trials(self._params, self.ref)
            now = int(time.time() * 1000)
            metrics = {
                "best_value": result.best_value,
                "best_trial": result.best_trial,
                "best_clean": result.best_clean,
            }
            if result.best_robust is not None:
                metrics["best_robust"] = result.best_robust
            metrics |= {f"trials_{state.lower()}": n for state, n in result.counts.items()}
            self._client.log_batch(
                self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
            )
            for artifact in (out_dir / "best_params.yaml", out_dir / "trials.csv"):
                self._client.log_artifact(self.run_id, str(artifact), "tuning")
            self._client.log_artifacts(self.run_id, str(out_dir / "plots"), "tuning/plots")
        self._client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")


class _TrialLogger:
    """Logs each finished trial as a child of the study's MLflow run (params, intermediate values, state)."""

    def __init__(self, params: Params, ref: StudyRef):
        from mlflow import MlflowClient

        from steelflow.tracking import tracking_uri

        self._client = MlflowClient(tracking_uri(params.mlflow))
        self._parent = ref.mlflow_parent_run
        self._study = ref.name
        self._experiment = self._client.get_run(self._parent).info.experiment_id

    def log(self, t: FrozenTrial) -> None:
        from mlflow.entities import Metric, Param, RunTag

        try:
            tags = {
                "mlflow.parentRunId": self._parent,
                "optuna.study_name": self._study,
                "optuna.trial_number": str(t.number),
                "optuna.state": t.state.name,
            }
            for key in ("error", "pruned", "worker"):
                if key in t.user_attrs:
                    tags[f"optuna.{key}"] = str(t.user_attrs[key])
            end = int((t.datetime_complete or t.datetime_start).timestamp() * 1000)
            run = self._client.create_run(self._experiment, run_name=f"trial {t.number}", tags=tags)
            metrics = []
            for epoch, clean, robust in t.user_attrs.get(fidelity.CURVE) or []:
                metrics.append(Metric("val/accuracy", clean, end, int(epoch)))
                if robust is not None:
                    metrics.append(Metric("val/robust", robust, end, int(epoch)))
            # what the pruner saw (single objective: the best so far each epoch), and the final value(s)
            metrics += [
                Metric("tune/objective", v, end, int(step)) for step, v in t.intermediate_values.items()
            ]
            if t.values and len(t.values) > 1:
                metrics += [
                    Metric(f"tune/objective/{name}", float(v), end, 0)
                    for name, v in zip(("clean", "robust"), t.values, strict=True)
                ]
            self._client.log_batch(
                run.info.run_id,
                metrics=metrics,
                params=[Param(k, str(v)) for k, v in t.params.items()],
                tags=[RunTag("steelflow.step", "tune-trial")],
            )
            status = "FAILED" if t.state == TrialState.FAIL else "FINISHED"
            self._client.set_terminated(run.info.run_id, status=status, end_time=end)
        except Exception as e:  # tracking must not fail a trial; `log_missing` catches up at the end
            print(f"tune: could not log trial {t.number} to MLflow ({e}); it is retried at the end")

    def log_missing(self, study: optuna.Study) -> int:
        """Log every finished trial that has no child run yet (trials of dead workers, lost logs)."""
        runs = self._client.search_runs(
            [self._experiment], filter_string=f"tags.mlflow.parentRunId = '{self._parent}'", max_results=50000
        )
        logged = {r.data.tags.get("optuna.trial_number") for r in runs}
        missing = [
            t for t in study.get_trials(deepcopy=False, states=FINISHED) if str(t.number) not in logged
        ]
        for t in missing:
            self.log(t)
        return len(missing)


def log_missing_trials(params: Params, ref: StudyRef) -> int:
    if not ref.mlflow_parent_run:
        return 0
    return _TrialLogger(params, ref).log_missing(_load_study(ref, _tune_cfg(params), worker=0))


# --- small helpers ----------------------------------------------------------------------------------


def _tune_cfg(params: Params) -> TuneConfig:
    if params.tune is None:
        raise ConfigError("params has no 'tune' section: add one (see params.yaml) to run `steelflow tune`")
    return params.tune


def _plots(study: optuna.Study, objective: fidelity.Objective, chosen: int, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    folder.mkdir(parents=True)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    fidelity.plot_rungs(trials, objective, folder / "rungs.png")
    fidelity.plot_front(trials, objective, chosen, folder / "pareto_front.png")
    # Optuna's own plots take one number per trial: with pareto, the robust score
    target = {"target": lambda t: t.values[1], "target_name": "robust"} if objective.kind == "pareto" else {}
    drawings = {
        "history.png": ovm.plot_optimization_history,
        "importance.png": ovm.plot_param_importances if len(complete) >= 2 else None,
    }
    for name, draw in drawings.items():
        if draw is None:
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.text(0.5, 0.5, "parameter importances need two complete trials", ha="center", va="center")
            ax.set_axis_off()
        else:
            ax = draw(study, **target)
            fig = ax.figure
            fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)


def _print_trial(t: FrozenTrial, worker: int) -> None:
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
    if fidelity.CLEAN in t.user_attrs:
        robust = t.user_attrs.get(fidelity.ROBUST)
        value = f"val acc {t.user_attrs[fidelity.CLEAN]:.3f}" + (
            f", robust {robust:.3f}" if robust is not None else ""
        )
        value += f" after {t.user_attrs.get(fidelity.EPOCHS)} epochs"
    else:
        value = ""
    if t.state == TrialState.FAIL:
        value = t.user_attrs.get("error", "")
    print(f"tune: trial {t.number} {t.state.name} {value} ({shown}) [worker {worker}]", flush=True)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _plain(v: Any) -> Any:
    """numpy scalars and the like → plain YAML values."""
    return v.item() if hasattr(v, "item") else v


def _who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
