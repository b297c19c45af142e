"""The registered model's contract: raw images in, the class and its probabilities out.

Input: a DataFrame with one column ``image``; each cell is an encoded image file (bytes, or base64 text as
it arrives over HTTP) in any format Pillow reads, or a pixel array (H, W) / (H, W, 3) of any size.
Preprocessing is inside: decode by the same rules as ingest (:mod:`steelflow.data.images`: EXIF orientation,
16-bit scaling by ``data.white_level``, explicit palette/alpha/CMYK conversions) → grayscale or RGB as in
training → resize to the training cache's side →
the network (which resizes to its own input size). Output: a DataFrame with ``label`` and one
``p_<class>`` column per class (and ``warning`` when ``small_images`` is ``flag``).

An image far smaller than the side the model was trained on (``registry.serving.min_side_fraction`` of
``data.cache_size``) would be blown up to that side and classified without a word; ``small_images``
says whether it is refused (the default: a :class:`BadInput` naming the row and the size), flagged in the
``warning`` column, or allowed.

The model itself is code, not a pickle: :mod:`steelflow.serving.model` (MLflow models-from-code), which
runs the network with :mod:`steelflow.serving.engine`. A cell that is not an image raises :class:`BadInput`
naming its row; served over HTTP that is a 400 with one line.

Serving: ``steelflow serve`` (:mod:`steelflow.serving.http`: MLflow's scoring server with a request-size
limit and answers that never quote the request), then POST ``{"dataframe_split": {"columns": ["image"],
"data": [["<base64 of a .bmp/.png/.jpg>"]]}}`` to ``/invocations``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from steelflow.data import images
from steelflow.errors import DataError

if TYPE_CHECKING:  # steelflow.models needs PyTorch, which the served ONNX model runs without
    from steelflow.models import ModelMeta

COLUMN = "image"
WARNING = "warning"  # the output column of small_images: flag
# registry.serving's defaults, for versions whose model_config predates a key
DEFAULT_MAX_PIXELS = 25_000_000  # max_image_pixels
DEFAULT_SMALL_IMAGES = "refuse"  # small_images
DEFAULT_MIN_SIDE_FRACTION = 0.5  # min_side_fraction
SMALL_IMAGES = ("refuse", "flag", "allow")


class BadInput(DataError, ValueError):
    """A request or file the model cannot classify; the message is one line meant for the sender.

    (A ValueError too: callers written before it was a :class:`DataError` catch it as one.)"""


@dataclasses.dataclass(frozen=True)
class SmallImageRule:
    """What happens to an image whose shorter side is under ``min_side_fraction`` × the trained side."""

    action: str = DEFAULT_SMALL_IMAGES  # refuse | flag | allow
    min_side_fraction: float = DEFAULT_MIN_SIDE_FRACTION

    @classmethod
    def of(cls, config: dict[str, Any]) -> SmallImageRule:
        action = str(config.get("small_images", DEFAULT_SMALL_IMAGES))
        if action not in SMALL_IMAGES:
            raise DataError(f"small_images is {action!r}; the model knows {', '.join(SMALL_IMAGES)}")
        return cls(action, float(config.get("min_side_fraction", DEFAULT_MIN_SIDE_FRACTION)))

    def min_side(self, size: int) -> int:
        return math.ceil(self.min_side_fraction * size)

    def note(self, image: np.ndarray, size: int) -> str:
        """Why ``image`` is too small for a model trained at ``size`` px ("" when it is not, or when the
        rule allows everything); ``refuse`` raises :class:`BadInput` with it."""
        height, width = image.shape[:2]
        least = self.min_side(size)
        if self.action == "allow" or min(height, width) >= least:
            return ""
        note = (
            f"image of {width}x{height} px is smaller than the model was trained for: its shorter side "
            f"should be at least {least} px ({self.min_side_fraction:g} of the {size} px training side, "
            "registry.serving.min_side_fraction)"
        )
        if self.action == "refuse":
            raise BadInput(note)
        return note


DEFAULT_RULE = SmallImageRule()
ALLOW_ANY_SIZE = SmallImageRule("allow")


def decode(
    cell: Any, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS, white_level: float | None = None
) -> np.ndarray:
    """One input cell → uint8 (H, W) for one channel or (H, W, 3) for three."""
    if isinstance(cell, str):
        try:
            cell = base64.b64decode(cell, validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadInput(f"an {COLUMN!r} string must be a base64-encoded image file: {e}") from None
    if isinstance(cell, bytes | bytearray):
        if not cell:
            raise BadInput("an empty file (0 bytes) is not an image")
        try:
            with Image.open(io.BytesIO(cell)) as im:
                _check_size(*images.displayed_size(im), max_pixels)
                _check_single_frame(im)
                return images.decode(im, channels, white_level).array
        except BadInput:
            raise
        except UnidentifiedImageError:
            raise BadInput(f"not a readable image file ({len(cell)} bytes): no known format") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise BadInput(f"not a readable image file ({len(cell)} bytes): {_one_line(e)}") from None
    try:
        array = np.asarray(cell)
    except ValueError as e:  # ragged nested lists
        raise BadInput(f"not an image array: {_one_line(e)}") from None
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise BadInput(f"an image array must be (H, W) or (H, W, 3), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise BadInput(f"an image array must hold numbers, got {array.dtype}")
    _check_size(array.shape[1], array.shape[0], max_pixels)
    array = _as_8bit(array, white_level)
    mode = "L" if array.ndim == 2 else ("RGBA" if array.shape[-1] == 4 else "RGB")
    return images.decode(Image.fromarray(array, mode), channels).array


def _as_8bit(array: np.ndarray, white_level: float | None) -> np.ndarray:
    """uint8 as it is; JSON's integers within 0..255 (they arrive as int64) as 8-bit samples; anything
    wider (uint16, floats, values past 255) scaled as a 16-bit file would be, never clipped."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    narrow = np.issubdtype(array.dtype, np.signedinteger) or array.dtype == np.uint64
    if narrow and array.size and array.min() >= 0 and array.max() <= 255:
        return array.astype(np.uint8)
    try:
        return images.scale_to_8bit(array, white_level)
    except ValueError as e:
        raise BadInput(_one_line(e)) from None


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise BadInput(
            f"image of {width}x{height} px is larger than the {max_pixels:,} pixels accepted "
            "(registry.serving.max_image_pixels)"
        )


def _check_single_frame(im: Image.Image) -> None:
    """One row is one image: a multi-page TIFF or an animation is refused, never classified by one frame."""
    frames = images.frame_count(im)
    if frames > 1:
        raise BadInput(
            f"a multi-frame image ({frames} frames, {im.format or 'unknown format'}): one row is one image; "
            "send each page or frame as its own row"
        )


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def preprocess(
    cells: list[Any],
    channels: int,
    size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    white_level: float | None = None,
) -> np.ndarray:
    """Cells → uint8 (N, size, size, C), exactly as the training cache stores images; a bad cell raises
    :class:`BadInput` naming its row. Images of any size are taken (see :func:`prepare` for the rule the
    served model applies)."""
    return prepare(cells, channels, size, max_pixels, white_level, ALLOW_ANY_SIZE)[0]


def prepare(
    cells: list[Any],
    channels: int,
    size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    white_level: float | None = None,
    small: SmallImageRule = DEFAULT_RULE,
) -> tuple[np.ndarray, list[str]]:
    """:func:`preprocess` under the rule ``small``, with one note per row ("" for most): an image below
    the rule is refused (:class:`BadInput` naming its row and its size) or noted."""
    decoded, notes = [], []
    for row, cell in enumerate(cells):
        try:
            image = decode(cell, channels, max_pixels, white_level)
            notes.append(small.note(image, size))
            decoded.append(images.resize(image, size))
        except BadInput as e:
            raise BadInput(f"row {row}: {e}") from None
    if not decoded:
        return np.zeros((0, size, size, channels), np.uint8), notes
    return np.stack(decoded).reshape(len(decoded), size, size, channels), notes


def cells_of(model_input: Any) -> list[Any]:
    """The ``image`` column of a request, or :class:`BadInput` saying what came instead."""
    if not isinstance(model_input, pd.DataFrame) or COLUMN not in model_input.columns:
        # (MLflow's schema check has already dropped any other column, so there is no name to quote)
        raise BadInput(f"the request has no column {COLUMN!r}: send one column {COLUMN!r} of images")
    return list(model_input[COLUMN])


def classify_with(
    logits: Callable[[np.ndarray], np.ndarray],
    config: dict[str, Any],
    cells: list[Any],
    batch_size: int = 32,
) -> pd.DataFrame:
    """Labels and probabilities for raw image cells, the network run by ``logits`` (an engine), under the
    version's ``model_config`` (``registry.serving``: pixel limit, small-image rule)."""
    from steelflow.serving.engine import run_batches, softmax

    classes = list(config["classes"])
    max_pixels = int(config.get("max_image_pixels", DEFAULT_MAX_PIXELS))
    small = SmallImageRule.of(config)
    decoded, notes = prepare(
        cells, data_channels(config), int(config["cache_size"]), max_pixels, config.get("white_level"), small
    )
    probs = softmax(run_batches(logits, decoded, batch_size)) if len(decoded) else np.zeros((0, len(classes)))
    frame = pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])
    frame.insert(0, "label", [classes[i] for i in probs.argmax(1)] if len(probs) else [])
    if small.action == "flag":  # the column is there whenever the rule flags, so every answer has one shape
        frame[WARNING] = notes
    return frame


def data_channels(config: Mapping[str, Any]) -> int:
    """The channels of the data a version's model was trained on (1 grey, 3 colour), from its
    ``model_config``: the served model turns every input into them. Versions saved before the name
    ``data_channels`` call it ``in_chans`` (not the network's input width, ``CASINet.in_chans``, which the
    name now leaves alone; :class:`~steelflow.models.ModelMeta` reads model files the same way)."""
    return int(config["data_channels"] if "data_channels" in config else config["in_chans"])


def classify(
    model: Any,
    meta: ModelMeta | Mapping[str, Any],
    size: int,
    cells: list[Any],
    batch_size: int = 32,
    white_level: float | None = None,
) -> pd.DataFrame:
    """The PyTorch network ``model`` on raw image cells (what versions pickled before models-from-code
    call, when loaded with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``; their ``meta`` is a dict)."""
    # here, not at the top: the served ONNX model runs without PyTorch, which steelflow.models needs
    import torch

    from steelflow.models import ModelMeta

    meta = ModelMeta.of_any(meta)

    def logits(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).float().numpy()

    config = {"classes": meta.classes, "data_channels": meta.data_channels, "cache_size": size}
    return classify_with(logits, config | {"white_level": white_level}, cells, batch_size)


def weights_in(folder: Path, uri: str) -> tuple[Path, dict[str, Any]]:
    """A downloaded registered model's ``model.pt`` and its ``model_config`` (the cache side it feeds)."""
    from mlflow.models import Model

    weights = next(folder.rglob("model.pt"), None)
    mlmodel = next(folder.rglob("MLmodel"), None)
    if weights is None or mlmodel is None:
        raise DataError(f"{uri} holds no model.pt and MLmodel: is it a steelflow model?")
    config = Model.load(str(mlmodel)).flavors["python_function"].get("model_config") or {}
    return weights, config


def signature(classes: list[str]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    # bytes, base64 text or a pixel array, any size. Not "required": MLflow's own check of a missing
    # column answers with the whole request in a multi-line message; ours is one line naming the column.
    inputs = Schema([ColSpec(AnyType(), COLUMN, required=False)])
    outputs = Schema([ColSpec("string", "label"), *(ColSpec("double", f"p_{c}") for c in classes)])
    return ModelSignature(inputs=inputs, outputs=outputs)
