"""The training loop: fit a CASI-Net variant on the cached training split, early-stopped on validation.

Reads params sections ``model`` and ``train``, and the cache's shard sets ``data/cache/splits/{train,val}``.
Writes ``models/model.pt`` (the best epoch's weights + what rebuilds the network), ``metrics/train.json``
and ``metrics/train_history.csv`` (one row per epoch), and after every epoch ``models/checkpoint.pt``
(atomically), from which ``--resume`` continues a killed run to the same result.

Paper §4.3: SGD with momentum 0.9, weight decay 1e-3, batch 16. Reproducible on the CPU: the order,
augmentation and dropout of epoch ``e`` are seeded by (``train.seed``, ``e``), so a resumed run replays
exactly what an uninterrupted one does. A NaN or infinite loss stops the run with
:class:`TrainingDiverged` and leaves the last good checkpoint in place.

The epoch's order and its global batches come from :mod:`steelflow.data.stream`, and reach the model from
memory or streamed by DataLoader workers (``train.loader``): the same batches either way. Under torchrun
(:mod:`steelflow.training.distributed`) each rank trains on its part of every global batch; the loss of a
batch is its sum over the ranks divided by the global batch size, so N processes take the steps one does
(``train.robust.consistency``'s Jensen–Shannon term too: :mod:`steelflow.training.consistency`).
Rank 0 alone echoes, checkpoints and writes; a checkpoint resumes under any number of processes.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from steelflow import atomic, paths
from steelflow.config import ModelConfig, RobustConfig, TrainConfig
from steelflow.data import augment as augmentation
from steelflow.data import stream
from steelflow.errors import ConfigError, DataError, TrainingDiverged
from steelflow.inference import (
    as_float,
    autocast,
    autocast_dtype,
    pick_device,
    save_trained,
    to_tensor,
)
from steelflow.models import ModelMeta, create_model
from steelflow.progress import echo, track
from steelflow.tracking import NullTracker, Tracker
from steelflow.training import consistency, distributed, validation
from steelflow.training.checkpoint import Checkpoint, State, epoch_metrics, write_history
from steelflow.training.distributed import World

_EPOCH_SEED_STRIDE = 1_000_003  # keeps (seed, epoch) pairs from colliding


@dataclass
class TrainResult:
    best_epoch: int  # the epoch kept: the best train.keep score
    best_val_accuracy: float  # clean validation accuracy at best_epoch
    epochs_run: int
    stopped_early: bool
    seconds: float
    images_per_s: float
    device: str
    keep: str = "val_accuracy"  # train.keep: the score the kept epoch is best on
    best_score: float | None = None  # its value at best_epoch
    history: list[dict[str, float]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("history")
        return out


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    cache_dir: Path = paths.CACHE / "splits",
    model_path: Path = paths.MODEL,
    checkpoint_path: Path = paths.CHECKPOINT,
    metrics_path: Path = paths.TRAIN_METRICS,
    history_path: Path = paths.TRAIN_HISTORY,
    resume: bool = False,
    tracker: Tracker | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    robust_val: RobustConfig | None = None,
    robust_val_epochs: frozenset[int] | None = None,
    on_scored: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
) -> TrainResult:
    """Train, checkpointing every epoch; returns the summary also written to ``metrics_path``.

    ``on_epoch`` sees each epoch's history row after its checkpoint is written; tuning uses it to report
    validation accuracy to Optuna and to stop a trial the pruner gives up on (by raising). With
    ``robust_val`` each row also holds the validation accuracy under each of those families
    (``val_robust_<family>``, ``val_robust_worst``, ``val_robust_mean``): tuning's robust objective, at
    the epochs in ``robust_val_epochs`` (all when None; the score costs a validation pass per family).
    ``on_scored(epoch, correct)`` sees, before ``on_epoch``, which validation images the model got right
    (a bool tensor per view: ``clean``, and each family where the row has its score); tuning keeps them
    to test whether a trial's win over the baseline is more than the luck of a few images.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    world, device_name = distributed.join(cfg.distributed.backend, cfg.device)
    try:
        with distributed.peers_named(world):
            return _train(
                model_cfg,
                cfg,
                world,
                pick_device(device_name),
                Path(cache_dir),
                _Outputs(Path(model_path), Path(checkpoint_path), Path(metrics_path), Path(history_path)),
                resume,
                (tracker or NullTracker()) if world.main else NullTracker(),
                on_epoch,
                robust_val,
                robust_val_epochs,
                on_scored,
            )
    finally:
        distributed.leave()


@dataclass(frozen=True)
class _Outputs:
    model: Path
    checkpoint: Path
    metrics: Path
    history: Path


def _train(
    model_cfg,
    cfg,
    world,
    device,
    cache_dir,
    out,
    resume,
    tracker,
    on_epoch,
    robust_val,
    robust_val_epochs,
    on_scored,
) -> TrainResult:
    where = cfg.loader.shards.rstrip("/") if cfg.loader.shards else str(cache_dir)  # a folder, or s3://
    train_set, val_set = (validation.open_set(f"{where}/{name}") for name in ("train", "val"))
    if train_set.classes != val_set.classes:
        raise DataError(f"{cache_dir}: train classes {train_set.classes} differ from val {val_set.classes}")
    validation.check_parts(train_set, cfg, world)
    loader = cfg.loader
    if cfg.keep != "val_accuracy":  # the kept epoch needs the families' score at every epoch
        robust_val, robust_val_epochs = robust_val or cfg.robust, None
    x_val = None
    if on_scored is not None and world.distributed:
        raise ConfigError("tuning's per-image validation scores run in one process")
    if robust_val is not None:
        x_val = to_tensor(val_set.read(np.arange(len(val_set))))
    data = _Data(
        train=stream.source(train_set, device, loader.mode, loader.workers, loader.memory_limit_mb),
        val=stream.source(val_set, device, loader.mode, loader.workers, loader.memory_limit_mb),
        counts=train_set.counts,
        y_val=torch.from_numpy(val_set.labels.astype(np.int64)),
        val_views=validation.robust_views(x_val, robust_val) if robust_val is not None else {},
        x_val=x_val,
        robust_val_epochs=robust_val_epochs,
        on_scored=on_scored,
        world=world,
    )
    run = _build(model_cfg, cfg, train_set.classes, device, world)
    fingerprint = {
        "model": model_cfg.model_dump(),
        # how the batches reach the model and over how many processes does not change the training
        "train": cfg.model_dump(exclude={"device", "threads", "loader", "distributed"}),
        "n_train": len(train_set),
        "n_val": len(val_set),
        "classes": train_set.classes,
    }
    checkpoint = Checkpoint(out.checkpoint, fingerprint)
    state = State(best_state=copy.deepcopy(run.model.state_dict()))
    if resume and checkpoint.path.is_file():
        state = checkpoint.restore(run)
    started = time.perf_counter()
    seen = _epochs(run, data, cfg, state, checkpoint, tracker, on_epoch)
    meta = ModelMeta.of(model_cfg, train_set.classes, (train_set.image_shape or (1,))[-1], cfg.robust.enabled)
    model_path = out.model if world.main else None
    result = _finish(run, state, meta, time.perf_counter() - started, seen, model_path, cfg.keep)
    if world.main:
        atomic.write_json(out.metrics, result.metrics())
        write_history(out.history, state.history)
        tracker.log_metrics(
            {"val/best_accuracy": result.best_val_accuracy, "train/best_epoch": result.best_epoch}
        )
    return result


# --- building: the network and what trains it ------------------------------------------------------


@dataclass
class _Run:
    """The network and everything that trains it, built once per run."""

    model: nn.Module
    step_fn: Callable[[torch.Tensor], torch.Tensor]  # the model, compiled when train.compile
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    loss_fn: nn.Module
    world: World = World()


@dataclass
class _Data:
    """Where the training and validation batches come from, and the robust validation views."""

    train: stream.MemorySource | stream.StreamSource
    val: stream.MemorySource | stream.StreamSource
    counts: list[int]  # training images per shard: what the epoch's order is drawn over
    y_val: torch.Tensor
    val_views: dict[str, torch.Tensor]
    x_val: torch.Tensor | None  # in memory only for tuning's robust views
    robust_val_epochs: frozenset[int] | None
    on_scored: Callable[[int, dict[str, torch.Tensor]], None] | None = None  # per-image correctness
    world: World = World()


def _build(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    classes: list[str],
    device: torch.device,
    world: World = World(),  # noqa: B008 - frozen
) -> _Run:
    """The seeded network on its device and layout, SGD (paper §4.3), the schedule and the AMP scaler;
    under torchrun, with batch norm as ``train.distributed.batchnorm`` says, stepped through DDP."""

    dtype = autocast_dtype(cfg.precision, device)
    # auto = on: channels_last measured 1.2x (64 px) to 1.6x (300 px) faster on the CPU, and is the fast
    # layout for convolutions under CUDA autocast (benchmarks/bench_model.py).
    channels_last = cfg.channels_last != "off"
    torch.manual_seed(cfg.seed)
    try:
        model = create_model(
            model_cfg.variant,
            num_classes=len(classes),
            image_size=model_cfg.image_size,
            dropout=model_cfg.dropout,
            input_norm=model_cfg.input_norm,
            input_norm_sigma=model_cfg.input_norm_sigma,
        ).to(device)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world.distributed and cfg.distributed.batchnorm == "sync":
        model = distributed.sync_batchnorm(model, device)
    stepped = distributed.ddp(model, device) if world.distributed else model
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    return _Run(
        model=model,
        step_fn=torch.compile(stepped) if cfg.compile else stepped,
        optimizer=optimizer,
        scheduler=_scheduler(optimizer, cfg),
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        device=device,
        dtype=dtype,
        channels_last=channels_last,
        loss_fn=nn.CrossEntropyLoss(),
        world=world,
    )


# --- the epoch loop ---------------------------------------------------------------------------------


def _epochs(run, data, cfg, state, checkpoint, tracker, on_epoch) -> int:
    """Every epoch left (from ``state.epoch + 1``), early-stopped; returns the training images seen."""
    seen = 0
    main = data.world.main
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.stopped_early:
            break
        tick = time.perf_counter()
        row, count = _fit_epoch(run, data, cfg, epoch, state, checkpoint.path)
        seen += count
        row |= validation.validation_row(run, data, cfg.batch_size, epoch)
        row["seconds"] = time.perf_counter() - tick
        state.history.append(row)
        tracker.log_metrics(epoch_metrics(row), step=epoch)
        if main:
            echo(
                f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f} accuracy "
                f"{row['train_accuracy']:.3f}, val loss {row['val_loss']:.4f} accuracy "
                f"{row['val_accuracy']:.3f} ({row['seconds']:.1f} s)"
            )
        # With no validation split (split.val: 0) the last epoch is the one kept.
        score = row[cfg.keep]
        if score > state.best_score or state.best_epoch == 0 or not len(data.y_val):
            state.best_score, state.best_val_accuracy, state.best_epoch = score, row["val_accuracy"], epoch
            state.best_state = copy.deepcopy(run.model.state_dict())
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
        state.stopped_early = bool(cfg.patience and state.bad_epochs >= cfg.patience)
        state.epoch = epoch
        if main:
            checkpoint.save(state, run)
        if on_epoch is not None:
            on_epoch(row)
    return seen


def _fit_epoch(
    run: _Run, data: _Data, cfg: TrainConfig, epoch: int, state: State, checkpoint_path: Path
) -> tuple[dict[str, float], int]:
    """One pass over the training split in this epoch's seeded order; its history row so far and count.

    Rank ``r`` of ``N`` takes its part of each global batch; the batch's loss is summed over its images
    and divided by the global batch size (times N, which DDP's gradient average divides out).
    """
    world = data.world
    # dropout and augmentation of this epoch, on this rank (rank 0 draws what one process draws)
    torch.manual_seed(cfg.seed * _EPOCH_SEED_STRIDE + epoch + world.rank * _EPOCH_SEED_STRIDE**2)
    window = cfg.loader.shuffle_window
    parts = stream.rank_batches(data.counts, cfg.seed, epoch, window, cfg.batch_size, world.rank, world.size)
    sizes = stream.batch_sizes(data.counts, cfg.batch_size)
    run.model.train()
    total_loss, spread_sum = (torch.zeros((), dtype=torch.float64, device=run.device) for _ in range(2))
    correct = torch.zeros((), dtype=torch.int64, device=run.device)
    count = 0
    lr = run.optimizer.param_groups[0]["lr"]
    consistent = cfg.robust.consistency if consistency.active(cfg) else None
    batches = data.train.batches(parts)
    for i, (xb, y) in enumerate(track(batches, f"epoch {epoch}") if world.main else batches):
        # with consistency: the clean view and two draws of the families, one batch (batch norm sees all)
        x = as_float(xb)
        x = consistency.views(x, cfg, _robust(cfg.robust)) if consistent else augment(x, cfg)
        if run.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(run.device, run.dtype):
            logits, summed, spread = consistency.loss_sums(run.step_fn(x), y, consistent)
        weight = consistent.weight if consistent else 0.0
        loss = (summed + weight * spread) * (world.size / sizes[i])
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss.item()} at epoch {epoch}, batch {i + 1} (train.lr={cfg.lr})",
                f"the last good checkpoint is {checkpoint_path} (epoch {state.epoch})",
            )
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        total_loss += summed.detach()
        spread_sum += spread.detach()
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
    run.scheduler.step()
    sums = [float(total_loss), float(correct), float(count), float(spread_sum)]
    total, right, n, spread_total = distributed.all_sum(sums, run.device)
    row = {"epoch": epoch, "lr": lr, "train_loss": total / n, "train_accuracy": right / n}
    # the mean Jensen–Shannon divergence of the three views (train_loss is the cross-entropy alone)
    return row | ({"train_consistency": spread_total / n} if consistent else {}), int(n)


# --- finishing --------------------------------------------------------------------------------------


def _finish(
    run: _Run, state: State, meta: ModelMeta, elapsed: float, seen: int, model_path: Path | None, keep: str
) -> TrainResult:
    """Save the best epoch's weights with what rebuilds the network (rank 0); the run's summary."""
    run.model.load_state_dict(state.best_state)
    if model_path is not None:
        save_trained(run.model, meta, model_path)
    return TrainResult(
        best_epoch=state.best_epoch,
        best_val_accuracy=state.best_val_accuracy,
        epochs_run=state.epoch,
        stopped_early=state.stopped_early,
        seconds=sum(r["seconds"] for r in state.history),
        images_per_s=seen / elapsed if elapsed > 0 and seen else 0.0,
        device=str(run.device),
        keep=keep,
        best_score=state.best_score,
        history=state.history,
    )


def augment(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """One training batch's augmentation: ``train.augment``, then ``train.robust``'s families when on."""
    x = augmentation.augment(x, cfg.augment)
    if cfg.robust.enabled:
        x = _robust(cfg.robust)(x)
    return x


@functools.lru_cache(maxsize=4)
def _robust(cfg: RobustConfig) -> augmentation.RobustAugment:
    return augmentation.RobustAugment(cfg)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_epochs, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
