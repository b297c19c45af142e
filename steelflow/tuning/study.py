"""The tune step's study machinery: the Optuna study, its queue of trials, the workers' claims and heartbeats.

The study lives in an RDB storage (SQLite file by default, PostgreSQL for teams) under a name derived from
the params and the data version (:func:`study_name`), so rerunning continues the same study until it holds
``tune.n_trials`` trials. Why a queue: Optuna's own ``optimize`` creates a new trial whenever it finds none
waiting, so N workers stopping "at n_trials" overshoot it. Claiming a queued trial (:func:`claim`) is one
atomic WAITING → RUNNING update in the storage, so no trial is run twice and none is lost.

A trial runs in :mod:`steelflow.tuning.trial`; a worker that dies mid-trial stops its heartbeat
(:func:`steelflow.tuning.trial.heartbeat`), and after ``tune.grace_seconds`` any worker marks that trial
FAIL and Optuna's ``RetryHeartbeatStaleTrialCallback`` queues a copy with the same values (``tune.retries``
times at most).
A failed trial that was retried is not counted (:func:`counted`): the study is complete when it holds
``n_trials`` trials that are finished or replaced by their retry.

With ``tune.baseline`` a new study's first queued trial is the baseline: the hand-set values of the
searched keys (:func:`queue_missing`). It is queued once, by whoever creates the study's queue (the one
``prepare`` of a run, never a worker), and counts as one of ``n_trials``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import tenacity
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError

from steelflow import atomic, paths
from steelflow.config import Params, SearchParam, TuneConfig, lookup
from steelflow.errors import ConfigError
from steelflow.project import anchored, data_label
from steelflow.redact import MASK, hide_password
from steelflow.tracking import data_version, params_hash
from steelflow.tuning import objective as fidelity

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class StudyRef:
    """What a worker needs to find the study: picklable, so it crosses into spawned processes."""

    name: str
    storage_url: str
    params: dict[str, Any]  # the params tree (params.yaml spelling)
    cache_dir: str
    mlflow_parent_run: str | None = None
    workers: int = 1  # how many workers the run fans out to
    deadline: float = math.inf  # when every worker stops taking trials (epoch seconds; tune.timeout)

    def worker_indices(self) -> list[int]:
        """One index per worker (what a Kubeflow ParallelFor fans out over)."""
        return list(range(self.workers))

    def save(self, path: str | Path) -> None:
        """As JSON: how a Kubeflow run hands the study from its start step to the worker pods. An artifact
        lands in the pipeline's artifact store, so the storage's password stays out: each pod has it from
        its own environment (the secret behind ``STEELFLOW_OPTUNA_STORAGE``), see :meth:`load`."""
        doc = dataclasses.asdict(self) | {"storage_url": hide_password(self.storage_url)}
        atomic.write_text(path, json.dumps(doc))

    @classmethod
    def load(cls, path: str | Path) -> StudyRef:
        ref = cls(**json.loads(Path(path).read_text()))
        if MASK not in ref.storage_url:
            return ref
        # the URL this pod was given for the same storage, password and all
        tune = ref.params.get("tune") or {}
        for url in (os.environ.get(paths.OPTUNA_STORAGE_ENV), tune.get("storage")):
            if url and hide_password(url) == ref.storage_url:
                return dataclasses.replace(ref, storage_url=url)
        return ref


def tune_cfg(params: Params) -> TuneConfig:
    if params.tune is None:
        raise ConfigError("params has no 'tune' section: add one (see params.yaml) to run `steelflow tune`")
    return params.tune


def objective_of(params: Params) -> fidelity.Objective:
    return fidelity.Objective.of(tune_cfg(params), params.train.epochs)


def study_name(params: Params) -> str:
    """Same params and data → same name, so a rerun continues the study. ``n_trials``, ``timeout`` and
    ``workers`` are left out (raising ``n_trials`` extends the study), and so are the base values of
    the searched keys (a trial sets them anyway), unless ``tune.baseline`` is on: then the study's first
    trial runs them, and other hand-set values make another study."""
    cfg = tune_cfg(params)
    hand_set = hand_set_values(params) if cfg.baseline else None
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
        "budget": objective_of(params).budget,
    }
    if hand_set is not None:  # only then: a study without a baseline keeps the name it always had
        identity["baseline"] = hand_set
    return f"{params.model.variant}-{data_label(params.data.source)}-{params_hash(identity)[:12]}"


def storage_url(cfg: TuneConfig) -> str:
    # relative sqlite:/// from the project root: a `dvc exp run --temp` study lands in the project's file
    # STEELFLOW_OPTUNA_STORAGE, when set, was resolved when params were loaded (cfg.effective_storage)
    return anchored(cfg.effective_storage)


def load_study(ref: StudyRef, cfg: TuneConfig, worker: int) -> optuna.Study:
    return open_study(ref, cfg, worker)[0]


# libpq's own settings (psycopg passes them through): a connection attempt gives up after 10 s, and a
# connection whose server went away without a word is found dead by TCP keepalives within about 25 s
SERVER_TIMEOUTS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def open_study(ref: StudyRef, cfg: TuneConfig, worker: int) -> tuple[optuna.Study, BaseStorage]:
    """The study and the storage it lives in (a worker claims trials through the storage itself)."""
    url = ref.storage_url
    if url.startswith("sqlite"):  # workers share the file: wait for its lock rather than fail
        engine: dict[str, Any] = {"connect_args": {"timeout": cfg.grace_seconds}}
    else:  # reconnect after a database restart; no connect or read waits forever on a server that is gone
        engine = {"pool_pre_ping": True}
        if url.startswith("postgresql"):
            engine["connect_args"] = SERVER_TIMEOUTS
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
        raise ConfigError(f"tune.storage: cannot open {hide_password(url)}: {e}") from None
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
    if objective.kind == "pareto" or (p.kind in ("successive_halving", "hyperband") and not objective.rungs):
        return optuna.pruners.NopPruner()
    if p.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs)
    if p.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=objective.rungs[0], reduction_factor=p.reduction_factor, min_early_stopping_rate=0
        )
    if p.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=objective.rungs[0],
            max_resource=objective.budget,
            reduction_factor=p.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def queue_missing(study: optuna.Study, params: Params, cfg: TuneConfig) -> int:
    """Queue the trials the study lacks of ``tune.n_trials``; returns how many.

    A new study (no trial at all yet) with ``tune.baseline`` gets the baseline first, so that it is trial
    0: the hand-set value of every searched key that lies in its search space (one that does not is left
    to the sampler, with a warning naming it). A study that already has trials, a continued one, never
    gets a second baseline.
    """
    trials = study.get_trials(deepcopy=False)
    missing = max(0, cfg.n_trials - len(counted(trials)))
    queued = {"queued_by": who()}
    baseline = bool(missing) and not trials and cfg.baseline
    if baseline:
        values, outside = baseline_values(params, cfg)
        for key, value in outside.items():
            print(
                f"warning: tune: the hand-set {key} = {value!r} is outside tune.space.{key} "
                f"({_range_of(cfg.space[key])}); the baseline trial samples {key} instead",
                file=sys.stderr,
                flush=True,
            )
        attrs = {fidelity.BASELINE: True} | ({"baseline_sampled": sorted(outside)} if outside else {})
        study.enqueue_trial(values, user_attrs=queued | attrs)
    for _ in range(missing - baseline):
        study.enqueue_trial({}, user_attrs=queued)
    return missing


def hand_set_values(params: Params) -> dict[str, Any]:
    """The params' own value of every key in ``tune.space`` (what the baseline trial runs); one end of a
    range where the key names it by index (``train.robust.noise.snr_db.0``)."""
    tree = params.raw()
    return {key: _hand_set(tree, key) for key in tune_cfg(params).space}


def _hand_set(tree: dict[str, Any], key: str) -> Any:
    try:
        return lookup(tree, key)
    except ConfigError:  # a key check_search_space refuses: nothing to run
        return None


def baseline_values(params: Params, cfg: TuneConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hand-set values the baseline trial is queued with, and those left out: outside their range or
    choices, where Optuna would warn and use them anyway (a float) or fail the trial (a categorical)."""
    inside, outside = {}, {}
    for key, value in hand_set_values(params).items():
        (inside if _within(cfg.space[key], value) else outside)[key] = value
    return inside, outside


def _within(spec: SearchParam, value: Any) -> bool:
    """Is ``value`` one the search-space entry can suggest (Optuna's distributions' own rule)?"""
    if spec.kind == "categorical":
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in spec.choices or [])
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    low, high = float(spec.low), float(spec.high)  # type: ignore[arg-type]
    if not low <= value <= high or (spec.kind == "int" and not float(value).is_integer()):
        return False
    if spec.step:
        k = (value - low) / spec.step
        return abs(k - round(k)) < 1e-8
    return True


def _range_of(spec: SearchParam) -> str:
    if spec.kind == "categorical":
        return f"choices {spec.choices}"
    step = f", step {spec.step:g}" if spec.step else ""
    return f"{spec.kind} {spec.low:g}..{spec.high:g}{step}{', log' if spec.log else ''}"


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Every trial but the failed ones that were replaced by a retry."""
    replaced = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    return [t for t in trials if t.number not in replaced]


def claim(study: optuna.Study, storage: BaseStorage) -> tuple[optuna.Trial, int] | None:
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


class Database:
    """Call a storage operation, retrying while the database is unreachable (a restart, a failover), for
    up to ``patience`` seconds, 0.5 s apart and doubling up to 5 s; connections are checked before use
    (pool_pre_ping), so calls after the database is back get fresh ones. The study's one retry helper."""

    def __init__(self, patience: float):
        self.patience = patience

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(
                (OperationalError, DBAPIError, optuna.exceptions.StorageInternalError)
            ),
            stop=tenacity.stop_before_delay(self.patience),  # no sleep that would end past the patience
            wait=tenacity.wait_exponential(multiplier=0.5, max=5.0),
            before_sleep=_say_retrying,
            reraise=True,  # the database's own error when it stays away
        )
        return retrying(fn, *args, **kwargs)


def _say_retrying(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    print(f"tune: the study's database is unreachable ({type(error).__name__}); retrying", flush=True)


def who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
