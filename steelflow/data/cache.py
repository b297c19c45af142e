"""The decoded-image cache: one shard set per split and per corrupted condition.

Training and evaluation read these instead of decoding source images every epoch. Each set is a folder of
WebDataset tar shards with an index (:mod:`steelflow.data.shards`): uint8 images at ``data.cache_size``, each
with its class and the sha256 of its source file, ``data.shard_size`` images a shard::

    data/cache/splits/<split>/             train, val, test
    data/cache/corrupted/<condition>/      one per evaluation condition

Small sets are read whole (:func:`load`, a :class:`CachedSet` of arrays); training streams large ones
(:func:`open`, a :class:`~steelflow.data.shards.ShardSet`, read sample by sample).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steelflow.data import images as imageio
from steelflow.data import shards
from steelflow.data.shards import Record, ShardSet
from steelflow.errors import DataError

DEFAULT_SHARD_SIZE = shards.DEFAULT_SIZE


@dataclass(frozen=True)
class CachedSet:
    images: np.ndarray  # (N, S, S, C) uint8
    labels: np.ndarray  # (N,) int64 indices into classes
    classes: list[str]
    sha256: np.ndarray  # (N,) hex of the source files

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, ids: np.ndarray) -> np.ndarray:
        """The images ``ids``, as :meth:`ShardSet.read` gives them."""
        return self.images[ids]

    def records(self) -> Iterator[Record]:
        for image, label, sha in zip(self.images, self.labels, self.sha256, strict=True):
            yield Record(image, self.classes[int(label)], str(sha))


def split_path(cache_dir: str | Path, name: str) -> Path:
    """``<cache_dir>/splits/<name>``: the shard set of split ``name`` (train, val, test)."""
    return Path(cache_dir) / "splits" / name


def condition_path(cache_dir: str | Path, name: str) -> Path:
    """``<cache_dir>/corrupted/<name>``: the shard set of evaluation condition ``name``."""
    return Path(cache_dir) / "corrupted" / name


def resized_records(
    images: Iterable[np.ndarray], labels: Iterable[str], sha256: Iterable[str], size: int
) -> Iterator[Record]:
    """Decoded uint8 images, (H, W) or (H, W, C), resized to ``size``, one at a time (memory stays flat)."""
    for image, label, sha in zip(images, labels, sha256, strict=True):
        resized = imageio.resize(image, size)
        yield Record(resized if resized.ndim == 3 else resized[:, :, None], label, sha)


def resized_set(
    images: Iterable[np.ndarray], labels: list[str], sha256: list[str], classes: list[str], size: int
) -> CachedSet:
    """Resize decoded uint8 images, (H, W) or (H, W, C), to ``size`` and stack them with their labels."""
    index = {c: i for i, c in enumerate(classes)}
    resized = [r.image for r in resized_records(images, labels, sha256, size)]
    channels = resized[0].shape[2] if resized else 1
    return CachedSet(
        images=np.stack(resized) if resized else np.zeros((0, size, size, channels), dtype=np.uint8),
        labels=np.array([index[label] for label in labels], dtype=np.int64),
        classes=list(classes),
        sha256=np.array(sha256, dtype=str),
    )


def write(
    records: Iterable[Record], path: str | Path, classes: list[str], shard_size: int = DEFAULT_SHARD_SIZE
) -> dict:
    """Stream ``records`` into the shard set at ``path`` (replaced whole, atomically); returns its index."""
    return shards.write(records, path, classes, shard_size)


def save(cached: CachedSet, path: str | Path, shard_size: int = DEFAULT_SHARD_SIZE) -> dict:
    return shards.write(cached.records(), path, cached.classes, shard_size)


def open(path: str | Path) -> ShardSet:  # noqa: A001 - the cache's own verb, as in shards.ShardSet
    """The shard set at ``path``, opened for reading sample by sample; a DataError when there is none."""
    return ShardSet(path)


def exists(path: str | Path) -> bool:
    return shards.exists(path)


def load(path: str | Path) -> CachedSet:
    """The whole set at ``path`` in memory (small sets: evaluation, serving's checks, tests)."""
    if not shards.exists(path):
        raise DataError(f"{path} not found: run `steelflow split` first")
    s = ShardSet(path)
    try:
        images = s.read(np.arange(len(s)))
    finally:
        s.close()
    if s.image_shape is None:
        images = np.zeros((0, 1, 1, 1), dtype=np.uint8)
    return CachedSet(images=images, labels=s.labels.astype(np.int64), classes=s.classes, sha256=s.sha256())
