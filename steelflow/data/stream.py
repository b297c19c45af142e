"""The order in which training sees a shard set, and the two ways its batches reach the model.

One epoch's order (:func:`epoch_order`) is a function of (seed, epoch) and the shard counts alone: the
shards are permuted, then the samples of each window of ``shuffle_window`` consecutive shards are shuffled
together. A reader so only ever needs a window of shards at a time, and a resumed run replays the order.

The order is cut into global batches of ``train.batch_size`` (:func:`global_batches`); each rank takes its
contiguous part of every global batch (:func:`rank_part`), so the ranks together see each image of the
epoch exactly once, and N processes step through the same global batches one process does.

The batches then come from one of two sources that yield the same tensors:

- :class:`MemorySource`: the whole set decoded once into a tensor on the device (small sets: the fast
  default, ``train.loader.mode: memory``);
- :class:`StreamSource`: a ``torch.utils.data.DataLoader`` whose worker ``w`` of ``W`` reads and decodes
  batches ``w, w + W, …`` of the rank's list straight from the shards (``IterableDataset`` with
  ``batch_size=None``; the loader hands batches back in order), so memory stays flat as the set grows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from steelflow.data.shards import ShardSet
from steelflow.inference import to_tensor


def epoch_order(counts: Sequence[int], seed: int, epoch: int, window: int) -> np.ndarray:
    """Sample ids (int64) of one epoch, shard-window-shuffled from (seed, epoch): a permutation of all."""
    rng = np.random.default_rng([seed, epoch])
    starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    shard_order = rng.permutation(len(counts))
    parts = []
    for w in range(0, len(shard_order), max(1, window)):
        ids = np.concatenate(
            [np.arange(starts[s], starts[s + 1]) for s in shard_order[w : w + window]]
            or [np.zeros(0, np.int64)]
        )
        parts.append(rng.permutation(ids))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def global_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``order`` cut into batches of ``batch_size``; a last batch under half a batch joins the one before.

    The cut depends on the batch size alone, not on the number of processes: N processes step through
    the batches one does (and a checkpoint resumes under another N).
    """
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) < max(2, batch_size // 2):
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return chunks


def rank_part(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s contiguous part of a global batch: sizes differ by at most one."""
    n = len(batch)
    return batch[(n * rank) // world : (n * (rank + 1)) // world]


def rank_batches(
    counts: Sequence[int], seed: int, epoch: int, window: int, batch_size: int, rank: int = 0, world: int = 1
) -> list[np.ndarray]:
    """This rank's sample ids of each global batch of the epoch, in order."""
    order = epoch_order(counts, seed, epoch, window)
    return [rank_part(b, rank, world) for b in global_batches(order, batch_size)]


def batch_sizes(counts: Sequence[int], batch_size: int) -> list[int]:
    """The size of every global batch of an epoch (the same every epoch): what each step's loss divides by."""
    n = int(sum(counts))
    return [len(b) for b in global_batches(np.arange(n), batch_size)]


def in_order(n: int, batch_size: int) -> list[np.ndarray]:
    """Evaluation's batches: every sample once, in the set's order."""
    return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


class MemorySource:
    """The whole set decoded once, uint8 (N, C, H, W) on ``device``; batches are index lookups."""

    def __init__(self, shard_set: ShardSet, device: torch.device):
        self.x = to_tensor(shard_set.read(np.arange(len(shard_set)))).to(device)
        self.y = torch.from_numpy(shard_set.labels.astype(np.int64)).to(device)

    def batches(self, batch_ids: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for ids in batch_ids:
            idx = torch.from_numpy(ids).to(self.x.device)
            yield self.x[idx], self.y[idx]


class _Batches(IterableDataset):
    """A rank's batch list, read and decoded by the loader's workers: worker ``w`` of ``W`` takes
    batches ``w, w + W, …``, which is the order in which the loader returns them."""

    def __init__(self, shard_set: ShardSet, batch_ids: list[np.ndarray]):
        self.set, self.batch_ids = shard_set, batch_ids

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        try:
            for ids in self.batch_ids[worker::workers]:
                yield {
                    "ids": torch.from_numpy(ids),
                    "x": to_tensor(self.set.read(ids)),
                    "y": torch.from_numpy(self.set.labels[ids].astype(np.int64)),
                }
        finally:
            self.set.close()


class StreamSource:
    """Batches read from the shards by ``workers`` DataLoader processes (0: in this process)."""

    def __init__(self, shard_set: ShardSet, device: torch.device, workers: int = 2, prefetch: int = 4):
        self.set, self.device, self.workers, self.prefetch = shard_set, device, workers, prefetch

    def loader(self, batch_ids: list[np.ndarray]) -> DataLoader:
        return DataLoader(
            _Batches(self.set, batch_ids),
            batch_size=None,
            num_workers=self.workers,
            prefetch_factor=self.prefetch if self.workers else None,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            generator=torch.Generator().manual_seed(0),  # not the global RNG: augmentation's draws stay put
        )

    def batches(self, batch_ids: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = self.device.type == "cuda"
        for b in self.loader(batch_ids):
            yield (
                b["x"].to(self.device, non_blocking=non_blocking),
                b["y"].to(self.device, non_blocking=non_blocking),
            )


def source(
    shard_set: ShardSet, device: torch.device, mode: str, workers: int, memory_limit_mb: float
) -> MemorySource | StreamSource:
    """``mode`` memory or stream; auto: memory when the decoded set fits ``memory_limit_mb``."""
    if mode == "auto":
        h, w, c = shard_set.image_shape or (0, 0, 0)
        mode = "memory" if len(shard_set) * h * w * c <= memory_limit_mb * 2**20 else "stream"
    return MemorySource(shard_set, device) if mode == "memory" else StreamSource(shard_set, device, workers)
