"""Validation during training, and the checks and readers around the training loop's data.

Each rank scores its share of the validation split and the sums are all-reduced (:func:`validation_row`);
the robust views' scores likewise (:func:`robust_views`); per-image correctness is one-process only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from steelflow.config import RobustConfig, TrainConfig
from steelflow.data import augment as augmentation
from steelflow.data import cache, stream
from steelflow.data.shards import ShardSet
from steelflow.errors import ConfigError, DataError
from steelflow.inference import as_float, autocast, predict_logits
from steelflow.training import distributed
from steelflow.training.distributed import World


def validation_row(run: Any, data: Any, batch_size: int, epoch: int) -> dict[str, float]:
    """Validation loss and accuracy (each rank scores its share of the split), and the robust views'
    accuracies at the epochs that take them."""
    world = data.world
    n = len(data.y_val)
    mine = stream.in_order(n, batch_size)[world.rank :: world.size]
    loss_sum, right = 0.0, []
    run.model.eval()
    with torch.no_grad():
        for xb, y in data.val.batches(mine):
            logits = forward(run, xb)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            right.append((logits.argmax(1) == y).cpu())
    correct = torch.cat(right) if right else torch.zeros(0, dtype=torch.bool)
    total, hits = distributed.all_sum([loss_sum, float(correct.sum())], run.device)
    row = {"val_loss": total / n if n else float("nan"), "val_accuracy": hits / n if n else 0.0}
    right_views = {"clean": correct}
    if data.val_views and (data.robust_val_epochs is None or epoch in data.robust_val_epochs):
        share = torch.from_numpy(np.concatenate(mine)) if mine else torch.zeros(0, dtype=torch.long)
        view_right = {  # each rank its share, as for the clean images
            name: validate(run, x[share], data.y_val[share], batch_size)[1]
            for name, x in data.val_views.items()
        }
        hits = distributed.all_sum([float(r.sum()) for r in view_right.values()], run.device)
        robust = {f"val_robust_{name}": h / n if n else 0.0 for name, h in zip(view_right, hits, strict=True)}
        right_views |= view_right
        row |= robust | {
            "val_robust_worst": min(robust.values()),
            "val_robust_mean": sum(robust.values()) / len(robust),
        }
    if data.on_scored is not None and n:
        data.on_scored(epoch, right_views)
    return row


def forward(run: Any, xb: torch.Tensor) -> torch.Tensor:
    """Float32 logits of a uint8 batch, the model as it is (eval mode for scoring)."""
    x = as_float(xb.to(run.device))
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(run.device, run.dtype):
        return run.model(x).float()


def robust_views(x_val: torch.Tensor, families: RobustConfig) -> dict[str, torch.Tensor]:
    """The validation images under each family alone, stored as uint8 like the images themselves."""
    views = augmentation.family_views(as_float(x_val), families)
    if not views:
        raise ConfigError("the robust validation score needs a train.robust family with p > 0")
    return {name: x.mul(255).round_().to(torch.uint8) for name, x in views.items()}


def validate(
    run: Any, x_val: torch.Tensor, y_val: torch.Tensor, batch_size: int
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


def check_parts(train_set: ShardSet, cfg: TrainConfig, world: World) -> None:
    """Every rank gets at least two images of every global batch (batch norm cannot train on one)."""
    sizes = stream.batch_sizes(train_set.counts, cfg.batch_size)
    if not sizes or min(sizes) < 2 * world.size:
        smallest = min(sizes) if sizes else 0
        raise ConfigError(
            f"train.batch_size {cfg.batch_size} on {world.size} processes: the smallest batch of "
            f"{train_set.location} ({len(train_set)} images) has {smallest}, fewer than 2 per process"
        )


def open_set(path: str) -> ShardSet:
    if not cache.exists(path):
        raise DataError(f"{path} not found: run `steelflow split` first")
    return cache.open(path)  # an s3:// set that is not there: a DataError naming it
