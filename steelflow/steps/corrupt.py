"""Step 4, corrupt: Fu-style corrupted copies of the test split, one per condition (paper, Table 1).

Reads params sections ``corrupt`` (seed and the list of conditions) and ``data`` (``classes``,
``cache_size``), and ``data/splits/test.csv``. Writes ``data/corrupted/<condition>/<class>/<stem>.png``,
``data/corrupted/index.csv`` (condition, path relative to ``data/corrupted``, label, sha256 of the source
image), the decoded cache ``data/cache/corrupted/<condition>.npz`` and ``reports/corruptions.png``, a grid of
classes × conditions. The corruption formulas are in :mod:`steelflow.data.corruptions`. Each image's
randomness comes from (``corrupt.seed``, the image's sha256, the condition name), so the output does not
depend on order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from steelflow import atomic, paths
from steelflow.config import CorruptConfig, DataConfig
from steelflow.data import cache, corruptions, images, manifest
from steelflow.progress import track
from steelflow.reports import corruption_grid, grid_picks
from steelflow.step import Produces, Step

INDEX_COLUMNS = ["condition", "path", "label", "sha256"]


@dataclass(frozen=True)
class CorruptResult:
    conditions: list[str]
    n_images: int


def corrupt(
    data: DataConfig,
    cfg: CorruptConfig,
    test_split: Path = paths.SPLITS / "test.csv",
    data_root: Path = paths.DATA,
    out_dir: Path = paths.CORRUPTED,
    cache_dir: Path = paths.CACHE / "corrupted",
    grid_path: Path = paths.CORRUPTIONS_PNG,
) -> CorruptResult:
    """Corrupt every test image under every condition; cache the results and draw the example grid."""
    test = manifest.read(test_split)
    classes = manifest.class_names(test["label"], data.classes)
    channels = images.channels_for(test["mode"].tolist())
    files = [(Path(data_root) / p, sha) for p, sha in zip(test["path"], test["sha256"], strict=True)]
    originals = [  # each file must still be the one validated (a later ingest may have replaced it)
        images.load(f, channels, data.white_level, sha) for f, sha in track(files, "load test split")
    ]

    picks = grid_picks(test["label"].tolist(), classes, cfg.grid_per_class)
    examples: dict[str, list[np.ndarray]] = {"original": [originals[i] for i in picks]}
    rows: list[dict[str, str]] = []
    with atomic.atomic_path(out_dir) as staged_images, atomic.atomic_path(cache_dir) as staged_cache:
        staged_cache.mkdir()
        for condition in cfg.all_conditions:
            corrupted = []
            for img, (_, row) in zip(originals, test.iterrows(), strict=True):
                out = corruptions.apply(
                    img, condition, corruptions.rng_for(cfg.seed, row["sha256"], condition.name)
                )
                rel = Path(condition.name) / row["label"] / f"{Path(row['path']).stem}.png"
                (staged_images / rel).parent.mkdir(parents=True, exist_ok=True)
                images.save_png(out, staged_images / rel)
                rows.append(
                    {
                        "condition": condition.name,
                        "path": rel.as_posix(),
                        "label": row["label"],
                        "sha256": row["sha256"],
                    }
                )
                corrupted.append(out)
            examples[condition.name] = [corrupted[i] for i in picks]
            cached = cache.resized_set(
                corrupted, test["label"].tolist(), test["sha256"].tolist(), classes, data.cache_size
            )
            cache.save(cached, staged_cache / f"{condition.name}.npz")
        pd.DataFrame(rows, columns=INDEX_COLUMNS).to_csv(staged_images / "index.csv", index=False)

    corruption_grid(examples, [test["label"].iloc[i] for i in picks], grid_path)
    return CorruptResult([c.name for c in cfg.all_conditions], len(test))


def summary(result: CorruptResult) -> list[str]:
    return [
        f"corrupt: {result.n_images} test images × {len(result.conditions)} conditions → {paths.CORRUPTED}/"
    ]


STEP = Step(
    "corrupt",
    run=corrupt,
    help="Corrupted copies of the test split → data/corrupted/, data/cache/corrupted, "
    "reports/corruptions.png.",
    sections=("data", "corrupt"),
    inputs=(paths.SPLITS / "test.csv", paths.IMAGES),
    params=("data.classes", "data.cache_size", "data.white_level", "corrupt"),
    outs=(paths.CORRUPTED, paths.CACHE_CORRUPTED, paths.CORRUPTIONS_PNG),
    plots=(paths.CORRUPTIONS_PNG,),
    summary=summary,
    consumes=("dataset", "splits"),
    produces=(
        Produces("corrupted", "Dataset"),
        Produces(
            "grid", "HTML", page=paths.CORRUPTIONS_PNG, title="Corrupted test images: one row per condition"
        ),
    ),
)
