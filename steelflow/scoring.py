"""Scoring a saved model on the evaluation sets: what ``evaluate`` reports and the registry gates on.

The evaluation sets are the clean test split and every corrupted copy (``corrupt.conditions``, then the
hold-out block), each a decoded cache under ``data/cache``. ``evaluate`` scores the trained model on them;
the registry re-scores a champion on them (:func:`accuracy_of`) when it was scored on other data (told by
:func:`data_hash`), and gates on :func:`worst_condition`. Both import this module, so neither imports the
other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from steelflow import paths
from steelflow.config import CorruptConfig
from steelflow.data import cache, shards, stream
from steelflow.data.shards import ShardSet
from steelflow.errors import DataError
from steelflow.inference import as_float, load_trained, pick_device
from steelflow.models import ModelMeta

CLEAN = "original"
IN_MEMORY_MB = 1024  # an evaluation set decoded larger than this is streamed


def evaluation_sets(corrupt_cfg: CorruptConfig, cache_dir: Path = paths.CACHE) -> dict[str, Path]:
    """Condition name → its cache shard set: the clean test split, every corrupted copy, then the hold-out
    ones."""
    sets = {CLEAN: cache.split_path(cache_dir, "test")}
    sets.update({c.name: cache.condition_path(cache_dir, c.name) for c in corrupt_cfg.all_conditions})
    return sets


def graded_sets(corrupt_cfg: CorruptConfig, cache_dir: Path = paths.CACHE) -> dict[str, dict[str, Path]]:
    """Family → its cache shard sets, severity 1 first (``corrupt.graded``; empty when not graded). Apart
    from :func:`evaluation_sets`: the gates and the champion's re-scoring read the single-level sets only."""
    if corrupt_cfg.graded is None:
        return {}
    return {
        family: {
            c.name: cache.condition_path(cache_dir, c.name) for c in corrupt_cfg.graded.conditions(family)
        }
        for family in corrupt_cfg.graded.families
    }


def worst_condition(accuracy: dict[str, float], exclude: Collection[str] = ()) -> str:
    """The corrupted set with the lowest accuracy, but ``exclude`` (the clean set when none is left)."""
    corrupted = {k: v for k, v in accuracy.items() if k != CLEAN and k not in exclude}
    return min(corrupted, key=corrupted.get) if corrupted else CLEAN


def summarize(accuracy: dict[str, float], holdout: Collection[str]) -> dict[str, Any]:
    """Clean, worst and mean accuracy over the Table 1 conditions, and the same over the hold-out block."""
    corrupted = [v for k, v in accuracy.items() if k != CLEAN and k not in holdout]
    worst = worst_condition(accuracy, exclude=holdout)
    out: dict[str, Any] = {
        "clean_accuracy": accuracy[CLEAN],
        "worst_condition": worst,
        "worst_accuracy": accuracy[worst],
        "mean_corrupted_accuracy": float(np.mean(corrupted)) if corrupted else accuracy[CLEAN],
    }
    held = {k: accuracy[k] for k in holdout if k in accuracy}
    if held:
        worst_held = min(held, key=held.get)
        out |= {
            "holdout_worst_condition": worst_held,
            "holdout_worst_accuracy": held[worst_held],
            "holdout_mean_accuracy": float(np.mean(list(held.values()))),
        }
    return out


def training_label(meta: ModelMeta) -> str:
    """How the saved model was trained: with ``train.robust`` on, or clean (models from before it: clean)."""
    return "robust-trained" if meta.robust else "clean-trained"


def data_hash(sets: dict[str, Path]) -> str:
    """sha256 over the evaluation sets' names and shard-set digests (:func:`steelflow.data.shards.digest`:
    the index, which holds the classes and every shard's sha256, so every image, label and source sha256):
    equal hashes, equal evaluation data. Read from the indexes alone, whatever the sets' size."""
    digest = hashlib.sha256()
    for name, path in sets.items():
        _require(path)
        digest.update(name.encode())
        digest.update(shards.digest(path).encode())
    return digest.hexdigest()


def accuracy_of(
    model_path: Path, sets: dict[str, Path], batch_size: int, device: str = "auto"
) -> dict[str, float]:
    """Accuracy of a saved model on every evaluation set (promotion re-scores a champion with it)."""
    dev = pick_device(device)
    model, meta = load_trained(model_path, dev)
    scored = scored_sets(model, meta, sets, batch_size, dev)
    return {name: float((probs.argmax(1) == data.labels).mean()) for name, data, probs in scored}


def scored_sets(
    model: Any, meta: ModelMeta, sets: dict[str, Path], batch_size: int, dev: torch.device, workers: int = 2
) -> Iterator[tuple[str, ShardSet, np.ndarray]]:
    """Each evaluation set, opened, with the model's class probabilities on it: a set that fits
    :data:`IN_MEMORY_MB` decoded is read whole, a larger one streamed by ``workers`` DataLoader processes
    (:mod:`steelflow.data.stream`), so memory stays flat however large the sets."""
    model.eval()
    for name, path in sets.items():
        data = _open(path, meta.classes)
        source = stream.source(data, dev, "auto", workers, IN_MEMORY_MB)
        logits = []
        with torch.no_grad():
            for x, _ in source.batches(stream.in_order(len(data), batch_size)):
                logits.append(model(as_float(x)).float().cpu())
        probs = torch.softmax(torch.cat(logits), 1).numpy() if logits else np.zeros((0, len(meta.classes)))
        data.close()
        yield name, data, probs


def score(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, one-vs-rest AUROC, per-class metrics and the confusion matrix."""
    k = len(classes)
    predicted = probs.argmax(1)
    p, r, f, support = precision_recall_fscore_support(
        labels, predicted, labels=range(k), average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision_macro": float(p.mean()),
        "recall_macro": float(r.mean()),
        "f1_macro": float(f.mean()),
        "auroc_ovr_macro": _auroc(labels, probs, k),
        "per_class": {
            c: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=range(k)).tolist(),
    }


def _auroc(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    if len(np.unique(labels)) < k:  # a class absent from this set: AUROC is undefined for it
        return float("nan")
    return float(roc_auc_score(labels, probs, multi_class="ovr", labels=list(range(k))))


def _require(path: Path) -> None:
    if not cache.exists(path):
        raise DataError(f"{path} not found: run `steelflow split` and `steelflow corrupt` first")


def _open(path: Path, classes: list[str] | None = None) -> ShardSet:
    _require(path)
    data = cache.open(path)
    if classes is not None and data.classes != classes:
        raise DataError(f"{path}: classes {data.classes} differ from the model's {classes}")
    return data
