"""Step 3, split: stratified, seeded train / val / test splits of the validated manifest.

Reads params sections ``split`` and ``data`` (``classes``, ``cache_size``), ``data/manifest.csv`` and
``reports/validation.json`` (which must say success; its ``dropped`` duplicates are left out). Writes
``data/splits/{train,val,test}.csv`` (manifest rows; paths relative to the manifest's folder),
``reports/split.json`` (counts per class per split) and the decoded cache ``data/cache/splits/<split>.npz``.
Paper §4.3: 70 % train / 30 % test; ``split.val`` of train is held out for early stopping and tuning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from steelflow import io, paths
from steelflow.config import DataConfig, SplitConfig
from steelflow.data import cache, images, manifest
from steelflow.errors import DataError
from steelflow.progress import track


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
    cache_dir: Path = paths.CACHE / "splits",
) -> SplitResult:
    """Split the validated manifest and cache each split's decoded images."""
    manifest_path = Path(manifest_path)
    table = _validated_rows(manifest.read(manifest_path), Path(validation_path))
    parts = assign(table, cfg)
    leaks = find_leaks(parts)
    if leaks:
        raise DataError("split leak: the same image (sha256) is in more than one split: " + "; ".join(leaks))

    classes = manifest.class_names(table["label"], data.classes)
    channels = images.channels_for(table["mode"].tolist())
    with io.atomic_path(splits_dir) as staged:
        staged.mkdir()
        for name, part in parts.items():
            part.to_csv(staged / f"{name}.csv", index=False)
    with io.atomic_path(cache_dir) as staged:
        staged.mkdir()
        for name, part in parts.items():
            files = [manifest_path.parent / p for p in part["path"]]
            decoded = (images.load(f, channels, data.white_level) for f in track(files, f"cache {name}"))
            cached = cache.build(
                decoded, part["label"].tolist(), part["sha256"].tolist(), classes, data.cache_size
            )
            cache.save(cached, staged / f"{name}.npz")

    counts = {name: {c: int((part["label"] == c).sum()) for c in classes} for name, part in parts.items()}
    io.write_json(
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


def assign(table: pd.DataFrame, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    """Stratified by label and seeded; rows keep manifest order inside each split."""
    try:
        rest, test = train_test_split(
            table, test_size=cfg.test, stratify=table["label"], random_state=cfg.seed
        )
        if cfg.val > 0:
            train, val = train_test_split(
                rest, test_size=cfg.val, stratify=rest["label"], random_state=cfg.seed
            )
        else:
            train, val = rest, rest.iloc[0:0]
    except ValueError as e:  # e.g. a class with a single image cannot be stratified
        raise DataError(f"cannot split with split.test={cfg.test}, split.val={cfg.val}: {e}") from None
    return {name: part.sort_index() for name, part in (("train", train), ("val", val), ("test", test))}


def find_leaks(parts: dict[str, pd.DataFrame]) -> list[str]:
    """Each sha256 found in two or more splits, with the files involved."""
    seen = pd.concat([part.assign(split=name) for name, part in parts.items()])
    spread = seen.groupby("sha256")["split"].nunique()
    return [
        f"{sha[:12]}… in {sorted(set(rows['split']))}: {', '.join(rows['path'])}"
        for sha, rows in seen[seen["sha256"].isin(spread[spread > 1].index)].groupby("sha256")
    ]


def _validated_rows(table: pd.DataFrame, validation_path: Path) -> pd.DataFrame:
    if not validation_path.is_file():
        raise DataError(f"{validation_path} not found: run `steelflow validate` first")
    report = json.loads(validation_path.read_text())
    if not report.get("success"):
        raise DataError(f"{validation_path} says validation failed: fix the data, then rerun validate")
    return table[~table["path"].isin(report.get("dropped", []))].reset_index(drop=True)
