"""A pipeline run's parent run in MLflow, and the small run of a step that opens none of its own, under it
(the rules: :mod:`steelflow.tracking.tree`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from steelflow import redact
from steelflow.config import MlflowConfig
from steelflow.tracking.lineage import identity_tags, lineage_params
from steelflow.tracking.retry import RetryBudget, scoped_environ
from steelflow.tracking.tracker import (
    GuardedClient,
    ensure_experiment,
    metric_key,
    run_params,
    tracking_uri,
)
from steelflow.tracking.tree import KIND_TAG, PARENT_ENV, PARENT_TAG, place


@contextlib.contextmanager
def pipeline_run(
    cfg: MlflowConfig, tree: dict[str, Any], name: str, tags: dict[str, str] | None = None
) -> Iterator[str]:
    """A parent run for one pipeline run: opened with the params that shape the model and the whole tree
    as ``params.yaml``, ``MLFLOW_RUN_ID`` set to it inside (every step's run nests under it), ended
    FINISHED, or FAILED when the block raises (KILLED on Ctrl-C). Yields its id."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    guarded = GuardedClient(cfg)  # a server that stays away: exit 10, in bounded time, before dvc starts
    experiment = ensure_experiment(guarded, cfg.experiment)
    run_tags = redact.tree({**identity_tags(tree), KIND_TAG: "pipeline", **(tags or {})})
    run_id = guarded.create_run(experiment, run_name=redact.redact(name), tags=run_tags).info.run_id
    flat = redact.tree(run_params(lineage_params(tree)))
    params = [Param(k, str(v)[:6000]) for k, v in flat.items()]
    for start in range(0, len(params), 100):  # the server takes 100 params a request
        guarded.log_batch(run_id, params=params[start : start + 100])
    guarded.log_dict(run_id, redact.tree(tree), "params.yaml")
    budget, client = RetryBudget.of(cfg), MlflowClient(tracking_uri(cfg))  # the closing call: one try
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
        rows = [Metric(metric_key(k), float(v), now, 0) for k, v in metrics.items()]
        for start in range(0, len(rows), 1000):  # the server takes 1000 metrics a request
            self._client.log_batch(self.run_id, metrics=rows[start : start + 1000])

    def log_text(self, text: str, artifact_file: str) -> None:
        self._client.log_text(self.run_id, text, artifact_file)


@contextlib.contextmanager
def child_run(cfg: MlflowConfig, name: str, tags: dict[str, str], parent: str) -> Iterator[StepRun]:
    """A run for a step that opens none, under ``parent`` (or into it: :func:`place`), ended FINISHED, or
    FAILED when the block raises. A task run of Kubeflow's integration is left for Kubeflow to end."""
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
