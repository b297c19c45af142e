"""Per-image measures of a batch or a reference: the manifest's quality measures and the model's confidence.

Quality comes from the manifest's own code (:func:`steelflow.data.images.inspect`, which measures with
:mod:`steelflow.data.quality`), so a batch is measured exactly as ingest measured the reference:
``brightness``, ``sharpness``, ``entropy``, ``size`` (the side of a square of the image's area,
``sqrt(width × height)``) and ``mode`` (the file's PIL mode). Confidence comes from the registered model
as ``steelflow predict`` runs it (:func:`steelflow.serving.predict.classify`): ``max_softmax`` (its top
probability) and ``prediction_entropy`` (of its answer, bits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelflow.config import DataConfig
from steelflow.data import images
from steelflow.errors import DataError

QUALITY = ("brightness", "sharpness", "entropy", "size", "mode")
CONFIDENCE = {"max_softmax": "max_softmax", "entropy": "prediction_entropy"}  # monitor.confidence → column


def quality(files: list[Path], data: DataConfig) -> pd.DataFrame:
    """``path`` and the quality measures of each file; a file that does not decode is a :class:`DataError`
    naming it (and how many others failed), raised before anything is compared or written."""
    rows, bad = [], []
    for path in files:
        try:
            row = images.inspect(path, data.max_pixels, data.white_level)
        except OSError as e:
            row = {"error": f"cannot read: {e.strerror or e}"}
        if row["error"]:
            bad.append((path, row["error"]))
        else:
            rows.append(
                {
                    "path": str(path),
                    **{k: row[k] for k in ("brightness", "sharpness", "entropy")},
                    "width": row["width"],
                    "height": row["height"],
                    "mode": row["mode"],
                }
            )
    if bad:
        path, error = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{path}: not a usable image: {error}{more}")
    return from_manifest(pd.DataFrame(rows))


def from_manifest(rows: pd.DataFrame) -> pd.DataFrame:
    """The quality measures from manifest-shaped rows (``width``, ``height`` → ``size``)."""
    frame = rows[["path", "brightness", "sharpness", "entropy", "mode"]].copy()
    frame["size"] = np.sqrt(rows["width"].astype(float) * rows["height"].astype(float)).round(3)
    frame["mode"] = frame["mode"].astype(str)
    return frame[["path", *QUALITY]].reset_index(drop=True)


def confidence(model: Any, files: list[Path], batch_size: int) -> pd.DataFrame:
    """``max_softmax`` and ``prediction_entropy`` (bits) of the model's answer for each file; a file the
    model cannot classify is a :class:`DataError` naming it."""
    from steelflow.serving.predict import classify

    rows = classify(model, files, batch_size)
    bad = rows[rows["error"] != ""]
    if len(bad):
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{bad.iloc[0]['path']}: not classified: {bad.iloc[0]['error']}{more}")
    p = rows[[c for c in rows.columns if c.startswith("p_")]].to_numpy(dtype=float)
    if p.size == 0:
        raise DataError("the model answered no class probabilities (p_<class> columns)")
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return pd.DataFrame({"max_softmax": p.max(axis=1), "prediction_entropy": entropy + 0.0})
