"""One trial of the tune step's study: training on the trial's values, scored and pruned epoch by epoch.

A trial (:func:`run_trial`) whose loss diverges (NaN or infinite) is told PRUNED at that epoch, with its
scores so far and a ``diverged`` attribute: the sampler models pruned trials as bad ones (failed ones it
ignores, and would sample the same region again). One that raises anything else (out of memory, a bad
value) is told FAIL with its error. Either way the worker goes on. While it runs, the trial's heartbeat is
recorded (:func:`heartbeat`), so a worker that dies mid-trial is noticed
(:mod:`steelflow.tuning.study`).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from steelflow.config import Params, SearchParam, TuneConfig, with_overrides
from steelflow.errors import TrainingDiverged
from steelflow.redact import redact
from steelflow.training.loop import train
from steelflow.tuning import objective as fidelity
from steelflow.tuning.study import Database, StudyRef, who


def run_trial(
    trial: optuna.Trial,
    trial_id: int,
    study: optuna.Study,
    storage: BaseStorage,
    params: Params,
    cfg: TuneConfig,
    ref: StudyRef,
    db: Database,
    on_start: Callable[[dict[str, Any], bool], None] | None = None,
) -> FrozenTrial:
    """One trial: training on the full schedule, pruned at a rung it does not climb; told COMPLETE, PRUNED
    or FAIL (PRUNED too when its loss diverges). Its curve, scores and last rung are user attributes.
    ``on_start(values, baseline)`` is told the trial's values before it trains."""
    db(trial.set_user_attr, "worker", who())
    started = time.perf_counter()
    state, value, interrupted = TrialState.FAIL, None, False
    objective = fidelity.Objective.of(cfg, params.train.epochs)
    curve: list[list[Any]] = []
    right: dict[str, Any] = {}  # this epoch's per-image correctness (train's on_scored)
    kept_right: dict[str, dict[str, Any]] = {}  # fidelity.CORRECT: at each best-so-far score's epoch

    def keep_right(epoch: int, robust_now: float | None) -> None:
        """Record which images were right where this epoch sets a best-so-far clean or robust score."""
        changed = False
        previous = [row[1] for row in curve[:-1]]
        if not previous or curve[-1][1] > max(previous):
            kept_right["clean"] = _record(epoch, {"clean": right["clean"]})
            changed = True
        previous = [row[2] for row in curve[:-1] if row[2] is not None]
        if robust_now is not None and (not previous or robust_now > max(previous)):
            kept_right["robust"] = _record(epoch, {k: v for k, v in right.items() if k != "clean"})
            changed = True
        if changed:
            db(trial.set_user_attr, fidelity.CORRECT, kept_right)

    def scored() -> tuple[float, float | None]:
        clean, robust = objective.scores(curve)
        db(trial.set_user_attr, fidelity.CURVE, curve)
        db(trial.set_user_attr, fidelity.EPOCHS, len(curve))
        db(trial.set_user_attr, fidelity.LAST_RUNG, objective.last_rung(len(curve)))
        db(trial.set_user_attr, fidelity.CLEAN, clean)
        db(trial.set_user_attr, fidelity.ROBUST, robust)
        return clean, robust

    with heartbeat(storage, trial_id, cfg.heartbeat_seconds):
        try:
            values = {key: db(suggest, trial, key, spec) for key, spec in cfg.space.items()}
            if on_start is not None:
                on_start(values, bool(trial.user_attrs.get(fidelity.BASELINE)))
            trial_params = with_overrides(
                params, {**values, "train.epochs": objective.budget, "train.patience": 0}
            )

            def report_epoch(row: dict[str, float]) -> None:
                epoch = int(row["epoch"])
                robust_now = row.get(objective.robust_key) if objective.needs_robust else None
                curve.append([epoch, row["val_accuracy"], robust_now])
                if right:
                    keep_right(epoch, robust_now)
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
                    on_scored=lambda _epoch, views: (right.clear(), right.update(views)),
                )
            state, value = TrialState.COMPLETE, objective.value(*scored())
            db(trial.set_user_attr, "best_epoch", result.best_epoch)
        except optuna.TrialPruned as e:
            state = TrialState.PRUNED
            db(trial.set_user_attr, "pruned", str(e))
        except TrainingDiverged as e:  # a bad region, not a broken trial: pruned, so the sampler learns it
            state = TrialState.PRUNED
            # its reason only: the checkpoint it names lived in the trial's temporary folder, now gone
            db(trial.set_user_attr, "diverged", e.reason[:1000])
        except Exception as e:  # out of memory, a bad value: recorded FAIL, and the study goes on
            db(trial.set_user_attr, "error", redact(f"{type(e).__name__}: {e}")[:1000])
        except KeyboardInterrupt:
            db(trial.set_user_attr, "error", "interrupted (Ctrl-C)")
            interrupted = True
        db(trial.set_user_attr, "seconds", round(time.perf_counter() - started, 2))
    db(study.tell, trial, value if state == TrialState.COMPLETE else None, state=state)
    if interrupted:
        raise KeyboardInterrupt
    return db(storage.get_trial, trial_id)


def _record(epoch: int, views: dict[str, Any]) -> dict[str, Any]:
    n = len(next(iter(views.values())))
    return {"epoch": epoch, "n": n, "views": {name: fidelity.pack(v.numpy()) for name, v in views.items()}}


def suggest(trial: optuna.Trial, key: str, spec: SearchParam) -> Any:
    """Optuna's value for one ``tune.space`` entry; ``key`` (a dotted params key, an index into a range
    included: ``train.robust.noise.snr_db.0``) is the parameter's name in the study."""
    if spec.kind == "categorical":
        return trial.suggest_categorical(key, spec.choices)
    if spec.kind == "int":
        step = int(spec.step) if spec.step else 1
        return trial.suggest_int(key, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)


@contextlib.contextmanager
def heartbeat(storage: BaseStorage, trial_id: int, interval: float) -> Iterator[None]:
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
        # a beat stuck in the database must not hold the finished trial back from being told
        thread.join(timeout=interval + 1)
