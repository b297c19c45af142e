"""Reading images, faithfully: the one decoder that ingest, the cache, corruptions and the served model use.

Every image becomes uint8 grayscale (H, W) or RGB (H, W, 3) by explicit rules, and what was done is said in
a short note (the manifest's ``decode_note``):

* **EXIF orientation** is applied, so an image is decoded (and measured) as it is displayed;
* **16-bit and 32-bit grayscale** (``I;16``, ``I``, ``F``) are scaled to 0..255 linearly, never clipped:
  by the image's own min..max (``white_level`` null), or from 0..``white_level`` (e.g. 4095 for a 12-bit
  camera), in which case a value above the white level is an error, not a clip;
* **palette** images become RGB (or RGBA when the palette has transparency); **1-bit** becomes 0/255;
  **CMYK** becomes RGB (Pillow's conversion, without an ICC profile);
* **alpha** (``LA``, ``RGBA``, ``PA``) is dropped when every pixel is opaque, else composited on black;
* **several frames** (a multi-page TIFF, an animated GIF, PNG or WebP) are never cut to the first: such a
  file is refused (:class:`MultiFrame`) unless ingest expands it into one image per frame
  (:func:`expand_frames`, ``data.multi_frame: expand``).

:func:`inspect` reads the header first and decodes the pixels only when the image is within ``max_pixels``,
so an oversized file costs a header read, not its full decode.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from steelflow.data import near_duplicates, quality
from steelflow.errors import DataError

GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})  # more than 8 bits per sample
ALPHA_MODES = frozenset({"LA", "La", "RGBA", "RGBa", "PA"})
BYTES_PER_PIXEL = {"1": 0.125, "L": 1, "P": 1, "LA": 2, "PA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "YCbCr": 3}
BYTES_PER_PIXEL.update({m: 2 for m in ("I;16", "I;16B", "I;16L", "I;16N")}, I=4, F=4)
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Decoded:
    array: np.ndarray  # uint8 (H, W) or (H, W, 3)
    note: str  # what was done to get there ("" when nothing was)


def inspect(path: Path, max_pixels: int, white_level: float | None = None) -> dict[str, object]:
    """The manifest fields of one file. A file that does not decode gets its error, not an exception.

    Width and height are as displayed (after EXIF orientation). Past ``max_pixels`` only the header is read.
    """
    data = path.read_bytes()
    row: dict[str, object] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "width": 0,
        "height": 0,
        "mode": "",
        "error": "",
        "format": "",
        "decode_note": "",
        "phash": "",
        **quality.EMPTY,
    }
    try:
        with open_image(path) as im:
            width, height = displayed_size(im)
            row.update(width=width, height=height, mode=im.mode, format=im.format or "")
            decoded = decode_checked(im, max_pixels, white_level)
    except Exception as e:  # noqa: BLE001 - any decoder failure is data to report, not a crash
        row["error"] = f"{type(e).__name__}: {e}".replace("\n", " ")
        return row
    gray = (
        decoded.array if decoded.array.ndim == 2 else np.asarray(Image.fromarray(decoded.array).convert("L"))
    )
    row.update(decode_note=decoded.note, phash=near_duplicates.phash(gray), **quality.measure(gray))
    return row


class TooLarge(ValueError):
    """An image over ``data.max_pixels``: refused from its header, before any pixel is decoded."""


class MultiFrame(ValueError):
    """A file holding several images (pages, frames): decoding one of them would silently lose the rest."""


def frame_count(im: Image.Image) -> int:
    """The pages of a TIFF or frames of an animated GIF/PNG/WebP; 1 for a still image. Decodes no pixels."""
    return int(getattr(im, "n_frames", 1) or 1)


def frames_in(path: Path) -> int:
    """:func:`frame_count` of a file; 1 when it does not open (its decode error is reported elsewhere)."""
    try:
        with open_image(path) as im:
            return frame_count(im)
    except Exception:  # noqa: BLE001 - inspect() records why the file does not decode
        return 1


def refuse_multi_frame(im: Image.Image) -> None:
    """:class:`MultiFrame` when ``im`` holds more than one image."""
    frames = frame_count(im)
    if frames > 1:
        raise MultiFrame(
            f"{frames} frames ({im.format or 'image'} with several pages or an animation); only one would be "
            "decoded: data.multi_frame: expand stores each as its own image"
        )


def decode_checked(im: Image.Image, max_pixels: int, white_level: float | None) -> Decoded:
    """Refuse an image over ``max_pixels`` from its header, or one of several frames; else decode it,
    keeping its own channels."""
    refuse_multi_frame(im)
    return _decode_frame(im, max_pixels, white_level)


def _decode_frame(im: Image.Image, max_pixels: int, white_level: float | None) -> Decoded:
    """The current frame of ``im``, refused from its header when over ``max_pixels``."""
    width, height = displayed_size(im)
    if width * height > max_pixels:
        raise TooLarge(
            f"{width}×{height} = {width * height / 1e6:.1f} Mpx is over data.max_pixels "
            f"({max_pixels / 1e6:.1f} Mpx); not decoded"
        )
    im.load()  # Image.open reads only the header: load() catches truncated files
    return decode(im, 1 if im.mode in GRAYSCALE_MODES else 3, white_level)


@contextlib.contextmanager
def open_image(source: Path | IO[bytes]) -> Iterator[Image.Image]:
    """``Image.open`` without Pillow's decompression-bomb warning: callers check the size themselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(source) as im:
            yield im


def displayed_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed: EXIF orientations 5-8 swap the stored sides. Reads only the header."""
    # PNG keeps EXIF anywhere in the file, and Pillow decodes the whole image to look past the pixels: use
    # what the header holds (an eXIf chunk before the pixel data, where writers put it).
    header_only = im.format == "PNG" and "exif" not in im.info
    orientation = 1 if header_only else im.getexif().get(_ORIENTATION_TAG, 1)
    return (im.height, im.width) if orientation in _ROTATED else (im.width, im.height)


def channels_for(modes: list[str]) -> int:
    """1 when every image is grayscale, else 3 (grayscale images are then stored as RGB)."""
    return 1 if all(m in GRAYSCALE_MODES for m in modes) else 3


def load(
    path: Path, channels: int, white_level: float | None = None, sha256: str | None = None
) -> np.ndarray:
    """Decode a file to uint8 (H, W) for ``channels == 1`` or (H, W, 3) for ``channels == 3``.

    With ``sha256`` (the manifest's), a file whose bytes changed since it was validated is refused.
    """
    data = Path(path).read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DataError(
            f"{path} changed since it was validated (sha256 {hashlib.sha256(data).hexdigest()[:12]}…, the "
            f"manifest records {sha256[:12]}…): rerun ingest, validate and split"
        )
    with open_image(io.BytesIO(data)) as im:
        try:
            refuse_multi_frame(im)
        except MultiFrame as e:
            raise DataError(f"{path}: {e} (rerun ingest)") from None
        return decode(im, channels, white_level).array


def decode(im: Image.Image, channels: int, white_level: float | None = None) -> Decoded:
    """An opened image → uint8 with ``channels`` channels, by the rules in this module's docstring."""
    notes: list[str] = []
    orientation = im.getexif().get(_ORIENTATION_TAG, 1)
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        notes.append(f"EXIF orientation {orientation} applied")
    if im.mode in WIDE_MODES:
        im = Image.fromarray(scale_to_8bit(np.asarray(im), white_level, notes, im.mode))
    elif im.mode == "1":
        im = im.convert("L")
        notes.append("1-bit → 0/255")
    elif im.mode == "P":
        target = "RGBA" if "transparency" in im.info else "RGB"
        im = im.convert(target)
        notes.append(f"palette → {target}")
    elif im.mode == "CMYK":
        im = im.convert("RGB")
        notes.append("CMYK → RGB (no ICC profile)")
    elif im.mode not in ("L", "RGB", *ALPHA_MODES):
        notes.append(f"{im.mode} → RGB")
        im = im.convert("RGB")
    if im.mode in ALPHA_MODES:
        im = _flatten(im, notes)
    target = "L" if channels == 1 else "RGB"
    if im.mode != target:
        notes.append(f"{im.mode} → {target}")
        im = im.convert(target)
    return Decoded(np.asarray(im), "; ".join(notes))


def scale_to_8bit(
    array: np.ndarray, white_level: float | None, notes: list[str] | None = None, mode: str = ""
) -> np.ndarray:
    """Samples wider than 8 bits → uint8, linearly: from min..max of the image, or from 0..``white_level``."""
    values = array.astype(np.float64)
    what = mode or str(array.dtype)
    if not np.isfinite(values).all():
        raise ValueError(f"{what} image holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if white_level is None:
        span = high - low
        scaled = (values - low) / span * 255 if span > 0 else np.zeros_like(values)
        rule = f"range {low:g}..{high:g}"
    else:
        if low < 0 or high > white_level:
            raise ValueError(
                f"{what} values {low:g}..{high:g} fall outside 0..data.white_level ({white_level:g})"
            )
        scaled, rule = values / white_level * 255, f"white level {white_level:g}"
    if notes is not None:
        notes.append(f"{what} {rule} → 0..255")
    return np.rint(scaled).astype(np.uint8)


def _flatten(im: Image.Image, notes: list[str]) -> Image.Image:
    """Drop an all-opaque alpha channel; composite a real one on black, as most viewers show it on dark."""
    im = im.convert("LA" if im.mode in ("LA", "La") else "RGBA")
    alpha = np.asarray(im.getchannel("A"))
    colour = im.convert(im.mode[:-1])
    if (alpha == 255).all():
        notes.append(f"{im.mode}: opaque alpha dropped")
        return colour
    notes.append(f"{im.mode}: alpha composited on black ({(alpha < 255).mean():.1%} not opaque)")
    black = Image.new(colour.mode, colour.size, 0)
    return Image.composite(colour, black, im.getchannel("A"))


def reencode_png(src: Path, dst: Path, max_pixels: int, white_level: float | None = None) -> str:
    """Store ``src`` as a lossless 8-bit PNG at ``dst``, decoded by the rules above; returns the note.

    A file that cannot be decoded (or is over ``max_pixels``) is copied as it is, so that its manifest row
    carries the error for validation to report.
    """
    try:
        with open_image(src) as im:
            decoded = decode_checked(im, max_pixels, white_level)
            origin = f"re-encoded from {im.format or src.suffix} {im.mode}"
    except Exception:  # noqa: BLE001 - inspect() of the copy records why it does not decode
        shutil.copyfile(src, dst)
        return ""
    save_png(decoded.array, dst)
    return "; ".join(n for n in (origin, decoded.note) if n)


def expand_frames(
    src: Path, targets: list[Path], max_pixels: int, white_level: float | None = None
) -> list[str]:
    """Store frame ``i`` of a multi-frame ``src`` as an 8-bit PNG at ``targets[i]``, decoded by the rules
    above; returns each one's note (which frame of which file it is).

    A frame that does not decode (or is over ``max_pixels``) is a :class:`DataError` naming the file and the
    frame: there is no one file to record its error against.
    """
    notes = []
    with open_image(src) as im:
        frames = frame_count(im)
        for i, dst in enumerate(targets):
            try:
                im.seek(i)
                decoded = _decode_frame(im, max_pixels, white_level)
            except Exception as e:  # noqa: BLE001 - any decoder failure, said in one line
                raise DataError(
                    f"{src}: frame {i + 1} of {frames} does not decode ({type(e).__name__}: {e})".replace(
                        "\n", " "
                    )
                ) from None
            save_png(decoded.array, dst)
            origin = f"frame {i + 1} of {frames} of {src.name}, re-encoded from {im.format} {im.mode}"
            notes.append("; ".join(n for n in (origin, decoded.note) if n))
    return notes


def save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG")


def resize(array: np.ndarray, size: int) -> np.ndarray:
    """Square resize with antialiasing (Pillow's bilinear filter widens its support when shrinking)."""
    return np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR))
