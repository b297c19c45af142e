"""Step 4, corrupt: Fu-style corrupted copies of the test split, one per condition (paper, Table 1).

Reads params sections ``corrupt`` (seed, the Table 1 and hold-out conditions, and the graded ladders of
``corrupt.graded``: severity ``s`` of family ``f`` is the condition ``f_s<s>``) and ``data``
(``classes``, ``cache_size``, ``shard_size``), and ``data/splits/test.csv``. Writes
``data/corrupted/<condition>/<class>/<stem>.png``, ``data/corrupted/index.csv`` (condition, path relative
to ``data/corrupted``, label, sha256 of the source image), the decoded cache
``data/cache/corrupted/<condition>/`` (a shard set, :mod:`steelflow.data.shards`) and
``reports/corruptions.png``, a grid of classes × conditions (without the graded sets). The corruption
formulas are in :mod:`steelflow.data.corruptions`. Each image's randomness comes from (``corrupt.seed``,
the image's sha256, the condition name), so the output does not depend on order.

Under Kubeflow each condition is a part, one pod each (:func:`corrupt_part`: the copies and the cache of
that condition; a graded family's severities make one part); :func:`corrupt_merge` then writes the index
and the grid from every condition's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from steelflow import atomic, paths
from steelflow.config import CorruptConfig, DataConfig
from steelflow.data import cache, corruptions, images, manifest
from steelflow.errors import DataError
from steelflow.progress import track
from steelflow.reports import corruption_grid, grid_picks
from steelflow.step import Parts, Produces, Step

INDEX_COLUMNS = ["condition", "path", "label", "sha256"]
GRADED_PART = "graded:"  # part key of a graded family: "graded:noise" (":" is in no condition's name)


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
    cache_dir: Path = paths.CACHE_CORRUPTED,
    grid_path: Path = paths.CORRUPTIONS_PNG,
) -> CorruptResult:
    """Corrupt every test image under every condition; cache the results and draw the example grid.

    One process does every condition; under Kubeflow :func:`corrupt_part` does one condition in its own pod
    and :func:`corrupt_merge` writes the index and the grid, the same files as here.
    """
    test, classes, originals = _test_split(data, test_split, data_root)
    names = condition_names(cfg)
    graded_test, graded_originals = _graded_images(cfg, test, classes, originals)
    with atomic.atomic_path(out_dir) as staged_images, atomic.atomic_path(cache_dir) as staged_cache:
        staged_cache.mkdir()
        for conditions, rows, images_ in [
            (cfg.all_conditions, test, originals),
            (cfg.graded_conditions, graded_test, graded_originals),
        ]:
            for condition in conditions:
                corrupted = _corrupt(images_, rows, condition, cfg.seed, staged_images / condition.name)
                _cache(corrupted, rows, classes, data, staged_cache, condition.name)
        (staged_images / "index.csv").write_text(_index(test, cfg, classes).to_csv(index=False))
    _grid(data, cfg, test, classes, data_root, out_dir, grid_path)
    return CorruptResult(names, len(test))


def condition_names(cfg: CorruptConfig) -> list[str]:
    """Every set corrupt writes: ``corrupt.conditions``, ``corrupt.holdout``, then the graded ladders."""
    return [c.name for c in cfg.all_conditions] + cfg.graded_names


def part_keys(data: DataConfig, cfg: CorruptConfig) -> list[str]:
    """The parts of a Kubeflow corrupt: one per condition, ``corrupt.conditions`` then ``corrupt.holdout``,
    then one per graded family (``graded:<family>``, its severities together)."""
    families = list(cfg.graded.families) if cfg.graded is not None else []
    return [c.name for c in cfg.all_conditions] + [GRADED_PART + f for f in families]


def corrupt_part(
    data: DataConfig,
    cfg: CorruptConfig,
    key: str,
    test_split: Path = paths.SPLITS / "test.csv",
    data_root: Path = paths.DATA,
    out_dir: Path = paths.CORRUPTED,
    cache_dir: Path = paths.CACHE_CORRUPTED,
) -> list[Path]:
    """One condition of a Kubeflow corrupt (its own pod), or every severity of a graded family: the copies
    under ``out_dir/<condition>/`` and the caches in ``cache_dir``. Returns the paths written."""
    family = key[len(GRADED_PART) :] if key.startswith(GRADED_PART) else None
    if cfg.graded is not None and family in cfg.graded.families:
        conditions = cfg.graded.conditions(family)
    else:
        conditions = [c for c in cfg.all_conditions if c.name == key]
    if not conditions:
        raise DataError(
            f"corrupt part {key!r}: no such condition in corrupt.conditions or corrupt.holdout, nor family "
            "in corrupt.graded"
        )
    test, classes, originals = _test_split(data, test_split, data_root)
    if family is not None:
        test, originals = _graded_images(cfg, test, classes, originals)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for condition in conditions:
        with atomic.atomic_path(Path(out_dir) / condition.name) as staged:
            corrupted = _corrupt(originals, test, condition, cfg.seed, staged)
        cached = _cache(corrupted, test, classes, data, Path(cache_dir), condition.name)
        written += [Path(out_dir) / condition.name, cached]
    return written


def corrupt_merge(
    data: DataConfig,
    cfg: CorruptConfig,
    keys: list[str],
    test_split: Path = paths.SPLITS / "test.csv",
    data_root: Path = paths.DATA,
    out_dir: Path = paths.CORRUPTED,
    grid_path: Path = paths.CORRUPTIONS_PNG,
) -> CorruptResult:
    """The fan-in of a Kubeflow corrupt: with every condition's copies in ``out_dir`` (linked in from the
    parts' artifacts), write the index and draw the grid. A condition missing, or one whose folder holds
    other files than the test split's, stops it. (``keys``: the parts that ran; the conditions they wrote
    are read from ``cfg``.)"""
    test = manifest.read(test_split)
    classes = manifest.class_names(test["label"], data.classes)
    names = condition_names(cfg)
    index = _index(test, cfg, classes)
    for key, expected in index.groupby("condition", sort=False)["path"]:
        folder = Path(out_dir) / key
        found = {p.relative_to(out_dir).as_posix() for p in folder.rglob("*") if p.is_file()}
        if found != set(expected):
            raise DataError(
                f"corrupt part {key}: {folder} holds {len(found)} file(s), not the {len(expected)} copies of "
                "the test split (did its task run on this split?)"
            )
    atomic.write_text(Path(out_dir) / "index.csv", index.to_csv(index=False))
    _grid(data, cfg, test, classes, data_root, out_dir, grid_path)
    return CorruptResult(names, len(test))


def _test_split(data: DataConfig, test_split: Path, data_root: Path) -> tuple[pd.DataFrame, list, list]:
    """The test split, its classes, and its images decoded (each still the file that was validated)."""
    test = manifest.read(test_split)
    classes = manifest.class_names(test["label"], data.classes)
    channels = images.channels_for(test["mode"].tolist())
    files = [(Path(data_root) / p, sha) for p, sha in zip(test["path"], test["sha256"], strict=True)]
    originals = [  # each file must still be the one validated (a later ingest may have replaced it)
        images.load(f, channels, data.white_level, sha) for f, sha in track(files, "load test split")
    ]
    return test, classes, originals


def _corrupt(
    originals: list[np.ndarray], test: pd.DataFrame, condition: Any, seed: int, folder: Path
) -> list[np.ndarray]:
    """Every test image under ``condition``, saved as ``folder/<class>/<stem>.png``; returns them."""
    corrupted = []
    for img, (_, row) in zip(originals, test.iterrows(), strict=True):
        out = corruptions.apply(img, condition, corruptions.rng_for(seed, row["sha256"], condition.name))
        target = folder / _relative(row)
        target.parent.mkdir(parents=True, exist_ok=True)
        images.save_png(out, target)
        corrupted.append(out)
    return corrupted


def _cache(
    corrupted: list[np.ndarray],
    test: pd.DataFrame,
    classes: list[str],
    data: DataConfig,
    folder: Path,
    name: str,
) -> Path:
    """The decoded cache of one condition, the shard set ``folder/<name>`` (``folder`` is the
    ``corrupted`` folder of :func:`steelflow.data.cache.condition_path`); returns its path."""
    records = cache.resized_records(
        corrupted, test["label"].tolist(), test["sha256"].tolist(), data.cache_size
    )
    path = Path(folder) / name
    cache.write(records, path, classes, data.shard_size)
    return path


def _graded_images(
    cfg: CorruptConfig, test: pd.DataFrame, classes: list[str], originals: list[np.ndarray]
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The test images the graded ladders corrupt: all, or the first ``corrupt.graded.per_class`` of each
    class (in the split's order), which keeps 50 more sets affordable on a CPU."""
    per_class = cfg.graded.per_class if cfg.graded is not None else None
    if per_class is None:
        return test, originals
    keep = sorted(grid_picks(test["label"].tolist(), classes, per_class))
    return test.iloc[keep].reset_index(drop=True), [originals[i] for i in keep]


def _index(test: pd.DataFrame, cfg: CorruptConfig, classes: list[str]) -> pd.DataFrame:
    """``data/corrupted/index.csv``: every test image under every condition, condition by condition (the
    graded ones: the images :func:`_graded_images` picks)."""
    graded, _ = _graded_images(cfg, test, classes, [None] * len(test))
    blocks = [([c.name for c in cfg.all_conditions], test), (cfg.graded_names, graded)]
    rows = [
        {
            "condition": name,
            "path": (Path(name) / _relative(row)).as_posix(),
            "label": row["label"],
            "sha256": row["sha256"],
        }
        for names, block in blocks
        for name in names
        for _, row in block.iterrows()
    ]
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def _relative(row: pd.Series) -> Path:
    return Path(row["label"]) / f"{Path(row['path']).stem}.png"


def _grid(
    data: DataConfig,
    cfg: CorruptConfig,
    test: pd.DataFrame,
    classes: list[str],
    data_root: Path,
    out_dir: Path,
    grid_path: Path,
) -> None:
    """The example grid, from the files written: the originals picked, then their copies under each
    condition (PNG keeps the uint8 pixels exactly, so it is the grid of the arrays themselves)."""
    picks = grid_picks(test["label"].tolist(), classes, cfg.grid_per_class)
    channels = images.channels_for(test["mode"].tolist())
    rows = [test.iloc[i] for i in picks]
    examples = {
        "original": [
            images.load(Path(data_root) / r["path"], channels, data.white_level, r["sha256"]) for r in rows
        ]
    }
    for condition in cfg.all_conditions:
        examples[condition.name] = [
            np.asarray(Image.open(Path(out_dir) / condition.name / _relative(r))) for r in rows
        ]
    corruption_grid(examples, [r["label"] for r in rows], grid_path)


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
    params=("data.classes", "data.cache_size", "data.shard_size", "data.white_level", "corrupt"),
    uncached=(paths.CORRUPTED,),  # the per-image PNGs, to look at; DVC stores their shard sets
    outs=(paths.CACHE_CORRUPTED, paths.CORRUPTIONS_PNG),
    plots=(paths.CORRUPTIONS_PNG,),
    summary=summary,
    consumes=("dataset", "splits"),
    produces=(
        Produces("corrupted", "Dataset"),
        Produces(
            "grid", "HTML", page=paths.CORRUPTIONS_PNG, title="Corrupted test images: one row per condition"
        ),
    ),
    parts=Parts(keys=part_keys, part=corrupt_part, merge=corrupt_merge),
)
