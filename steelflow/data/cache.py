"""The decoded-image cache: one uint8 array file per split and per corrupted condition.

Training reads these instead of decoding images every epoch. Each ``.npz`` (uncompressed, so loading is a
memory copy) holds ``images`` (N, S, S, C) uint8 at ``data.cache_size``, ``labels`` (N,) int64 indices into
``classes``, ``classes`` (K,) the class names in index order, and ``sha256`` (N,) of the source files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steelflow import atomic
from steelflow.data import images as imageio


@dataclass(frozen=True)
class CachedSet:
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    sha256: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def resized_set(
    images: Iterable[np.ndarray], labels: list[str], sha256: list[str], classes: list[str], size: int
) -> CachedSet:
    """Resize decoded uint8 images, (H, W) or (H, W, C), to ``size`` and stack them with their labels."""
    index = {c: i for i, c in enumerate(classes)}
    resized = [imageio.resize(img, size) for img in images]
    channels = resized[0].shape[2] if resized and resized[0].ndim == 3 else 1
    arrays = (
        np.stack(resized).reshape(len(resized), size, size, channels)
        if resized
        else (np.zeros((0, size, size, 1), dtype=np.uint8))
    )
    return CachedSet(
        images=arrays,
        labels=np.array([index[label] for label in labels], dtype=np.int64),
        classes=list(classes),
        sha256=np.array(sha256, dtype=str),
    )


def save(cached: CachedSet, path: str | Path) -> None:
    with atomic.atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(
            f,
            images=cached.images,
            labels=cached.labels,
            classes=np.array(cached.classes, dtype=str),
            sha256=cached.sha256,
        )


def load(path: str | Path) -> CachedSet:
    with np.load(path, allow_pickle=False) as z:
        return CachedSet(
            images=z["images"], labels=z["labels"], classes=[str(c) for c in z["classes"]], sha256=z["sha256"]
        )
