"""The registered model's preprocessing: raw images of any size and kind become what training saw."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from steelflow.data.images import resize
from steelflow.errors import DataError
from steelflow.serving.pyfunc import BadInput, SmallImageRule, cells_of, decode, prepare, preprocess


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _bmp(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="BMP")
    return buf.getvalue()


@pytest.fixture
def gray() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (50, 70), dtype=np.uint8)


def test_bytes_base64_and_arrays_of_one_image_give_the_same_input(gray):
    cells = [_png(gray), base64.b64encode(_png(gray)).decode(), gray, gray.tolist(), gray[..., None]]
    batch = preprocess(cells, channels=1, size=32)
    assert batch.shape == (5, 32, 32, 1) and batch.dtype == np.uint8
    for row in batch[1:]:
        assert np.array_equal(row, batch[0])
    assert np.array_equal(batch[0, ..., 0], resize(gray, 32))  # as the training cache resizes


def test_rgb_and_gray_inputs_of_any_size_fit_either_channel_count(gray):
    rgb = np.random.default_rng(1).integers(0, 256, (200, 120, 3), dtype=np.uint8)
    assert preprocess([gray, rgb], channels=3, size=16).shape == (2, 16, 16, 3)
    assert preprocess([gray, rgb, _png(rgb)], channels=1, size=16).shape == (3, 16, 16, 1)
    assert decode(_png(rgb), channels=1).shape == (200, 120)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("not base64!", "base64-encoded image file"),
        (base64.b64encode(b"hello").decode(), "not a readable image file"),
        (np.zeros((2, 3, 4, 5)), "(H, W) or (H, W, 3)"),
        (b"", "empty file (0 bytes)"),
        (b"hello, not a png", "not a readable image file (16 bytes)"),
        (_bmp(np.full((64, 64), 7, np.uint8))[:2000], "file (2000 bytes): image file is truncated"),
        ([[1, 2], [3]], "not an image array"),
        (np.array([["a", "b"]]), "must hold numbers"),
    ],
)
def test_bad_cells_say_what_was_expected(cell, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(cell, channels=1)


def test_a_bad_cell_is_named_by_its_row_and_stays_one_line(gray):
    with pytest.raises(BadInput, match=r"^row 2: not a readable image file") as e:
        preprocess([_png(gray), gray, b"GIF89a broken"], channels=1, size=8)
    assert "\n" not in str(e.value)


def test_an_image_larger_than_allowed_is_refused_before_decoding(gray):
    big = _png(np.zeros((300, 400), np.uint8))
    with pytest.raises(BadInput, match=r"400x300 px is larger than the 100,000 pixels"):
        decode(big, channels=1, max_pixels=100_000)
    with pytest.raises(BadInput, match=r"70x50 px is larger"):
        decode(gray, channels=1, max_pixels=1000)
    assert decode(big, channels=1, max_pixels=120_000).shape == (300, 400)


def test_a_request_without_the_image_column_says_which_column_it_needs():
    import pandas as pd

    with pytest.raises(BadInput, match="no column 'image'"):
        cells_of(pd.DataFrame({"picture": [b"x"]}))
    assert cells_of(pd.DataFrame({"image": [b"x", b"y"]})) == [b"x", b"y"]


def test_an_image_under_half_the_trained_side_is_refused_naming_its_row_and_size(gray):
    tiny = np.zeros((40, 12), np.uint8)  # 12 px wide: under half of 32
    with pytest.raises(
        BadInput, match=r"^row 1: image of 12x40 px is smaller than the model was trained"
    ) as e:
        prepare([_png(gray), _png(tiny)], channels=1, size=32)
    assert "at least 16 px (0.5 of the 32 px training side" in str(e.value)
    assert "\n" not in str(e.value)


def test_the_smallest_side_accepted_is_a_share_of_the_trained_side():
    edge, under = np.zeros((16, 50), np.uint8), np.zeros((15, 50), np.uint8)
    batch, notes = prepare([edge], channels=1, size=32)
    assert batch.shape == (1, 32, 32, 1) and notes == [""]
    with pytest.raises(BadInput, match="15 px|50x15 px"):
        prepare([under], channels=1, size=32)
    quarter = SmallImageRule("refuse", min_side_fraction=0.25)
    assert prepare([under, np.zeros((8, 8), np.uint8)], 1, 32, small=quarter)[1] == ["", ""]


def test_small_images_can_be_flagged_or_allowed_instead_of_refused(gray):
    tiny = np.zeros((6, 6), np.uint8)
    batch, notes = prepare([gray, tiny], channels=1, size=32, small=SmallImageRule("flag"))
    assert batch.shape == (2, 32, 32, 1)
    assert notes[0] == "" and notes[1].startswith("image of 6x6 px is smaller than the model was trained for")
    assert prepare([gray, tiny], channels=1, size=32, small=SmallImageRule("allow"))[1] == ["", ""]
    assert preprocess([tiny], channels=1, size=32).shape == (1, 32, 32, 1)  # the bare function takes any


def test_the_rule_comes_from_the_models_config_and_a_version_without_it_refuses():
    assert SmallImageRule.of({}) == SmallImageRule("refuse", 0.5)
    assert SmallImageRule.of({"small_images": "flag", "min_side_fraction": 0.25}) == SmallImageRule(
        "flag", 0.25
    )
    with pytest.raises(DataError, match="small_images is 'warn'"):
        SmallImageRule.of({"small_images": "warn"})
