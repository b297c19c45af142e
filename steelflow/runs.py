"""A step's MLflow run, shared by the steps that record one (``train``, ``evaluate``, ``reproduce``).

:func:`tracker` opens (or re-opens) the run: named ``train <variant> lr=<lr> <short sha>``, with the
params that shape the model (data, split, model, train) and the whole tree as ``params.yaml``; a no-op
tracker when tracking is off. :func:`example_input` is the real input example MLflow infers the logged
model's signature from.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from steelflow import paths
from steelflow.config import Params
from steelflow.data import cache
from steelflow.inference import pick_device
from steelflow.tracking import MlflowTracker, NullTracker, lineage_params, run_name, run_tags


def tracker(p: Params, step: str, enabled: bool, run_id: str | None = None, resumed: bool = False) -> Any:
    """An MLflow run for this step (a no-op tracker when ``enabled`` is false). ``run_id`` re-opens a run;
    ``resumed``: it is the run of an interrupted training, whose params document was never uploaded."""
    if not enabled:
        return contextlib.nullcontext(NullTracker())
    tree = p.raw()
    return MlflowTracker(
        p.mlflow,
        run_name(tree, step),
        lineage_params(tree),
        run_tags(tree, pick_device(p.train.device), step),
        run_id=run_id,
        params_document=tree if run_id is None or resumed else None,
    )


def example_input(p: Params, cache_dir: Any = None) -> Any:
    """Two real images of the validation split (else the training split) as the model takes them: float
    (N, C, S, S) in [0, 1]. MLflow infers the logged model's signature from it, so it must look like data;
    all zeros would say nothing about channels or range. Batch 2, not 1: MLflow's torch.export format
    keeps a size-1 batch dimension static."""

    splits = paths.CACHE_SPLITS if cache_dir is None else Path(cache_dir)
    for name in ("val", "train"):
        path = splits / name  # cache.split_path's layout: the shard set of the split
        if cache.exists(path):
            shard_set = cache.open(path)
            try:
                images = shard_set.read(np.arange(min(2, len(shard_set))))  # two images, not the whole set
            finally:
                shard_set.close()
            if len(images):
                return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    return np.zeros((2, 1, p.data.cache_size, p.data.cache_size), dtype=np.float32)
