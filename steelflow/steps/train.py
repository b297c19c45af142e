"""Step 5, train: fit the model on the cached splits, tracked as one MLflow run.

Reads the cache's shard sets ``data/cache/splits/{train,val}`` and params sections ``model`` and ``train``
(with tune's best values applied when ``train.use_tuned`` is on); the whole tree is recorded in the run.
Writes ``models/model.pt``, ``metrics/train.json``, ``metrics/train_history.csv`` (the loop:
:mod:`steelflow.training.loop`) and ``metrics/mlflow_run_id.txt``.

The run is named ``train <variant> lr=<lr> <short sha>``; it logs the params that shape the model (data,
split, model, train) and the whole tree as ``params.yaml``, the datasets it read, the history, metrics and
model. A training that did not finish (killed, or cut off from the tracking server) leaves its run id beside
the checkpoint (``models/checkpoint_run_id.txt``, written before the first epoch): ``train --resume``
continues that same run, its epoch metrics going on from the checkpoint's epoch, and closes it; a fresh
``train`` ends it KILLED, with a ``steelflow.ended`` tag saying why, before it opens a new one.

``--nproc N`` (or ``train.distributed.nproc``) trains data-parallel on N processes of this machine: the
command starts ``torchrun`` with the one command line a Kubeflow TrainJob's pods run
(:mod:`steelflow.training.torchrun`), each process being this same step. Rank 0 does all of the above;
the other ranks train and write nothing. A rank that dies fails the whole job with
:class:`~steelflow.errors.TrainingFailed` naming it; ``--resume`` continues from the last checkpoint, under
any number of processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from steelflow import atomic, config, console, paths, progress
from steelflow.config import Params
from steelflow.data import cache
from steelflow.errors import TrainingFailed
from steelflow.inference import load_trained
from steelflow.runs import example_input, tracker
from steelflow.step import Option, Produces, Step
from steelflow.tracking import end_interrupted
from steelflow.training import distributed, torchrun
from steelflow.training.loop import TrainResult
from steelflow.training.loop import train as fit

TRAINING_SETS = (("train", "training"), ("val", "validation"))


def train(p: Params, track: bool = True, resume: bool = False, nproc: int | None = None) -> Any:
    """Train with ``p`` (plus tune's best values when train.use_tuned), tracked in MLflow; on ``nproc``
    (default ``train.distributed.nproc``) processes."""
    nproc = nproc or p.train.distributed.nproc
    if nproc > 1 and not distributed.launched():
        return _launch(p, nproc, track, resume)
    tuned = config.with_tuned(p, paths.BEST_PARAMS)
    if distributed.launched() and int(os.environ["RANK"]) > 0:  # a helper rank: trains, writes nothing
        return fit(tuned.model, tuned.train, resume=resume)
    if changed := config.changed_values(p, tuned):  # never silently: a tuned value beats params and --set
        progress.say(f"train.use_tuned: {paths.BEST_PARAMS} replaces " + "; ".join(changed))
    p = tuned
    interrupted = _interrupted_run(p, track, resume)
    with tracker(p, "train", track, run_id=interrupted, resumed=interrupted is not None) as t:
        if t.run_id:  # before the first epoch: the run a killed training leaves, for --resume
            atomic.write_text(paths.CHECKPOINT_RUN, t.run_id + "\n")
        sets = [(name, cache.split_path(paths.CACHE, name), context) for name, context in TRAINING_SETS]
        t.log_datasets([(name, path, context) for name, path, context in sets if cache.exists(path)])
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


def _launch(p: Params, nproc: int, track: bool, resume: bool) -> TrainResult:
    """Run this step on ``nproc`` local processes under torchrun; the summary rank 0 wrote."""
    args = ["--track" if track else "--no-track", *(["--resume"] if resume else [])]
    with tempfile.TemporaryDirectory(prefix="steelflow-train-") as tmp:
        params_file = Path(tmp) / "params.yaml"  # the effective params: params.yaml with --set applied
        params_file.write_text(yaml.safe_dump(p.raw(), sort_keys=False))
        command = torchrun.train_command(str(params_file), args, nproc=nproc)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(_threads(p, nproc)))}
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        tail = _relay(proc.stderr)
        code = proc.wait()
    if code != 0:
        raise TrainingFailed(
            f"training on {nproc} processes failed: {_failure(tail, code)}; "
            f"`steelflow train --resume` continues from the last checkpoint ({paths.CHECKPOINT})"
        )
    summary = json.loads(paths.TRAIN_METRICS.read_text())
    fields = set(TrainResult.__dataclass_fields__) - {"history"}
    return TrainResult(**{k: v for k, v in summary.items() if k in fields})


def _threads(p: Params, nproc: int) -> int:
    """CPU threads per process: ``train.threads``, else this machine's cores shared among the processes."""
    return p.train.threads or max(1, (os.cpu_count() or 1) // nproc)


def _relay(stream: Any) -> list[str]:
    """Copy the processes' stderr through as it comes; keep its last lines for the error. torchrun's own
    traceback (its agent reporting a failed rank) is held back: the error names the rank (``--debug``
    shows it)."""
    tail: list[str] = []
    held: list[str] = []
    for line in stream:
        tail = [*tail[-199:], line]
        if held or (line.startswith("Traceback (most recent call last)") and not console.state["debug"]):
            held.append(line)
            continue
        sys.stderr.write(line)
    if held and not any("torch.distributed.elastic" in line for line in held):
        sys.stderr.writelines(held)  # not torchrun's: a rank's own
    return tail


def _failure(tail: list[str], code: int) -> str:
    """Which rank failed and how, from torchrun's report (``rank: 1 (local_rank: 1)``, ``exitcode: -9``)."""
    text = "".join(tail)
    text = text[text.rfind("Root Cause") :] if "Root Cause" in text else text  # the first to fail
    rank = re.search(r"rank\s*:\s*(\d+)", text)
    exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", text)
    if rank and exit_code:
        n = int(exit_code.group(1))
        how = f"killed by signal {-n}" if n < 0 else f"exit code {n}"
        return f"rank {rank.group(1)} ended ({how})"
    return f"torchrun exited with code {code}"


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
        f"train: best {_kept(result)} at epoch {result.best_epoch}/{result.epochs_run} on "
        f"{result.device}, {result.images_per_s:.1f} images/s → {paths.MODEL}"
    ]


def _kept(result: TrainResult) -> str:
    clean = f"val accuracy {result.best_val_accuracy:.3f}"
    if result.keep == "val_accuracy" or result.best_score is None:
        return clean
    return f"{result.keep} {result.best_score:.3f} ({clean})"


STEP = Step(
    "train",
    run=train,
    tracks=True,
    help="Train the model on the cached splits → models/model.pt, metrics/train.json (tracked in MLflow).",
    sections=("params",),  # the whole tree: the MLflow run records it (params.yaml, lineage params)
    inputs=(paths.CACHE_SPLITS,),
    params=("model", "train", paths.TUNED),
    outs=(paths.MODEL, paths.MLFLOW_RUN, paths.TRAIN_HISTORY, paths.TRAIN_METRICS),
    notes={
        paths.TUNED: "tune's values as params, not a plain dependency: `dvc exp show` and `dvc params "
        "diff` then show what training used (applied when train.use_tuned is true)",
        str(paths.MLFLOW_RUN): "cached, so an experiment's commit leads to its MLflow run",
    },
    options=(
        Option("resume", bool, False, "continue from models/checkpoint.pt", flag="--resume/--no-resume"),
        Option("track", bool, True, "log the run to MLflow", flag="--track/--no-track", kfp=True),
        Option("nproc", int, 0, "processes to train on, data-parallel (0: train.distributed.nproc)"),
    ),
    summary=summary,
    consumes=("manifest", "splits", "tuning"),
    produces=(Produces("model", "Model"), Produces("metrics", "Metrics", metrics=paths.TRAIN_METRICS)),
    gpu=True,
    retries=True,
)
