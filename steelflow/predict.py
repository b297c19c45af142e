"""`steelflow predict`: classify image files or folders with a registered model (default: the champion)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from steelflow import io
from steelflow.config import Params, RegistryConfig
from steelflow.data.sources import IMAGE_SUFFIXES
from steelflow.errors import DataError


def image_files(inputs: list[Path]) -> list[Path]:
    """The images named, and every image under the folders named, in a stable order."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, inputs))}")
    return files


def default_model_uri(params: Params) -> str:
    name = params.registry.name if params.registry else RegistryConfig.model_fields["name"].default
    return f"models:/{name}@champion"


def predict(params: Params, inputs: list[Path], model_uri: str | None, out_path: Path) -> pd.DataFrame:
    """One row per image: path, label, and p_<class> for every class; also written to ``out_path``."""
    import mlflow
    import mlflow.pyfunc

    from steelflow.tracking import tracking_uri

    files = image_files(inputs)
    uri = model_uri or default_model_uri(params)
    mlflow.set_tracking_uri(tracking_uri(params.mlflow))
    mlflow.set_registry_uri(tracking_uri(params.mlflow))
    try:
        model = mlflow.pyfunc.load_model(uri)
    except Exception as e:
        raise DataError(f"cannot load model {uri}: {e}") from None
    frame = model.predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}))
    frame.insert(0, "path", [str(f) for f in files])
    with io.atomic_path(out_path) as tmp:
        frame.to_csv(tmp, index=False)
    return frame
