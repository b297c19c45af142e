"""A step's MLflow run, shared by the steps that record one (``train``, ``evaluate``, ``reproduce``).

:func:`tracker` opens (or re-opens) the run: named ``train <variant> lr=<lr> <short sha>``, with the
params that shape the model (data, split, model, train) and the whole tree as ``params.yaml``; a no-op
tracker when tracking is off. :func:`step_run` gives every other step a small run of its own under a
pipeline's parent run (:mod:`steelflow.tracking.tree`). :func:`example_input` is the real input example
MLflow infers the logged model's signature from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steelflow import paths
from steelflow.config import Params, scalar_metrics
from steelflow.data import cache
from steelflow.inference import pick_device
from steelflow.tracking import MlflowTracker, NullTracker, identity_tags, lineage_params, run_name, run_tags
from steelflow.tracking import tree as run_tree
from steelflow.tracking.pipeline import child_run

if TYPE_CHECKING:
    from steelflow.step import Step


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


@contextlib.contextmanager
def step_run(
    step: Step, p: Params, options: dict[str, Any], label: str = ""
) -> Iterator[Callable[[Any], None]]:
    """Under a parent run (``MLFLOW_RUN_ID``), a run of its own for a step that opens none (every step but
    ``train`` and ``tune``), named ``label`` (default: the step's name): its lineage tags, then the numbers
    of the step's result files (``<file stem>/<dotted key>``) and its summary lines (``summary.txt``),
    recorded by calling what this yields with the step's result. Ended FAILED when the step raises. Without
    a parent, or with ``--no-track``, it records nothing."""
    parent = run_tree.parent_id()
    if step.tracks or parent is None or options.get("track") is False:
        yield lambda result: None
        return
    tags = identity_tags(p.raw()) | {run_tree.STEP_TAG: step.name}
    with child_run(p.mlflow, label or step.name, tags, parent) as run:

        def record(result: Any) -> None:
            numbers = {
                f"{path.stem}/{key}": value
                for path in step.numbers
                if Path(path).is_file()
                for key, value in scalar_metrics(path).items()
            }
            if numbers:
                run.log_metrics(numbers)
            lines = step.lines(result) if result is not None else []
            if lines:
                run.log_text("\n".join(lines) + "\n", "summary.txt")

        yield record


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
