"""The tune step's MLflow side: one parent run per study, one nested run per trial.

The parent run is created on the first ``steelflow tune`` of a study (:class:`ParentRun`) and reused while
the study continues; it carries the study's summary (:attr:`steelflow.tuning.result.TuneResult.metrics`),
best_params.yaml, trials.csv and the plots. Each finished trial becomes a child run (:class:`TrialLogger`);
trials whose log was lost (a dead worker) are logged at the end (:func:`log_missing_trials`). Every call
to the server goes through :class:`steelflow.tracking.GuardedClient`: a server that stays away is exit 10,
in bounded time. MLflow's own classes are imported where they are used: a study run without tracking never
loads MLflow.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from steelflow import paths
from steelflow.config import Params
from steelflow.redact import hide_password, redact
from steelflow.tracking import GuardedClient, ensure_experiment, run_params, run_tags
from steelflow.tracking import tree as run_tree
from steelflow.tuning import objective as fidelity
from steelflow.tuning.result import TuneResult
from steelflow.tuning.study import FINISHED, StudyRef, load_study, tune_cfg


class ParentRun:
    """The study's MLflow run: created on the first `steelflow tune`, reused while the study continues."""

    def __init__(self, params: Params, ref: StudyRef):
        self._client = GuardedClient(params.mlflow)  # a server that stays away: exit 10, in bounded time
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
            "optuna.storage": hide_password(ref.storage_url),
        }
        tags.pop("device", None)  # trials may run anywhere; each trial's run says where
        self.run_id = self._create(exp_id, f"tune {ref.name}", tags)
        from mlflow.entities import Param

        flat = run_params({"tune": tree["tune"], "model": tree["model"], "train": tree["train"]})
        self._client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in flat.items()])
        self.ref = dataclasses.replace(ref, mlflow_parent_run=self.run_id)

    def _create(self, exp_id: str, name: str, tags: dict[str, str]) -> str:
        """The study's run: top-level, or under ``MLFLOW_RUN_ID`` (:mod:`steelflow.tracking.tree`)."""
        parent = run_tree.parent_id()
        if parent is not None:
            where = run_tree.place(self._client, parent)
            if where.adopt:  # the task run Kubeflow's integration made for this step
                self._client.set_tag(where.adopt, "mlflow.runName", name)
                for key, value in tags.items():
                    self._client.set_tag(where.adopt, key, value)
                return where.adopt
            exp_id, tags = where.experiment_id, {**tags, run_tree.PARENT_TAG: where.parent}
        return self._client.create_run(exp_id, run_name=name, tags=tags).info.run_id

    def close(self, result: TuneResult | None, out_dir: Path, ok: bool) -> None:
        from mlflow.entities import Metric

        if result is not None:
            log_missing_trials(self._params, self.ref)
            now = int(time.time() * 1000)
            metrics = result.metrics
            self._client.log_batch(
                self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
            )
            for artifact in (out_dir / paths.BEST_PARAMS.name, out_dir / paths.TRIALS_CSV.name):
                self._client.log_artifact(self.run_id, str(artifact), "tuning")
            self._client.log_artifacts(self.run_id, str(out_dir / paths.TUNING_PLOTS.name), "tuning/plots")
        self._client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")


class TrialLogger:
    """Logs each finished trial as a child of the study's MLflow run (params, intermediate values, state)."""

    def __init__(self, params: Params, ref: StudyRef):
        self._client = GuardedClient(params.mlflow)
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
            for key in ("error", "pruned", "diverged", "worker"):
                if key in t.user_attrs:
                    tags[f"optuna.{key}"] = redact(str(t.user_attrs[key]))
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
            print(redact(f"tune: could not log trial {t.number} to MLflow ({e}); it is retried at the end"))

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
    return TrialLogger(params, ref).log_missing(load_study(ref, tune_cfg(params), worker=0))
