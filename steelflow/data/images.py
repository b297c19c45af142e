"""Reading images: metadata for the manifest, and decoding into uint8 arrays for the cache and corruptions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

GRAYSCALE_MODES = frozenset({"1", "L", "I;16", "I", "F"})


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inspect(path: Path) -> dict[str, object]:
    """The manifest fields of one file. A file that does not fully decode gets its error, not an exception."""
    data = path.read_bytes()
    row: dict[str, object] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "width": 0,
        "height": 0,
        "mode": "",
        "error": "",
    }
    try:
        with Image.open(path) as im:
            im.load()  # Image.open reads only the header: load() catches truncated files
            row.update(width=im.width, height=im.height, mode=im.mode)
    except Exception as e:  # noqa: BLE001 - any decoder failure is data to report, not a crash
        row["error"] = f"{type(e).__name__}: {e}".replace("\n", " ")
    return row


def channels_for(modes: list[str]) -> int:
    """1 when every image is grayscale, else 3 (grayscale images are then stored as RGB)."""
    return 1 if all(m in GRAYSCALE_MODES for m in modes) else 3


def load(path: Path, channels: int) -> np.ndarray:
    """Decode to uint8 (H, W) for ``channels == 1`` or (H, W, 3) for ``channels == 3``."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L" if channels == 1 else "RGB"))


def save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG")


def resize(array: np.ndarray, size: int) -> np.ndarray:
    """Square resize with antialiasing (Pillow's bilinear filter widens its support when shrinking)."""
    return np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR))
