"""One run tree: a pipeline run's parent MLflow run, and each step's run nested under it.

MLflow's own variable ``MLFLOW_RUN_ID`` names the run a process logs to. Kubeflow's MLflow integration
(KEP-12862) sets it in every task's container to the task's nested run, under one parent run per pipeline
run; steelflow's launchers set it to a parent run they open (:func:`pipeline_run`): ``steelflow repro``
(``dvc repro`` under it), ``steelflow pipeline run --local`` and ``steelflow pipeline submit``. A step
that opens a run reads it (:func:`place`):

- the named run is a nested run that no steelflow step has claimed yet (the task run Kubeflow's
  integration made for this task): the step logs into it;
- any other run (a parent): the step's run is created as its child, in the parent's experiment.

Without the variable every run is top-level, as before. Steps that open no run of their own (ingest,
validate, split, corrupt, gate, evaluate and register, which add to the training run) get a small one
under a parent (:func:`steelflow.runs.step_run`), so the tree has a child per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from steelflow import redact
from steelflow.config import MlflowConfig

PARENT_ENV = "MLFLOW_RUN_ID"  # MLflow's own variable; Kubeflow's integration sets it per task
PARENT_TAG = "mlflow.parentRunId"  # what makes a run nested in MLflow's UI
STEP_TAG = "steelflow.step"
KIND_TAG = "steelflow.kind"  # "pipeline" on a parent run steelflow opened


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a new run goes under ``MLFLOW_RUN_ID``: into ``adopt`` (a task run made for this step), or a
    new child of ``parent`` in ``experiment_id``."""

    experiment_id: str
    parent: str | None = None
    adopt: str | None = None


def parent_id() -> str | None:
    """``MLFLOW_RUN_ID``, when set (blank counts as unset)."""
    return os.environ.get(PARENT_ENV, "").strip() or None


@contextlib.contextmanager
def parent_kept() -> Iterator[None]:
    """``MLFLOW_RUN_ID`` as it was before the block: ``mlflow.end_run`` unsets it, and the next step run
    in this process (a test, a notebook) must still find its parent."""
    saved = os.environ.get(PARENT_ENV)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[PARENT_ENV] = saved


def place(client: Any, run_id: str) -> Place:
    """Where a step's new run goes, given the run ``MLFLOW_RUN_ID`` names (see the module's rules)."""
    run = client.get_run(run_id)
    tags = run.data.tags
    if tags.get(PARENT_TAG) and STEP_TAG not in tags and tags.get(KIND_TAG) != "pipeline":
        return Place(run.info.experiment_id, adopt=run_id)
    return Place(run.info.experiment_id, parent=run_id)


@contextlib.contextmanager
def pipeline_run(
    cfg: MlflowConfig, tree: dict[str, Any], name: str, tags: dict[str, str] | None = None
) -> Iterator[str]:
    """A parent run for one pipeline run: opened with the params that shape the model and the whole tree
    as ``params.yaml``, ``MLFLOW_RUN_ID`` set to it inside (every step's run nests under it), ended
    FINISHED, or FAILED when the block raises (KILLED on Ctrl-C). Yields its id."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    from steelflow.tracking.lineage import identity_tags, lineage_params
    from steelflow.tracking.retry import RetryBudget, scoped_environ
    from steelflow.tracking.tracker import ensure_experiment, run_params, tracking_uri

    budget = RetryBudget.of(cfg)
    client = MlflowClient(tracking_uri(cfg))
    experiment = budget.call(ensure_experiment, client, cfg.experiment)
    run_tags = redact.tree({**identity_tags(tree), KIND_TAG: "pipeline", **(tags or {})})
    run = budget.call(client.create_run, experiment, run_name=redact.redact(name), tags=run_tags)
    run_id = run.info.run_id
    flat = redact.tree(run_params(lineage_params(tree)))
    params = [Param(k, str(v)[:6000]) for k, v in flat.items()]
    for start in range(0, len(params), 100):  # the server takes 100 params a request
        budget.call(client.log_batch, run_id, params=params[start : start + 100])
    budget.call(client.log_dict, run_id, redact.tree(tree), "params.yaml")
    status = "FAILED"
    try:
        with scoped_environ({PARENT_ENV: run_id}):
            yield run_id
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        with budget.requests(), contextlib.suppress(Exception):  # the block's own error is the news
            client.set_terminated(run_id, status)


class StepRun:
    """A step's small run, written through the client only: it never becomes MLflow's active run, so the
    step may still open (or re-open) a run of its own inside it (evaluate re-opens the training run)."""

    def __init__(self, client: Any, run_id: str):
        self._client, self.run_id = client, run_id

    def log_metrics(self, metrics: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(k.replace(":", "_"), float(v), now, 0) for k, v in metrics.items()]
        for start in range(0, len(rows), 1000):  # the server takes 1000 metrics a request
            self._client.log_batch(self.run_id, metrics=rows[start : start + 1000])

    def log_text(self, text: str, artifact_file: str) -> None:
        self._client.log_text(self.run_id, text, artifact_file)


@contextlib.contextmanager
def step_run(cfg: MlflowConfig, name: str, tags: dict[str, str], parent: str) -> Iterator[StepRun]:
    """A run for a step that opens none, under ``parent`` (or into it: :func:`place`), ended FINISHED, or
    FAILED when the block raises. A task run of Kubeflow's integration is left for Kubeflow to end."""
    from steelflow.tracking.tracker import GuardedClient

    client = GuardedClient(cfg)  # a server that stays away: exit 10, in bounded time
    where = place(client, parent)
    tags = redact.tree(tags)
    if where.adopt:
        run_id = where.adopt
        for key, value in {**tags, "mlflow.runName": name}.items():
            client.set_tag(run_id, key, value)
    else:
        tags = {**tags, PARENT_TAG: parent}
        run_id = client.create_run(where.experiment_id, run_name=name, tags=tags).info.run_id
    status = "FAILED"
    try:
        yield StepRun(client, run_id)
        status = "FINISHED"
    finally:
        if not where.adopt:
            with contextlib.suppress(Exception):  # the step's own error is the news
                client.set_terminated(run_id, status)


def children(client: Any, parent: str) -> list[Any]:
    """The runs nested directly under ``parent`` (any experiment it shares), oldest first."""
    experiment = client.get_run(parent).info.experiment_id
    found = client.search_runs(
        [experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'", max_results=1000
    )
    return sorted(found, key=lambda r: r.info.start_time)
