"""Data-parallel training: the process group torchrun sets up, and batch norm across it.

``steelflow train`` runs as one process, or as one of several that ``torchrun`` started
(:mod:`steelflow.training.torchrun`): then ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` are in the
environment, and :func:`join` joins the process group (``gloo`` on the CPU, ``nccl`` on CUDA, or as
``train.distributed.backend`` says). Each rank trains a replica under
``torch.nn.parallel.DistributedDataParallel`` on its part of every global batch; rank 0 alone logs,
checkpoints and writes.

Batch norm: with ``train.distributed.batchnorm: sync`` the batch statistics are those of the global batch,
so N processes train the network one process would (PyTorch's ``SyncBatchNorm`` on CUDA; on the CPU, where
it refuses to run, :class:`GlooSyncBatchNorm`); with ``local`` each rank normalises by its own part.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn import functional as dist_fn

from steelflow.errors import ConfigError, TrainingFailed

# Its differentiable all_reduce is what we need; the deprecation notice points at a private module.
warnings.filterwarnings(
    "ignore", message=r".*torch\.distributed\.nn\.functional\.all_reduce", category=FutureWarning
)


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``size`` processes (one: not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched() -> bool:
    """Whether torchrun started this process (its environment names a world)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def join(backend: str, device_name: str) -> tuple[World, str]:
    """Join torchrun's process group (when there is one); the world, and the device this rank trains on.

    ``device_name`` is ``train.device``; under torchrun on CUDA each rank takes ``cuda:<LOCAL_RANK>``.
    """
    if not launched() or int(os.environ["WORLD_SIZE"]) == 1:
        return World(), device_name
    world = World(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    )
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        device_name = f"cuda:{world.local_rank}"
        torch.cuda.set_device(world.local_rank)
    elif device_name == "auto":
        device_name = "cpu"
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    if backend == "nccl" and not cuda:
        raise ConfigError("train.distributed.backend: nccl needs CUDA devices; use gloo (or auto) on the CPU")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
    return world, device_name


@contextlib.contextmanager
def peers_named(world: World) -> Iterator[None]:
    """A collective that fails because another process died becomes a :class:`TrainingFailed` naming this
    rank (torchrun's report names the one that died), not a backend's traceback."""
    try:
        yield
    except (dist.DistError, RuntimeError) as e:
        lost = isinstance(e, dist.DistError) or any(w in str(e) for w in ("gloo", "NCCL", "Connection"))
        if not (world.distributed and lost):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingFailed(f"rank {world.rank}: lost another process of the job ({first[:200]})") from None


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Each value summed over the ranks (itself when not distributed)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with batch norm over the global batch: PyTorch's SyncBatchNorm on CUDA, ours elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return GlooSyncBatchNorm.convert(model)


def ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` under DistributedDataParallel: gradients averaged over the ranks at every step."""
    # buffers: batch norm's running statistics, updated alike on every rank (the global batch's, under
    # sync; each rank's own under local, where rank 0's are the ones saved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # broadcast_buffers' rename, not yet in every torch
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the whole global batch, on any backend.

    The per-channel count and sum, then the sum of squared deviations from the global mean, are
    all-reduced with the differentiable ``torch.distributed.nn.functional.all_reduce``, so gradients flow
    through the global statistics as they do in one process. Eval mode is plain batch norm on the running
    statistics, which every rank updates alike (unbiased variance, as PyTorch's batch norm).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        xf = x.float()
        shape = [1, -1] + [1] * (x.dim() - 2)
        # two passes, as one process's batch norm: the global mean, then the spread about it
        count = torch.full((1,), x.numel() / x.shape[1], dtype=xf.dtype, device=x.device)
        totals = dist_fn.all_reduce(torch.cat([count, xf.sum(dims)]))
        n, mean = totals[0], totals[1:] / totals[0]
        centred = xf - mean.view(shape)
        var = dist_fn.all_reduce((centred * centred).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (
                    self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
                unbiased = var.detach() * (n / (n - 1)) if n > 1 else var.detach()
                self.running_var.mul_(1 - momentum).add_(unbiased * momentum)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every batch norm layer replaced by this one (weights and statistics kept)."""
        out = module
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            out = cls(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
            )
            if module.affine:
                with torch.no_grad():
                    out.weight.copy_(module.weight)
                    out.bias.copy_(module.bias)
            if module.track_running_stats:
                out.running_mean.copy_(module.running_mean)
                out.running_var.copy_(module.running_var)
                out.num_batches_tracked.copy_(module.num_batches_tracked)
            out.to(module.weight.device if module.affine else module.running_mean.device)
        for name, child in module.named_children():
            out.add_module(name, cls.convert(child))
        return out
