"""Image-quality measures (at ingest, into the manifest) and the flags validation raises from them.

Measured on the decoded grayscale image (reduced to at most ``MEASURE_SIDE`` pixels a side, so the figures do
not depend on resolution): ``brightness`` (mean, 0..255), ``sharpness`` (standard deviation of the Laplacian
over that of the image: low when detail is missing for the image's contrast, i.e. blur) and ``entropy``
(of the 256-bin histogram, bits: near 0 for a blank or saturated image). Odd size compares each image's
sides with the median of the data set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from steelflow.config import QualityConfig

MEASURE_SIDE = 512
COLUMNS = ("brightness", "sharpness", "entropy")
EMPTY = dict.fromkeys(COLUMNS, 0.0)  # an undecodable file: no measures (validation skips it)
EXAMPLES = 5  # files named per flag


def measure(gray: np.ndarray) -> dict[str, float]:
    factor = -(-max(gray.shape) // MEASURE_SIDE)
    if factor > 1:
        gray = np.asarray(Image.fromarray(gray).reduce(factor))
    x = gray.astype(np.float64)
    laplacian = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    spread = x.std()
    sharpness = laplacian.std() / spread if spread > 0 and laplacian.size else 0.0
    p = np.bincount(gray.ravel(), minlength=256) / gray.size
    p = p[p > 0]
    return {
        "brightness": round(float(x.mean()), 3),
        "sharpness": round(float(sharpness), 4),
        "entropy": round(float(-(p * np.log2(p)).sum()), 4) + 0.0,
    }


def flags(table: pd.DataFrame, cfg: QualityConfig) -> dict[str, dict[str, Any]]:
    """Each flag: its rule, how many decodable images raise it, and the first few of them."""
    ok = table[table["error"] == ""]
    width, height = ok["width"].median(), ok["height"].median()
    odd = ~(ok["width"].between(width / cfg.odd_size, width * cfg.odd_size)) | ~(
        ok["height"].between(height / cfg.odd_size, height * cfg.odd_size)
    )
    rules = {
        "dark": (ok["brightness"] < cfg.dark, f"mean brightness < {cfg.dark:g}"),
        "bright": (ok["brightness"] > cfg.bright, f"mean brightness > {cfg.bright:g}"),
        "blurry": (ok["sharpness"] < cfg.blurry, f"sharpness < {cfg.blurry:g}"),
        "low_information": (ok["entropy"] < cfg.low_information, f"entropy < {cfg.low_information:g} bits"),
        "odd_size": (odd, f"a side over {cfg.odd_size:g}× off the median {width:g}×{height:g}"),
    }
    return {
        name: {"rule": rule, "count": int(hit.sum()), "examples": ok.loc[hit, "path"].head(EXAMPLES).tolist()}
        for name, (hit, rule) in rules.items()
    }
