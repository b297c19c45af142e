"""Turning cached uint8 images into model input, running a model over them, saving and loading it.

Shared by train (validation), evaluate and the registry's re-scoring (:mod:`steelflow.scoring`), so that
every place feeds the network the same way: uint8 (N, S, S, C) → float (N, C, S, S) in [0, 1]; the
network resizes and normalises inside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from steelflow import atomic
from steelflow.errors import DataError
from steelflow.models import ModelMeta, create_model


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) → uint8 tensor (N, C, H, W), kept as uint8 until a batch is used."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def as_float(batch: torch.Tensor) -> torch.Tensor:
    return batch.float().div_(255.0)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"train.device={name!r} but no CUDA device is available (use auto or cpu)")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None means plain fp32. ``auto``: bf16 (fp16 where bf16 is missing) on CUDA, fp32 elsewhere."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def batches(n: int, batch_size: int, order: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Index batches; a last batch of one is folded into the one before (BatchNorm cannot train on one)."""
    order = torch.arange(n) if order is None else order
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    yield from chunks


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits (N, K) as float32 on the CPU, the model in eval mode."""
    model.eval()
    out = []
    for idx in batches(len(images), batch_size):
        x = as_float(images[idx].to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.zeros((0, 0))


def save_trained(model: nn.Module, meta: ModelMeta | Mapping[str, Any], path: Path) -> None:
    """Weights and the meta as plain values only, so loading works with ``torch.load(weights_only=True)``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic.atomic_path(path) as tmp:
        torch.save({"state_dict": state, "meta": ModelMeta.of_any(meta).to_dict()}, tmp)


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelMeta]:
    """Rebuild the network from its meta and load its weights; returns (model in eval mode, meta)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model not found: {path} (run `steelflow train` first)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    meta = ModelMeta.from_dict(saved["meta"])
    model = create_model(meta.variant, **meta.network_kwargs())
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), meta
