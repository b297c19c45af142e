"""Step 3, split: stratified, seeded train / val / test splits of the validated manifest.

Reads params sections ``split`` and ``data`` (``classes``, ``cache_size``, ``shard_size``, ``white_level``),
``data/manifest.csv`` and ``reports/validation.json``, which must say success and record this manifest's
sha256 (so data ingested after validation is never split); its ``dropped`` duplicates are left out, and each
of its near-duplicate groups lands whole in one split. Writes
``data/splits/{train,val,test}.csv`` (manifest rows; paths relative to the manifest's folder),
``reports/split.json`` (counts per class per split) and the decoded cache ``data/cache/splits/<split>/``, a
shard set (:mod:`steelflow.data.shards`: WebDataset tar shards of ``data.shard_size`` images, and an index).
Paper §4.3: 70 % train / 30 % test; ``split.val`` of train is held out for early stopping and tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from steelflow import atomic, paths
from steelflow.config import DataConfig, SplitConfig
from steelflow.data import cache, images, manifest
from steelflow.errors import DataError
from steelflow.progress import track
from steelflow.step import Produces, Step


@dataclass(frozen=True)
class SplitResult:
    counts: dict[str, dict[str, int]]


def split(
    data: DataConfig,
    cfg: SplitConfig,
    manifest_path: Path = paths.MANIFEST,
    validation_path: Path = paths.VALIDATION_JSON,
    splits_dir: Path = paths.SPLITS,
    report_path: Path = paths.SPLIT_JSON,
    cache_dir: Path = paths.CACHE_SPLITS,
) -> SplitResult:
    """Split the validated manifest and cache each split's decoded images."""
    manifest_path = Path(manifest_path)
    table = manifest.read(manifest_path)
    report = manifest.require_validated(manifest_path, validation_path)
    table = table[~table["path"].isin(report.get("dropped", []))].reset_index(drop=True)
    groups = [g["paths"] for g in report.get("near_duplicates", {}).get("groups", [])]
    parts = assign(table, cfg, groups)
    leaks = find_leaks(parts, groups)
    if leaks:
        raise DataError("split leak: the same image is in more than one split: " + "; ".join(leaks))

    classes = manifest.class_names(table["label"], data.classes)
    channels = images.channels_for(table["mode"].tolist())
    # Both outputs or neither: a file that fails its sha256 check leaves the previous splits and cache.
    with atomic.atomic_path(splits_dir) as staged_splits, atomic.atomic_path(cache_dir) as staged_cache:
        staged_splits.mkdir()
        staged_cache.mkdir()
        for i, (name, part) in enumerate(parts.items()):
            part.to_csv(staged_splits / f"{name}.csv", index=False)
            # the cache in a seeded shuffled order, not the manifest's class-by-class one: a shuffle
            # window of a few shards (train.loader.shuffle_window) then still holds every class
            part = part.iloc[np.random.default_rng([cfg.seed, i]).permutation(len(part))]
            files = [
                (manifest_path.parent / p, sha) for p, sha in zip(part["path"], part["sha256"], strict=True)
            ]
            decoded = (
                images.load(f, channels, data.white_level, sha) for f, sha in track(files, f"cache {name}")
            )
            records = cache.resized_records(  # streamed: one image in memory at a time
                decoded, part["label"].tolist(), part["sha256"].tolist(), data.cache_size
            )
            cache.write(records, staged_cache / name, classes, data.shard_size)  # cache.split_path's layout

    counts = {name: {c: int((part["label"] == c).sum()) for c in classes} for name, part in parts.items()}
    atomic.write_json(
        report_path,
        {
            "seed": cfg.seed,
            "ratios": {"test": cfg.test, "val": cfg.val},
            "classes": classes,
            "totals": {name: len(part) for name, part in parts.items()},
            "counts": counts,
        },
    )
    return SplitResult(counts)


def assign(
    table: pd.DataFrame, cfg: SplitConfig, groups: list[list[str]] | None = None
) -> dict[str, pd.DataFrame]:
    """Stratified by label and seeded; rows keep manifest order inside each split.

    Each group of ``groups`` (manifest paths: near-duplicates) is split as one unit, represented by its first
    row present, so it lands whole in one split. Without groups this is a plain stratified split.
    """
    unit = _units(table, groups or [])
    first = table[~unit.duplicated()]
    try:
        rest, test = train_test_split(
            first, test_size=cfg.test, stratify=first["label"], random_state=cfg.seed
        )
        if cfg.val > 0:
            train, val = train_test_split(
                rest, test_size=cfg.val, stratify=rest["label"], random_state=cfg.seed
            )
        else:
            train, val = rest, rest.iloc[0:0]
    except ValueError as e:  # e.g. a class with a single image cannot be stratified
        raise DataError(f"cannot split with split.test={cfg.test}, split.val={cfg.val}: {e}") from None
    return {
        name: table[unit.isin(unit[part.index])]
        for name, part in (("train", train), ("val", val), ("test", test))
    }


def find_leaks(parts: dict[str, pd.DataFrame], groups: list[list[str]] | None = None) -> list[str]:
    """Each sha256, and each near-duplicate group, found in two or more splits, with the files involved."""
    seen = pd.concat([part.assign(split=name) for name, part in parts.items()])
    leaks = []
    for key, label in ((seen["sha256"], "sha256 "), (_units(seen, groups or []), "")):
        spread = seen.groupby(key.to_numpy())["split"].nunique()
        for value in spread[spread > 1].index:
            rows = seen[key.to_numpy() == value]
            name = f"{label}{value[:12]}…" if label else f"near-duplicate group of {rows['path'].iloc[0]}"
            leaks.append(f"{name} in {sorted(set(rows['split']))}: {', '.join(rows['path'])}")
    return leaks


def _units(table: pd.DataFrame, groups: list[list[str]]) -> pd.Series:
    """Per row, what it is split with: the first path of its near-duplicate group, or its own path."""
    first_of = {p: g[0] for g in groups for p in g}
    return table["path"].map(lambda p: first_of.get(p, p))


def summary(result: SplitResult) -> list[str]:
    totals = ", ".join(f"{name} {sum(c.values())}" for name, c in result.counts.items())
    return [f"split: {totals} → {paths.SPLITS}/"]


STEP = Step(
    "split",
    run=split,
    help="Stratified train/val/test split → data/splits/*.csv, reports/split.json, data/cache/splits.",
    sections=("data", "split"),
    inputs=(paths.MANIFEST, paths.IMAGES, paths.VALIDATION_JSON),
    params=("data.classes", "data.cache_size", "data.shard_size", "data.white_level", "split"),
    outs=(paths.SPLITS, paths.CACHE_SPLITS, paths.SPLIT_JSON),
    summary=summary,
    consumes=("dataset", "report"),
    produces=(Produces("splits", "Dataset"), Produces("metrics", "Metrics", metrics=paths.SPLIT_JSON)),
)
