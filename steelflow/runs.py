"""Steps with their MLflow run: what `steelflow train` / `evaluate` / `reproduce` call (and, later, the
Kubeflow components), so that no adapter holds tracking logic.

``train`` opens a run, trains, logs the history, metrics, checkpoint and model, and remembers the run id in
``metrics/mlflow_run_id.txt``; ``evaluate`` re-opens that run and logs the evaluation into it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from steelflow import config, io, paths
from steelflow.config import Params


def tracker(p: Params, step: str, enabled: bool, run_id: str | None = None) -> Any:
    """An MLflow run for this step (a no-op tracker when ``enabled`` is false)."""
    from steelflow.tracking import MlflowTracker, NullTracker, run_tags

    if not enabled:
        return contextlib.nullcontext(NullTracker())
    from steelflow.inference import pick_device

    tree = p.raw()
    return MlflowTracker(
        p.mlflow, step, tree, run_tags(tree, pick_device(p.train.device), step), run_id=run_id
    )


def train(p: Params, track: bool = True, resume: bool = False) -> Any:
    """Train with ``p`` (plus tune's best values when train.use_tuned), tracked in MLflow."""
    from steelflow.steps.train import train as run

    p = config.with_tuned(p, paths.BEST_PARAMS)
    with tracker(p, "train", track) as t:
        result = run(p.model, p.train, resume=resume, tracker=t)
        if track:
            from steelflow.inference import load_trained

            model, _ = load_trained(paths.MODEL)
            for artifact in (paths.TRAIN_METRICS, paths.TRAIN_HISTORY, paths.CHECKPOINT):
                t.log_artifact(artifact, "training")
            t.log_model(model, example_input(p))
            if t.run_id:
                io.write_text(paths.MLFLOW_RUN, t.run_id + "\n")
    return result


def evaluate(p: Params, track: bool = True) -> Any:
    """Evaluate the trained model, logged into the run of the training it scores."""
    from steelflow.steps.evaluate import evaluate as run

    last = paths.MLFLOW_RUN.read_text().strip() if paths.MLFLOW_RUN.is_file() else None
    with tracker(p, "evaluate", track, run_id=last) as t:
        return run(p.evaluate, p.corrupt, device=p.train.device, tracker=t)


def example_input(p: Params) -> Any:
    import numpy as np

    # Batch 2, not 1: MLflow's torch.export format keeps a size-1 batch dimension static.
    return np.zeros((2, 1, p.data.cache_size, p.data.cache_size), dtype=np.float32)
