"""Step 5, train: fit the model on the cached splits, tracked as one MLflow run.

Reads the decoded cache ``data/cache/splits/{train,val}.npz`` and params sections ``model`` and ``train``
(with tune's best values applied when ``train.use_tuned`` is on); the whole tree is recorded in the run.
Writes ``models/model.pt``, ``metrics/train.json``, ``metrics/train_history.csv`` (the loop:
:mod:`steelflow.training.loop`) and ``metrics/mlflow_run_id.txt``.

The run is named ``train <variant> lr=<lr> <short sha>``; it logs the params that shape the model (data,
split, model, train) and the whole tree as ``params.yaml``, the datasets it read, the history, metrics and
model. A training that did not finish (killed, or cut off from the tracking server) leaves its run id beside
the checkpoint (``models/checkpoint_run_id.txt``, written before the first epoch): ``train --resume``
continues that same run, its epoch metrics going on from the checkpoint's epoch, and closes it; a fresh
``train`` ends it KILLED, with a ``steelflow.ended`` tag saying why, before it opens a new one.
"""

from __future__ import annotations

import json
from typing import Any

from steelflow import atomic, config, paths
from steelflow.config import Params
from steelflow.inference import load_trained
from steelflow.runs import example_input, tracker
from steelflow.step import Option, Produces, Step
from steelflow.tracking import end_interrupted
from steelflow.training.loop import TrainResult
from steelflow.training.loop import train as fit

TRAINING_SETS = (("train", "training"), ("val", "validation"))


def train(p: Params, track: bool = True, resume: bool = False) -> Any:
    """Train with ``p`` (plus tune's best values when train.use_tuned), tracked in MLflow."""
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
        result = fit(p.model, p.train, resume=resume, tracker=t)
        if track:
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
    return end_interrupted(p.mlflow, recorded, resume=resume and paths.CHECKPOINT.is_file())


def summary(result: TrainResult) -> list[str]:
    return [
        f"train: best val accuracy {result.best_val_accuracy:.3f} at epoch {result.best_epoch}/"
        f"{result.epochs_run} on {result.device}, {result.images_per_s:.1f} images/s → {paths.MODEL}"
    ]


STEP = Step(
    "train",
    run=train,
    help="Train the model on the cached splits → models/model.pt, metrics/train.json (tracked in MLflow).",
    sections=("params",),  # the whole tree: the MLflow run records it (params.yaml, lineage params)
    inputs=(paths.CACHE_SPLITS,),
    params=("model", "train", paths.TUNED),
    outs=(paths.MODEL, paths.MLFLOW_RUN, paths.TRAIN_HISTORY),
    metrics=(paths.TRAIN_METRICS,),
    notes={
        paths.TUNED: "tune's values as params, not a plain dependency: `dvc exp show` and `dvc params "
        "diff` then show what training used (applied when train.use_tuned is true)",
        str(paths.MLFLOW_RUN): "cached, so an experiment's commit leads to its MLflow run",
    },
    options=(
        Option("resume", bool, False, "continue from models/checkpoint.pt", flag="--resume/--no-resume"),
        Option("track", bool, True, "log the run to MLflow", flag="--track/--no-track", kfp=True),
    ),
    summary=summary,
    consumes=("manifest", "splits", "tuning"),
    produces=(Produces("model", "Model"), Produces("metrics", "Metrics", metrics=paths.TRAIN_METRICS)),
    gpu=True,
    retries=True,
)
