"""The training loop: fit a CASI-Net variant on the cached training split, early-stopped on validation.

Reads params sections ``model`` and ``train``, and the decoded cache ``data/cache/splits/{train,val}.npz``.
Writes ``models/model.pt`` (the best epoch's weights + what rebuilds the network), ``metrics/train.json``
and ``metrics/train_history.csv`` (one row per epoch), and after every epoch ``models/checkpoint.pt``
(atomically), from which ``--resume`` continues a killed run to the same result.

Paper §4.3: SGD with momentum 0.9, weight decay 1e-3, batch 16. Reproducible on the CPU: the order,
augmentation and dropout of epoch ``e`` are seeded by (``train.seed``, ``e``), so a resumed run replays
exactly what an uninterrupted one does. A NaN or infinite loss stops the run with
:class:`TrainingDiverged` and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steelflow import atomic, paths
from steelflow.config import ModelConfig, RobustConfig, TrainConfig
from steelflow.data import augment as augmentation
from steelflow.data import cache
from steelflow.errors import ConfigError, DataError, TrainingDiverged
from steelflow.inference import (
    as_float,
    autocast,
    autocast_dtype,
    batches,
    pick_device,
    predict_logits,
    save_trained,
    to_tensor,
)
from steelflow.models import ModelMeta, create_model
from steelflow.progress import echo, track
from steelflow.tracking import NullTracker, Tracker
from steelflow.training.checkpoint import Checkpoint, State, write_history

_EPOCH_SEED_STRIDE = 1_000_003  # keeps (seed, epoch) pairs from colliding


@dataclass
class TrainResult:
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    images_per_s: float
    device: str
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
    tracker = tracker or NullTracker()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_set, val_set = (_load(Path(cache_dir) / f"{name}.npz") for name in ("train", "val"))
    device = pick_device(cfg.device)
    x_val = to_tensor(val_set.images)
    data = _Data(
        x_train=to_tensor(train_set.images).to(device),
        y_train=torch.from_numpy(train_set.labels).to(device),
        x_val=x_val,
        y_val=torch.from_numpy(val_set.labels),
        val_views=_robust_views(x_val, robust_val) if robust_val is not None else {},
        robust_val_epochs=robust_val_epochs,
        on_scored=on_scored,
    )
    run = _build(model_cfg, cfg, train_set.classes, device)
    fingerprint = {
        "model": model_cfg.model_dump(),
        "train": cfg.model_dump(exclude={"device", "threads"}),
        "n_train": len(train_set),
        "n_val": len(val_set),
        "classes": train_set.classes,
    }
    checkpoint = Checkpoint(Path(checkpoint_path), fingerprint)
    state = State(best_state=copy.deepcopy(run.model.state_dict()))
    if resume and checkpoint.path.is_file():
        state = checkpoint.restore(run)
    started = time.perf_counter()
    seen = _epochs(run, data, cfg, state, checkpoint, tracker, on_epoch)
    meta = ModelMeta.of(model_cfg, train_set.classes, train_set.images.shape[-1], cfg.robust.enabled)
    result = _finish(run, state, meta, time.perf_counter() - started, seen, model_path)
    atomic.write_json(metrics_path, result.metrics())
    write_history(Path(history_path), state.history)
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


@dataclass
class _Data:
    """The training and validation tensors (training on the device), and the robust validation views."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    val_views: dict[str, torch.Tensor]
    robust_val_epochs: frozenset[int] | None
    on_scored: Callable[[int, dict[str, torch.Tensor]], None] | None = None  # per-image correctness


def _build(model_cfg: ModelConfig, cfg: TrainConfig, classes: list[str], device: torch.device) -> _Run:
    """The seeded network on its device and layout, SGD (paper §4.3), the schedule and the AMP scaler."""

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
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    return _Run(
        model=model,
        step_fn=torch.compile(model) if cfg.compile else model,
        optimizer=optimizer,
        scheduler=_scheduler(optimizer, cfg),
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        device=device,
        dtype=dtype,
        channels_last=channels_last,
        loss_fn=nn.CrossEntropyLoss(),
    )


# --- the epoch loop ---------------------------------------------------------------------------------


def _epochs(run, data, cfg, state, checkpoint, tracker, on_epoch) -> int:
    """Every epoch left (from ``state.epoch + 1``), early-stopped; returns the training images seen."""
    seen = 0
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.stopped_early:
            break
        tick = time.perf_counter()
        row, count = _fit_epoch(run, data, cfg, epoch, state, checkpoint.path)
        seen += count
        row |= _validation_row(run, data, cfg.batch_size, epoch)
        row["seconds"] = time.perf_counter() - tick
        state.history.append(row)
        tracker.log_metrics(epoch_metrics(row), step=epoch)
        echo(
            f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f} accuracy "
            f"{row['train_accuracy']:.3f}, val loss {row['val_loss']:.4f} accuracy {row['val_accuracy']:.3f}"
            f" ({row['seconds']:.1f} s)"
        )
        # With no validation split (split.val: 0) the last epoch is the one kept.
        if row["val_accuracy"] > state.best_val_accuracy or state.best_epoch == 0 or len(data.x_val) == 0:
            state.best_val_accuracy, state.best_epoch = row["val_accuracy"], epoch
            state.best_state = copy.deepcopy(run.model.state_dict())
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
        state.stopped_early = bool(cfg.patience and state.bad_epochs >= cfg.patience)
        state.epoch = epoch
        checkpoint.save(state, run)
        if on_epoch is not None:
            on_epoch(row)
    return seen


def _fit_epoch(
    run: _Run, data: _Data, cfg: TrainConfig, epoch: int, state: State, checkpoint_path: Path
) -> tuple[dict[str, float], int]:
    """One pass over the training split in this epoch's seeded order; its history row so far and count."""
    torch.manual_seed(cfg.seed * _EPOCH_SEED_STRIDE + epoch)  # dropout and augmentation of this epoch
    order = torch.randperm(
        len(data.x_train), generator=torch.Generator().manual_seed(cfg.seed * _EPOCH_SEED_STRIDE - epoch)
    )
    run.model.train()
    total_loss, correct, count = 0.0, 0, 0
    lr = run.optimizer.param_groups[0]["lr"]
    for i, idx in enumerate(track(list(batches(len(data.x_train), cfg.batch_size, order)), f"epoch {epoch}")):
        x = augment(as_float(data.x_train[idx]), cfg)
        if run.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = data.y_train[idx]
        with autocast(run.device, run.dtype):
            logits = run.step_fn(x)
            loss = run.loss_fn(logits.float(), y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss.item()} at epoch {epoch}, batch {i + 1} (train.lr={cfg.lr}); "
                f"the last good checkpoint is {checkpoint_path} (epoch {state.epoch})"
            )
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        total_loss += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
        count += len(idx)
    run.scheduler.step()
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": total_loss / count,
        "train_accuracy": correct / count,
    }, count


def _validation_row(run: _Run, data: _Data, batch_size: int, epoch: int) -> dict[str, float]:
    """Validation loss and accuracy, and the robust views' accuracies at the epochs that take them."""
    row, correct = _validate(run, data.x_val, data.y_val, batch_size)
    right = {"clean": correct}
    if data.val_views and (data.robust_val_epochs is None or epoch in data.robust_val_epochs):
        robust = {}
        for name, x in data.val_views.items():
            scores, right[name] = _validate(run, x, data.y_val, batch_size)
            robust[f"val_robust_{name}"] = scores["val_accuracy"]
        row |= robust | {
            "val_robust_worst": min(robust.values()),
            "val_robust_mean": sum(robust.values()) / len(robust),
        }
    if data.on_scored is not None and len(data.x_val):
        data.on_scored(epoch, right)
    return row


# --- finishing --------------------------------------------------------------------------------------


def _finish(
    run: _Run, state: State, meta: ModelMeta, elapsed: float, seen: int, model_path: Path
) -> TrainResult:
    """Save the best epoch's weights with what rebuilds the network; the run's summary."""
    run.model.load_state_dict(state.best_state)
    save_trained(run.model, meta, Path(model_path))
    return TrainResult(
        best_epoch=state.best_epoch,
        best_val_accuracy=state.best_val_accuracy,
        epochs_run=state.epoch,
        stopped_early=state.stopped_early,
        seconds=sum(r["seconds"] for r in state.history),
        images_per_s=seen / elapsed if elapsed > 0 and seen else 0.0,
        device=str(run.device),
        history=state.history,
    )


def epoch_metrics(row: dict[str, float]) -> dict[str, float]:
    """One epoch's history row under MLflow names grouped by "/" (``train/loss``, ``val/accuracy``...)."""
    return {
        "train/lr": row["lr"],
        "train/loss": row["train_loss"],
        "train/accuracy": row["train_accuracy"],
        "val/loss": row["val_loss"],
        "val/accuracy": row["val_accuracy"],
        "train/epoch_seconds": row["seconds"],
    } | {
        # tuning's robust validation scores, when the row has them: val/robust_<family>, _worst, _mean
        f"val/{k.removeprefix('val_')}": v
        for k, v in row.items()
        if k.startswith("val_robust_")
    }


def augment(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """One training batch's augmentation: ``train.augment``, then ``train.robust``'s families when on."""
    x = augmentation.augment(x, cfg.augment)
    if cfg.robust.enabled:
        x = _robust(cfg.robust)(x)
    return x


@functools.lru_cache(maxsize=4)
def _robust(cfg: RobustConfig) -> augmentation.RobustAugment:
    return augmentation.RobustAugment(cfg)


def _robust_views(x_val: torch.Tensor, families: RobustConfig) -> dict[str, torch.Tensor]:
    """The validation images under each family alone, stored as uint8 like the images themselves."""
    views = augmentation.family_views(as_float(x_val), families)
    if not views:
        raise ConfigError("the robust validation score needs a train.robust family with p > 0")
    return {name: x.mul(255).round_().to(torch.uint8) for name, x in views.items()}


def _validate(
    run: _Run, x_val: torch.Tensor, y_val: torch.Tensor, batch_size: int
) -> tuple[dict[str, float], torch.Tensor]:
    """Loss and accuracy on ``x_val``, and which of its images the model got right."""
    if len(x_val) == 0:
        return {"val_loss": float("nan"), "val_accuracy": 0.0}, torch.zeros(0, dtype=torch.bool)
    logits = predict_logits(run.model, x_val, batch_size, run.device, run.dtype, run.channels_last)
    correct = logits.argmax(1).cpu() == y_val
    return {
        "val_loss": float(run.loss_fn(logits, y_val)),
        "val_accuracy": float(correct.float().mean()),
    }, correct


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_epochs, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _load(path: Path) -> cache.CachedSet:
    if not path.is_file():
        raise DataError(f"{path} not found: run `steelflow split` first")
    return cache.load(path)
