"""Steps with their MLflow run: what `steelflow train` / `evaluate` / `reproduce` and the Kubeflow
``train`` / ``evaluate`` components call, so that no adapter holds tracking logic.

``train`` opens a run named ``train <variant> lr=<lr> <short sha>``, logs the params that shape the model
(data, split, model, train, with tune's values applied) and the whole tree as ``params.yaml``, the datasets
it read, the history, metrics and model, and remembers the run id in ``metrics/mlflow_run_id.txt``;
``evaluate`` re-opens that run and adds the evaluation (metrics, the test and corrupted datasets, reports)
without touching the run's name, params or identity tags.

A training that did not finish (killed, or cut off from the tracking server) leaves its run id beside the
checkpoint (``models/checkpoint_run_id.txt``, written before the first epoch): ``train --resume`` continues
that same run, its epoch metrics going on from the checkpoint's epoch, and closes it; a fresh ``train``
ends it KILLED, with a ``steelflow.ended`` tag saying why, before it opens a new one. No run this project
opened stays RUNNING once a later ``train`` has reached the server.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from steelflow import atomic, config, paths
from steelflow.config import Params


def tracker(p: Params, step: str, enabled: bool, run_id: str | None = None, resumed: bool = False) -> Any:
    """An MLflow run for this step (a no-op tracker when ``enabled`` is false). ``run_id`` re-opens a run;
    ``resumed``: it is the run of an interrupted training, whose params document was never uploaded."""
    from steelflow.tracking import MlflowTracker, NullTracker, lineage_params, run_name, run_tags

    if not enabled:
        return contextlib.nullcontext(NullTracker())
    from steelflow.inference import pick_device

    tree = p.raw()
    return MlflowTracker(
        p.mlflow,
        run_name(tree, step),
        lineage_params(tree),
        run_tags(tree, pick_device(p.train.device), step),
        run_id=run_id,
        params_document=tree if run_id is None or resumed else None,
    )


def train(p: Params, track: bool = True, resume: bool = False) -> Any:
    """Train with ``p`` (plus tune's best values when train.use_tuned), tracked in MLflow."""
    from steelflow.training.loop import train as run

    p = config.with_tuned(p, paths.BEST_PARAMS)
    interrupted = _interrupted_run(p, track, resume)
    with tracker(p, "train", track, run_id=interrupted, resumed=interrupted is not None) as t:
        if t.run_id:  # before the first epoch: the run a killed training leaves, for --resume
            atomic.write_text(paths.CHECKPOINT_RUN, t.run_id + "\n")
        splits = paths.CACHE / "splits"
        t.log_datasets(
            [
                (name, splits / f"{name}.npz", context)
                for name, context in TRAINING_SETS
                if (splits / f"{name}.npz").is_file()
            ]
        )
        result = run(p.model, p.train, resume=resume, tracker=t)
        if track:
            from steelflow.inference import load_trained

            model, _ = load_trained(paths.MODEL)
            if t.run_id:  # `dvc exp show` lists it beside the metrics: experiment → MLflow run
                summary = json.loads(paths.TRAIN_METRICS.read_text())
                atomic.write_json(paths.TRAIN_METRICS, {**summary, "mlflow_run_id": t.run_id})
            for artifact in (paths.TRAIN_METRICS, paths.TRAIN_HISTORY):
                t.log_artifact(artifact, "training")
            if p.mlflow.log_checkpoints:
                t.log_artifact(paths.CHECKPOINT, "training")
            t.log_model(model, example_input(p))
            if t.run_id:
                atomic.write_text(paths.MLFLOW_RUN, t.run_id + "\n")
    if track:
        paths.CHECKPOINT_RUN.unlink(missing_ok=True)  # the run closed: nothing left to continue or end
    return result


def _interrupted_run(p: Params, track: bool, resume: bool) -> str | None:
    """The run of a training that did not finish, when ``--resume`` continues it (there is a checkpoint
    to continue from); otherwise that run, if still RUNNING, is ended KILLED and None is returned."""
    recorded = paths.CHECKPOINT_RUN.read_text().strip() if paths.CHECKPOINT_RUN.is_file() else ""
    if not recorded:
        return None
    if not track:  # nothing to reach; a fresh start makes the record stale
        if not resume:
            paths.CHECKPOINT_RUN.unlink()
        return None
    from steelflow.tracking import end_interrupted

    return end_interrupted(p.mlflow, recorded, resume=resume and paths.CHECKPOINT.is_file())


TRAINING_SETS = (("train", "training"), ("val", "validation"))


def evaluate(p: Params, track: bool = True) -> Any:
    """Evaluate the trained model, logged into the run of the training it scores."""
    from steelflow.steps.evaluate import evaluate as run
    from steelflow.steps.evaluate import evaluation_sets

    last = paths.MLFLOW_RUN.read_text().strip() if paths.MLFLOW_RUN.is_file() else None
    with tracker(p, "evaluate", track, run_id=last) as t:
        sets = evaluation_sets(p.corrupt)
        t.log_datasets([(name, path, "evaluation") for name, path in sets.items() if path.is_file()])
        return run(p.evaluate, p.corrupt, device=p.train.device, tracker=t)


def example_input(p: Params, cache_dir: Any = None) -> Any:
    """Two real images of the validation split (else the training split) as the model takes them: float
    (N, C, S, S) in [0, 1]. MLflow infers the logged model's signature from it, so it must look like data;
    all zeros would say nothing about channels or range. Batch 2, not 1: MLflow's torch.export format
    keeps a size-1 batch dimension static."""
    import numpy as np

    from steelflow.data import cache

    splits = paths.CACHE / "splits" if cache_dir is None else cache_dir
    for name in ("val", "train"):
        path = splits / f"{name}.npz"
        if path.is_file():
            images = cache.load(path).images[:2]
            if len(images):
                return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    return np.zeros((2, 1, p.data.cache_size, p.data.cache_size), dtype=np.float32)
