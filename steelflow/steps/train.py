"""Step 5, train: fit a CASI-Net variant on the cached training split, early-stopped on validation.

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
import csv
import functools
import io as pyio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steelflow import io, paths
from steelflow.config import ModelConfig, RobustConfig, TrainConfig
from steelflow.data import augment as augmentation
from steelflow.data import cache
from steelflow.errors import ConfigError, DataError, SteelflowError
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
from steelflow.progress import echo, track
from steelflow.tracking import NullTracker, Tracker

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"]
_EPOCH_SEED_STRIDE = 1_000_003  # keeps (seed, epoch) pairs from colliding


class TrainingDiverged(SteelflowError):
    """The loss became NaN or infinite."""

    exit_code = 5


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
) -> TrainResult:
    """Train, checkpointing every epoch; returns the summary also written to ``metrics_path``.

    ``on_epoch`` sees each epoch's history row after its checkpoint is written; tuning uses it to report
    validation accuracy to Optuna and to stop a trial the pruner gives up on (by raising). With
    ``robust_val`` each row also holds the validation accuracy under each of those families
    (``val_robust_<family>``, ``val_robust_worst``, ``val_robust_mean``): tuning's robust objective, at
    the epochs in ``robust_val_epochs`` (all when None; the score costs a validation pass per family).
    """
    from steelflow.models import create_model

    tracker = tracker or NullTracker()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    dtype = autocast_dtype(cfg.precision, device)
    # auto = on: channels_last measured 1.2x (64 px) to 1.6x (300 px) faster on the CPU, and is the fast
    # layout for convolutions under CUDA autocast (benchmarks/bench_model.py).
    channels_last = cfg.channels_last != "off"

    train_set, val_set = (_load(Path(cache_dir) / f"{name}.npz") for name in ("train", "val"))
    classes = train_set.classes
    x_train, y_train = to_tensor(train_set.images).to(device), torch.from_numpy(train_set.labels).to(device)
    x_val, y_val = to_tensor(val_set.images), torch.from_numpy(val_set.labels)
    val_views = _robust_views(x_val, robust_val) if robust_val is not None else {}

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
    scheduler = _scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    step_fn = torch.compile(model) if cfg.compile else model

    meta = {
        "variant": model_cfg.variant,
        "image_size": model_cfg.image_size,
        "dropout": model_cfg.dropout,
        "input_norm": model_cfg.input_norm,
        "input_norm_sigma": model_cfg.input_norm_sigma,
        "robust": cfg.robust.enabled,
        "classes": classes,
        "in_chans": int(train_set.images.shape[-1]),
    }
    fingerprint = {
        "model": model_cfg.model_dump(),
        "train": cfg.model_dump(exclude={"device", "threads"}),
        "n_train": len(train_set),
        "n_val": len(val_set),
        "classes": classes,
    }
    state = _State(best_state=copy.deepcopy(model.state_dict()))
    if resume and Path(checkpoint_path).is_file():
        state = _restore(Path(checkpoint_path), fingerprint, model, optimizer, scheduler, scaler)

    loss_fn = nn.CrossEntropyLoss()
    started, seen = time.perf_counter(), 0
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.stopped_early:
            break
        tick = time.perf_counter()
        torch.manual_seed(cfg.seed * _EPOCH_SEED_STRIDE + epoch)  # dropout and augmentation of this epoch
        order = torch.randperm(
            len(x_train), generator=torch.Generator().manual_seed(cfg.seed * _EPOCH_SEED_STRIDE - epoch)
        )
        model.train()
        total_loss, correct, count = 0.0, 0, 0
        lr = optimizer.param_groups[0]["lr"]
        for i, idx in enumerate(track(list(batches(len(x_train), cfg.batch_size, order)), f"epoch {epoch}")):
            x = augment(as_float(x_train[idx]), cfg)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y_train[idx]
            with autocast(device, dtype):
                logits = step_fn(x)
                loss = loss_fn(logits.float(), y)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss is {loss.item()} at epoch {epoch}, batch {i + 1} (train.lr={cfg.lr}); "
                    f"the last good checkpoint is {checkpoint_path} (epoch {state.epoch})"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            count += len(idx)
        scheduler.step()
        seen += count

        row = {"epoch": epoch, "lr": lr, "train_loss": total_loss / count, "train_accuracy": correct / count}
        row.update(_validate(model, x_val, y_val, cfg.batch_size, device, dtype, channels_last, loss_fn))
        if val_views and (robust_val_epochs is None or epoch in robust_val_epochs):
            robust = {
                f"val_robust_{name}": _validate(
                    model, x, y_val, cfg.batch_size, device, dtype, channels_last, loss_fn
                )["val_accuracy"]
                for name, x in val_views.items()
            }
            row |= robust | {
                "val_robust_worst": min(robust.values()),
                "val_robust_mean": sum(robust.values()) / len(robust),
            }
        row["seconds"] = time.perf_counter() - tick
        state.history.append(row)
        tracker.log_metrics(epoch_metrics(row), step=epoch)
        echo(
            f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f} accuracy "
            f"{row['train_accuracy']:.3f}, val loss {row['val_loss']:.4f} accuracy {row['val_accuracy']:.3f}"
            f" ({row['seconds']:.1f} s)"
        )

        # With no validation split (split.val: 0) the last epoch is the one kept.
        if row["val_accuracy"] > state.best_val_accuracy or state.best_epoch == 0 or len(x_val) == 0:
            state.best_val_accuracy, state.best_epoch = row["val_accuracy"], epoch
            state.best_state = copy.deepcopy(model.state_dict())
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
        state.stopped_early = bool(cfg.patience and state.bad_epochs >= cfg.patience)
        state.epoch = epoch
        _checkpoint(Path(checkpoint_path), state, fingerprint, model, optimizer, scheduler, scaler)
        if on_epoch is not None:
            on_epoch(row)

    elapsed = time.perf_counter() - started
    model.load_state_dict(state.best_state)
    save_trained(model, meta, Path(model_path))
    result = TrainResult(
        best_epoch=state.best_epoch,
        best_val_accuracy=state.best_val_accuracy,
        epochs_run=state.epoch,
        stopped_early=state.stopped_early,
        seconds=sum(r["seconds"] for r in state.history),
        images_per_s=seen / elapsed if elapsed > 0 and seen else 0.0,
        device=str(device),
        history=state.history,
    )
    io.write_json(metrics_path, result.metrics())
    _write_history(Path(history_path), state.history)
    tracker.log_metrics(
        {"val/best_accuracy": result.best_val_accuracy, "train/best_epoch": result.best_epoch}
    )
    return result


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


def _validate(model, x_val, y_val, batch_size, device, dtype, channels_last, loss_fn) -> dict[str, float]:
    if len(x_val) == 0:
        return {"val_loss": float("nan"), "val_accuracy": 0.0}
    logits = predict_logits(model, x_val, batch_size, device, dtype, channels_last)
    return {
        "val_loss": float(loss_fn(logits, y_val)),
        "val_accuracy": float((logits.argmax(1) == y_val).float().mean()),
    }


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


@dataclass
class _State:
    """What a checkpoint carries besides the module states."""

    epoch: int = 0
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)


def _checkpoint(path, state, fingerprint, model, optimizer, scheduler, scaler) -> None:
    blob = {
        "fingerprint": fingerprint,
        "state": {k: v for k, v in asdict(state).items() if k != "best_state"},
        "best_state": state.best_state,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
    }
    with io.atomic_path(path) as tmp:
        torch.save(blob, tmp)


def _restore(path, fingerprint, model, optimizer, scheduler, scaler) -> _State:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob["fingerprint"] != fingerprint:
        raise ConfigError(
            f"{path} was written with other params or data; rerun without --resume to start over"
        )
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    scaler.load_state_dict(blob["scaler"])
    return _State(**blob["state"], best_state=blob["best_state"])


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    buf = pyio.StringIO()
    # the fixed columns first, then any the run added (tuning's val_robust_* scores)
    extra = list(dict.fromkeys(k for row in history for k in row if k not in HISTORY_COLUMNS))
    writer = csv.DictWriter(buf, fieldnames=[*HISTORY_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    io.write_text(path, buf.getvalue())
