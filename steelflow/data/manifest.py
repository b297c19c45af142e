"""The manifest: one row per ingested image, the table every later step starts from.

Columns (a public contract, see README): ``path`` (relative to the project root, POSIX), ``label``,
``sha256`` (of the file's bytes), ``width``, ``height`` (as displayed, after EXIF orientation), ``mode``
(PIL mode of the file), ``bytes`` (file size), ``error`` (empty when the file decodes as an image; otherwise
why it does not — validation reports these), ``format`` (PIL format: BMP, JPEG, PNG, TIFF…),
``decode_note`` (what decoding did: scaling, orientation, conversions; empty when nothing), ``phash`` (64-bit
perceptual hash, 16 hex digits) and the quality measures ``brightness``, ``sharpness`` and ``entropy``
(:mod:`steelflow.data.quality`).

Validation records the manifest's sha256 in its report; :func:`require_validated` is how every later step
checks that the manifest it reads is the one that passed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from steelflow import atomic
from steelflow.errors import DataError

COLUMNS = [
    "path",
    "label",
    "sha256",
    "width",
    "height",
    "mode",
    "bytes",
    "error",
    "format",
    "decode_note",
    "phash",
    "brightness",
    "sharpness",
    "entropy",
]
TEXT = ("path", "label", "sha256", "mode", "error", "format", "decode_note", "phash")
DTYPES = dict.fromkeys(TEXT, str)


def read(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path} (run `steelflow ingest` first)")
    df = pd.read_csv(path, dtype=DTYPES, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing} (written by an older steelflow? rerun ingest)")
    for col in ("width", "height", "bytes"):
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype(int)
    for col in ("brightness", "sharpness", "entropy"):
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0.0).astype(float)
    return df[COLUMNS]


def write(df: pd.DataFrame, path: str | Path) -> None:
    with atomic.atomic_path(path) as tmp:
        df[COLUMNS].to_csv(tmp, index=False)


def class_names(labels: list[str] | pd.Series, expected: list[str] | None) -> list[str]:
    """Class names in label-index order: ``data.classes`` when given, else the labels found, sorted."""
    return list(expected) if expected is not None else sorted(set(labels))


def sha256(path: str | Path) -> str:
    """The manifest file's sha256: what validation records, and what later steps compare with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def require_validated(manifest_path: str | Path, validation_path: str | Path) -> dict[str, Any]:
    """The validation report, if it passed and was made from exactly this manifest; else a DataError."""
    validation_path = Path(validation_path)
    if not validation_path.is_file():
        raise DataError(f"{validation_path} not found: run `steelflow validate` first")
    report = json.loads(validation_path.read_text())
    if not report.get("success"):
        raise DataError(f"{validation_path} says validation failed: fix the data, then rerun validate")
    recorded, actual = report.get("manifest_sha256"), sha256(manifest_path)
    if recorded != actual:
        raise DataError(
            f"{manifest_path} (sha256 {actual}) is not the manifest that passed validation "
            f"({validation_path} records {recorded or 'no manifest hash'}): run `steelflow validate` again"
        )
    return report
