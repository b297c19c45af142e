"""Image-quality measures, taken at ingest into the manifest; validation flags images from them.

Measured on the decoded grayscale image (reduced to at most ``MEASURE_SIDE`` pixels a side, so the figures do
not depend on resolution): ``brightness`` (mean, 0..255), ``sharpness`` (standard deviation of the Laplacian
over that of the image: low when detail is missing for the image's contrast, i.e. blur) and ``entropy``
(of the 256-bin histogram, bits: near 0 for a blank or saturated image). Odd size compares each image's
sides with the median of the data set (in validation, which sees them all).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

MEASURE_SIDE = 512
COLUMNS = ("brightness", "sharpness", "entropy")
EMPTY = dict.fromkeys(COLUMNS, 0.0)  # an undecodable file: no measures (validation skips it)


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
