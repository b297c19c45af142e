"""The manifest: one row per ingested image, the table every later step starts from.

Columns (a public contract, see README): ``path`` (relative to the project root, POSIX), ``label``,
``sha256`` (of the file's bytes), ``width``, ``height``, ``mode`` (PIL mode), ``bytes`` (file size) and
``error`` (empty when the file decodes as an image; otherwise why it does not — validation reports these).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from steelflow import io
from steelflow.errors import DataError

COLUMNS = ["path", "label", "sha256", "width", "height", "mode", "bytes", "error"]
DTYPES = {"path": str, "label": str, "sha256": str, "mode": str, "error": str}


def read(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path} (run `steelflow ingest` first)")
    df = pd.read_csv(path, dtype=DTYPES, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    for col in ("width", "height", "bytes"):
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype(int)
    return df[COLUMNS]


def write(df: pd.DataFrame, path: str | Path) -> None:
    with io.atomic_path(path) as tmp:
        df[COLUMNS].to_csv(tmp, index=False)


def class_names(labels: list[str] | pd.Series, expected: list[str] | None) -> list[str]:
    """Class names in label-index order: ``data.classes`` when given, else the labels found, sorted."""
    return list(expected) if expected is not None else sorted(set(labels))
