"""The registered model: an MLflow pyfunc that takes raw images and returns the class and its probabilities.

Input: a DataFrame with one column ``image``; each cell is an encoded image file (bytes, or base64 text as
it arrives over HTTP) in any format Pillow reads, or a pixel array (H, W) / (H, W, 3) of any size.
Preprocessing is inside: decode by the same rules as ingest (:mod:`steelflow.data.images`: EXIF orientation,
16-bit scaling by ``data.white_level``, explicit palette/alpha/CMYK conversions) → grayscale or RGB as in
training → resize to the training cache's side →
the network (which resizes to its own input size). Output: a DataFrame with ``label`` and one
``p_<class>`` column per class.

Serving: ``mlflow models serve -m models:/steel-defect-classifier@champion --env-manager local``, then
POST ``{"dataframe_split": {"columns": ["image"], "data": [["<base64 of a .bmp/.png/.jpg>"]]}}`` to
``/invocations``.
"""

from __future__ import annotations

import base64
import binascii
import io as pyio
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from steelflow.data import images
from steelflow.errors import DataError

COLUMN = "image"


def decode(cell: Any, channels: int, white_level: float | None = None) -> np.ndarray:
    """One input cell → uint8 (H, W) for one channel or (H, W, 3) for three."""
    if isinstance(cell, str):
        try:
            cell = base64.b64decode(cell, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"an {COLUMN!r} string must be a base64-encoded image file: {e}") from None
    if isinstance(cell, bytes | bytearray):
        try:
            with Image.open(pyio.BytesIO(cell)) as im:
                return images.decode(im, channels, white_level).array
        except OSError as e:
            raise ValueError(f"not a readable image file ({len(cell)} bytes): {e}") from None
    array = np.asarray(cell)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W) or (H, W, 3), got shape {array.shape}")
    if array.dtype != np.uint8:  # wider samples are scaled as a 16-bit file would be, never clipped
        array = images.scale_to_8bit(array, white_level)
    mode = "L" if array.ndim == 2 else ("RGBA" if array.shape[-1] == 4 else "RGB")
    return images.decode(Image.fromarray(array, mode), channels).array


def preprocess(cells: list[Any], channels: int, size: int, white_level: float | None = None) -> np.ndarray:
    """Cells → uint8 (N, size, size, C), exactly as the training cache stores images."""
    decoded = [images.resize(decode(c, channels, white_level), size) for c in cells]
    return np.stack(decoded).reshape(len(decoded), size, size, channels)


def python_model() -> Any:
    """The pyfunc (its class is defined here so that importing this module does not import MLflow)."""
    import mlflow.pyfunc

    class _Classifier(mlflow.pyfunc.PythonModel):
        def load_context(self, context: Any) -> None:
            import torch  # noqa: F401  (loaded with the model, not per request)

            from steelflow.inference import load_trained

            self.model, self.meta = load_trained(context.artifacts["model"])
            self.size = int(context.model_config["cache_size"])
            self.white_level = context.model_config.get("white_level")

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: dict | None = None
        ) -> pd.DataFrame:
            cells = list(model_input[COLUMN])
            return classify(self.model, self.meta, self.size, cells, white_level=self.white_level)

    return _Classifier()


def classify(
    model: Any,
    meta: dict[str, Any],
    size: int,
    cells: list[Any],
    batch_size: int = 32,
    white_level: float | None = None,
) -> pd.DataFrame:
    """Labels and probabilities for raw image cells (the pyfunc's predict)."""
    import torch

    from steelflow.inference import predict_logits, to_tensor

    classes = meta["classes"]
    if not cells:
        return pd.DataFrame(columns=["label", *(f"p_{c}" for c in classes)])
    batch = to_tensor(preprocess(cells, int(meta["in_chans"]), size, white_level))
    logits = predict_logits(model, batch, batch_size, torch.device("cpu"))
    probs = torch.softmax(logits, dim=1).numpy()
    frame = pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])
    frame.insert(0, "label", [classes[i] for i in probs.argmax(1)])
    return frame


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

    inputs = Schema([ColSpec(AnyType(), COLUMN)])  # bytes, base64 text or a pixel array, any size
    outputs = Schema([ColSpec("string", "label"), *(ColSpec("double", f"p_{c}") for c in classes)])
    return ModelSignature(inputs=inputs, outputs=outputs)
