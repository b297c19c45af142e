"""Faithful decoding: every kind of file an industrial camera or a photo tool writes becomes the uint8 image a
person would see, the manifest says what was done, and an oversized file is refused from its header.

Each test writes its own real file (16-bit PNG, EXIF-rotated JPEG, palette, LA, RGBA, CMYK, 1-bit, …).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steelflow.data import images
from steelflow.errors import DataError
from steelflow.serving.pyfunc import BadInput, preprocess
from steelflow.serving.pyfunc import decode as serve_decode

MAX_PIXELS = 4096 * 4096


def gradient(shape: tuple[int, int] = (40, 60), high: int = 65535, dtype: type = np.uint16) -> np.ndarray:
    """A horizontal ramp over 0..high: a clipping decoder turns most of it white."""
    ramp = np.linspace(0, high, shape[1])
    return np.tile(ramp, (shape[0], 1)).astype(dtype)


def save(path: Path, im: Image.Image, **kwargs: object) -> Path:
    im.save(path, **kwargs)
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """A 120 wide × 200 high JPEG, bright on its left, tagged orientation 6 (display rotated 90° clockwise):
    displayed, it is 200 wide × 120 high and bright at the top."""
    array = np.zeros((200, 120), dtype=np.uint8)
    array[:, :30] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(path, Image.fromarray(array), format="JPEG", quality=95, exif=exif)


def oversized_png_header(path: Path, side: int = 12000) -> Path:
    """A PNG whose header claims side × side pixels, with a token of pixel data: decoding it in full would
    take side² bytes (144 MB at 12000), reading its header takes nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )
    return path


# --- wide samples: scaled, never clipped ------------------------------------------------------------------


def test_16_bit_png_keeps_its_range_instead_of_turning_white(tmp_path):
    path = save(tmp_path / "wide.png", Image.fromarray(gradient()))
    assert Image.open(path).mode == "I;16"

    row = images.inspect(path, MAX_PIXELS)
    decoded = images.load(path, channels=1)

    assert decoded.dtype == np.uint8 and (decoded.min(), decoded.max()) == (0, 255)
    assert (decoded == 255).mean() < 0.05  # a clipping convert("L") gives ~99 % white here
    assert np.all(np.diff(decoded[0].astype(int)) >= 0)  # the ramp stays a ramp
    assert row["error"] == "" and "I;16 range 0..65535 → 0..255" in row["decode_note"]


def test_white_level_scales_a_12_bit_image_and_refuses_values_above_it(tmp_path):
    twelve_bit = save(tmp_path / "12bit.png", Image.fromarray(gradient(high=4095)))
    decoded = images.load(twelve_bit, channels=1, white_level=4095)
    assert (decoded.min(), decoded.max()) == (0, 255)

    half = images.load(twelve_bit, channels=1, white_level=8190)  # the same data on a 13-bit scale
    assert half.max() == 128

    row = images.inspect(save(tmp_path / "16bit.png", Image.fromarray(gradient())), MAX_PIXELS, 4095)
    assert "65535" in row["error"] and "data.white_level (4095)" in row["error"]


@pytest.mark.parametrize(
    ("dtype", "mode"), [(np.int32, "I"), (np.float32, "F")], ids=["32-bit integer", "32-bit float"]
)
def test_32_bit_tiffs_are_scaled_by_their_range(tmp_path, dtype, mode):
    path = save(tmp_path / "wide.tif", Image.fromarray(gradient(high=100_000, dtype=dtype)))
    assert Image.open(path).mode == mode
    decoded = images.load(path, channels=1)
    assert (decoded.min(), decoded.max()) == (0, 255) and (decoded == 255).mean() < 0.05


def test_served_model_scales_16_bit_files_and_arrays_as_ingest_does(tmp_path):
    path = save(tmp_path / "wide.png", Image.fromarray(gradient()))
    cached = images.load(path, channels=1)
    assert np.array_equal(serve_decode(path.read_bytes(), channels=1), cached)
    assert np.array_equal(serve_decode(gradient(), channels=1), cached)


# --- orientation --------------------------------------------------------------------------------------


def test_exif_orientation_is_applied_and_the_manifest_gives_the_displayed_size(tmp_path):
    path = exif_rotated_jpeg(tmp_path / "rotated.jpg")

    row = images.inspect(path, MAX_PIXELS)
    decoded = images.load(path, channels=1)

    assert (row["width"], row["height"]) == (200, 120)
    assert decoded.shape == (120, 200)
    assert decoded[:30].mean() > 200 and decoded[60:].mean() < 30  # bright at the top, as displayed
    assert "EXIF orientation 6 applied" in row["decode_note"]
    assert np.array_equal(serve_decode(path.read_bytes(), channels=1), decoded)


# --- other modes: converted explicitly, and said so ---------------------------------------------------


def _palette(transparent: bool) -> Image.Image:
    im = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).convert("P")
    if transparent:
        im.info["transparency"] = 0
    return im


def _rgba(alpha: int) -> Image.Image:
    rgba = np.full((8, 8, 4), 200, dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:4, :, 3] = alpha
    return Image.fromarray(rgba, "RGBA")


def _la(alpha: int) -> Image.Image:
    return Image.merge("LA", [Image.new("L", (8, 8), 200), Image.new("L", (8, 8), alpha)])


CASES = {
    # name: (image, file format, expected channels, note fragment, expected mean of channel 0)
    "1-bit": (Image.fromarray(np.eye(8, dtype=bool)), "PNG", 1, "1-bit → 0/255", 255 / 8),
    "palette": (_palette(False), "PNG", 3, "palette → RGB", None),
    "palette with transparency": (_palette(True), "PNG", 3, "palette → RGBA", None),
    "LA opaque": (_la(255), "PNG", 1, "LA: opaque alpha dropped", 200),
    "LA transparent": (_la(0), "PNG", 1, "LA: alpha composited on black (100.0% not opaque)", 0),
    "RGBA opaque": (_rgba(255), "PNG", 3, "RGBA: opaque alpha dropped", 200),
    "RGBA half transparent": (_rgba(0), "PNG", 3, "alpha composited on black (50.0% not opaque)", 100),
    "CMYK": (Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", 3, "CMYK → RGB (no ICC profile)", None),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_mode_is_converted_explicitly_and_noted(tmp_path, case):
    im, fmt, channels, note, mean = CASES[case]
    path = save(tmp_path / f"image.{fmt.lower()}", im, format=fmt)

    row = images.inspect(path, MAX_PIXELS)
    decoded = images.load(path, channels)

    assert row["error"] == "" and note in row["decode_note"]
    assert decoded.dtype == np.uint8 and decoded.ndim == (2 if channels == 1 else 3)
    if mean is not None:
        assert (decoded if decoded.ndim == 2 else decoded[..., 0]).mean() == pytest.approx(mean, abs=1)
    if case == "CMYK":
        assert tuple(decoded[0, 0]) == (255, 0, 0)  # no cyan, full magenta and yellow: red


def test_plain_grayscale_and_rgb_need_no_note(tmp_path):
    gray = save(tmp_path / "g.png", Image.new("L", (8, 8), 7))
    rgb = save(tmp_path / "c.bmp", Image.new("RGB", (8, 8), (1, 2, 3)))
    assert images.inspect(gray, MAX_PIXELS)["decode_note"] == ""
    assert images.inspect(rgb, MAX_PIXELS)["decode_note"] == ""


# --- oversized images: refused from the header --------------------------------------------------------


def test_huge_image_is_refused_from_its_header_without_a_bomb_warning(tmp_path):
    path = oversized_png_header(tmp_path / "huge.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would raise here
        row = images.inspect(path, MAX_PIXELS)
    assert (row["width"], row["height"]) == (12000, 12000)
    assert row["error"].startswith("TooLarge: 12000×12000 = 144.0 Mpx is over data.max_pixels (16.8 Mpx)")
    assert row["phash"] == ""


def test_re_encoding_stores_a_lossless_8_bit_png_and_notes_the_origin(tmp_path):
    src = exif_rotated_jpeg(tmp_path / "rotated.jpg")
    note = images.reencode_png(src, tmp_path / "out.png", MAX_PIXELS)
    with Image.open(tmp_path / "out.png") as im:
        assert (im.format, im.mode, im.size) == ("PNG", "L", (200, 120))
        assert np.array_equal(np.asarray(im), images.load(src, 1))
    assert note == "re-encoded from JPEG L; EXIF orientation 6 applied"


def test_pixels_are_decoded_from_bytes_the_same_way(tmp_path):
    buf = io.BytesIO()
    _rgba(0).save(buf, format="PNG")
    path = tmp_path / "a.png"
    path.write_bytes(buf.getvalue())
    assert np.array_equal(serve_decode(buf.getvalue(), channels=3), images.load(path, 3))


# --- several frames: never cut to the first -----------------------------------------------------------


def multi_frame(path: Path, values: tuple[int, ...] = (10, 120, 240), **kwargs: object) -> Path:
    """A file of ``len(values)`` 40×40 grayscale frames, frame ``i`` flat at ``values[i]`` (TIFF pages, an
    animated PNG, GIF or WebP, by the suffix)."""
    frames = [Image.fromarray(np.full((40, 40), v, np.uint8)) for v in values]
    frames[0].save(path, save_all=True, append_images=frames[1:], **kwargs)
    return path


@pytest.mark.parametrize("name", ["pages.tif", "animated.png"])
def test_a_multi_frame_file_is_never_described_or_decoded_as_its_first_frame(tmp_path, name):
    path = multi_frame(tmp_path / name)
    assert images.inspect(path, MAX_PIXELS)["error"].startswith("MultiFrame: 3 frames")
    with pytest.raises(DataError, match=rf"{name}: 3 frames .* \(rerun ingest\)"):
        images.load(path, channels=1)
    assert images.inspect(save(tmp_path / "one.tif", Image.fromarray(gradient())), MAX_PIXELS)["error"] == ""


def test_expanding_stores_every_frame_as_its_own_png_and_says_which_it_is(tmp_path):
    src = multi_frame(tmp_path / "pages.tif")
    targets = [tmp_path / f"pages_p{i}.png" for i in (1, 2, 3)]
    notes = images.expand_frames(src, targets, MAX_PIXELS)
    assert [int(images.load(t, 1).mean()) for t in targets] == [10, 120, 240]
    assert notes == [f"frame {i} of 3 of pages.tif, re-encoded from TIFF L" for i in (1, 2, 3)]


@pytest.mark.parametrize("name", ["pages.tif", "animated.png", "animated.gif", "animated.webp"])
def test_the_served_model_refuses_a_multi_frame_image_instead_of_classifying_its_first_frame(tmp_path, name):
    cell = multi_frame(tmp_path / name, lossless=True).read_bytes()
    with pytest.raises(BadInput, match=r"^a multi-frame image \(3 frames, \w+\): one row is one image"):
        serve_decode(cell, channels=1)
    with pytest.raises(BadInput, match=r"^row 1: a multi-frame image"):
        preprocess([np.zeros((40, 40), np.uint8), cell], channels=1, size=16)
