"""The epoch's order over shards, its partition over ranks and DataLoader workers, and the two sources."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from steelflow.data import cache, stream
from steelflow.steps.train import _failure
from steelflow.training.distributed import GlooSyncBatchNorm

CLASSES = ["a", "b", "c"]


@pytest.fixture
def shard_set(tmp_path):
    """101 images (an odd count: the last global batch is short) in shards of 10."""
    rng = np.random.default_rng(0)
    n = 101
    images = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(n) % 3
    sha = np.array([f"{i:064x}" for i in range(n)])
    cache.save(cache.CachedSet(images, labels, CLASSES, sha), tmp_path / "set", shard_size=10)
    return cache.open(tmp_path / "set"), images, labels


def test_an_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    counts = [10] * 10 + [1]
    a = stream.epoch_order(counts, seed=3, epoch=1, window=2)
    assert sorted(a.tolist()) == list(range(101))
    assert np.array_equal(a, stream.epoch_order(counts, seed=3, epoch=1, window=2))  # resume replays it
    assert not np.array_equal(a, stream.epoch_order(counts, seed=3, epoch=2, window=2))
    assert not np.array_equal(a, stream.epoch_order(counts, seed=4, epoch=1, window=2))


def test_a_reader_needs_only_a_window_of_shards_at_a_time():
    counts = [10] * 12
    order = stream.epoch_order(counts, seed=0, epoch=5, window=3)
    shard_of = order // 10
    for start in range(0, 120, 30):  # each run of 3 shards' samples comes from 3 shards
        assert len(set(shard_of[start : start + 30].tolist())) == 3
    assert len(set(shard_of[:30].tolist()) & set(shard_of[30:].tolist())) == 0


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 1, 3])
def test_every_image_is_seen_once_an_epoch_across_ranks_and_workers(shard_set, world, workers):
    s, _, labels = shard_set
    for epoch in (1, 2):
        seen: Counter[int] = Counter()
        per_rank = []
        for rank in range(world):
            parts = stream.rank_batches(s.counts, 0, epoch, 4, 16, rank, world)
            loader = stream.StreamSource(s, torch.device("cpu"), workers=workers).loader(parts)
            got = [b["ids"].numpy() for b in loader]
            assert [g.tolist() for g in got] == [p.tolist() for p in parts]  # in order, from every worker
            for b, ids in zip(loader, got, strict=True):
                assert np.array_equal(b["y"].numpy(), labels[ids])
            seen.update(np.concatenate(got).tolist())
            per_rank.append(got)
        assert sorted(seen) == list(range(len(s))) and set(seen.values()) == {1}, epoch
        # the ranks' parts of each global batch are the batch one process takes
        whole = stream.rank_batches(s.counts, 0, epoch, 4, 16, 0, 1) if world == 1 else None
        if whole is not None:
            assert [w.tolist() for w in whole] == [g.tolist() for g in per_rank[0]]
        glued = [np.concatenate([per_rank[r][i] for r in range(world)]) for i in range(len(per_rank[0]))]
        one = stream.global_batches(stream.epoch_order(s.counts, 0, epoch, 4), 16)
        assert [g.tolist() for g in glued] == [b.tolist() for b in one]


def test_the_global_batches_do_not_depend_on_the_number_of_processes():
    for n in range(2, 80):
        sizes = stream.batch_sizes([n], 16)
        assert sum(sizes) == n
        assert len(sizes) == 1 or min(sizes) >= 8  # a short last batch joins the one before
        for world in (2, 3, 4):
            glued = [
                np.concatenate([stream.rank_batches([n], 0, 1, 1, 16, r, world)[i] for r in range(world)])
                for i in range(len(sizes))
            ]
            assert [len(g) for g in glued] == sizes


def test_streamed_batches_are_the_in_memory_ones(shard_set):
    s, images, _ = shard_set
    parts = stream.rank_batches(s.counts, 7, 3, 2, 16)
    memory = list(stream.MemorySource(s, torch.device("cpu")).batches(parts))
    streamed = list(stream.StreamSource(s, torch.device("cpu"), workers=2).batches(parts))
    assert len(memory) == len(streamed) == len(parts)
    for (xm, ym), (xs, ys), ids in zip(memory, streamed, parts, strict=True):
        assert torch.equal(xm, xs) and torch.equal(ym, ys)
        assert torch.equal(xs, torch.from_numpy(images[ids]).permute(0, 3, 1, 2))


def test_streaming_leaves_the_global_random_state_alone(shard_set):
    """Augmentation draws from torch's global RNG: a DataLoader must not move it, or streamed and
    in-memory training would augment differently."""
    s, _, _ = shard_set
    parts = stream.rank_batches(s.counts, 0, 1, 2, 16)
    torch.manual_seed(0)
    list(stream.StreamSource(s, torch.device("cpu"), workers=1).batches(parts))
    after_stream = torch.rand(3)
    torch.manual_seed(0)
    list(stream.MemorySource(s, torch.device("cpu")).batches(parts))
    assert torch.equal(after_stream, torch.rand(3))


def test_auto_streams_a_set_larger_than_the_memory_limit(shard_set):
    s, _, _ = shard_set
    cpu = torch.device("cpu")
    assert isinstance(stream.source(s, cpu, "auto", 0, memory_limit_mb=1), stream.MemorySource)  # 6.5 KB
    assert isinstance(stream.source(s, cpu, "auto", 0, memory_limit_mb=0.001), stream.StreamSource)


def test_sync_batchnorm_outside_a_process_group_is_plain_batchnorm():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4))
    synced = GlooSyncBatchNorm.convert(torch.nn.Sequential(*[m for m in plain]))
    assert isinstance(synced[1], GlooSyncBatchNorm) and isinstance(synced[2], GlooSyncBatchNorm)
    x = torch.rand(6, 3, 9, 9)
    assert torch.allclose(plain(x), synced(x))
    assert set(plain.state_dict()) == set(synced.state_dict())  # a saved model loads into the plain network


def test_a_failed_rank_is_named_from_torchruns_report():
    report = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 11)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-06_02:17:17
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 12)
"""
    assert _failure(report.splitlines(keepends=True), 1) == "rank 1 ended (killed by signal 9)"
    assert _failure(["nothing useful\n"], 3) == "torchrun exited with code 3"
