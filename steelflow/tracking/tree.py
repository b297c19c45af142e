"""One run tree: a pipeline run's parent MLflow run, and each step's run nested under it.

MLflow's own variable ``MLFLOW_RUN_ID`` names the run a process logs to. Kubeflow's MLflow integration
(KEP-12862) sets it in every task's container to the task's nested run, under one parent run per pipeline
run; steelflow's launchers set it to a parent run they open
(:func:`steelflow.tracking.pipeline.pipeline_run`): ``steelflow repro`` (``dvc repro`` under it) and
``steelflow pipeline run --local``. (``steelflow pipeline submit`` opens none: on a cluster nothing would
end it when the run ends; Kubeflow's integration makes the parent there.) A step that opens a run reads it
(:func:`place`):

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


def children(client: Any, parent: str) -> list[Any]:
    """The runs nested directly under ``parent`` (any experiment it shares), oldest first."""
    experiment = client.get_run(parent).info.experiment_id
    found = client.search_runs(
        [experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'", max_results=1000
    )
    return sorted(found, key=lambda r: r.info.start_time)
