"""A trained network as the package a registered version is: what ``register`` logs.

:func:`serving_graph` is the ONNX graph the version serves, checked against PyTorch (and, when
``registry.quantize`` asks, the int8 graph against fp32 on every evaluation condition);
:func:`pyfunc_model` is what ``mlflow.pyfunc.log_model`` gets: the model as code (:mod:`.model`, no
pickle), the graph and weights as artifacts, its ``model_config``, signature, input example and
requirements.
"""

from __future__ import annotations

import base64
import io
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelflow.config import Params
from steelflow.data import cache
from steelflow.data.images import save_png
from steelflow.errors import GateFailed
from steelflow.gates import gate_table, quantization_gates
from steelflow.models import ModelMeta
from steelflow.scoring import CLEAN
from steelflow.serving import build as serving_build
from steelflow.serving import model as serving_model
from steelflow.serving import pyfunc


def pyfunc_model(
    params: Params, meta: ModelMeta, graph: Path, weights: Path, test_set: Path
) -> dict[str, Any]:
    """What ``mlflow.pyfunc.log_model`` (or ``save_model``) gets: the model as code (no pickle), its ONNX
    graph and weights as artifacts, its ``model_config``, signature, input example and requirements."""
    serving = params.registry.serving
    return {
        "python_model": serving_model.__file__,
        "artifacts": {"onnx": str(graph), "model": str(weights)},
        "model_config": {
            "cache_size": params.data.cache_size,
            "white_level": params.data.white_level,
            "classes": list(meta.classes),
            "data_channels": meta.data_channels,
            **serving.model_dump(),
            "quantize": params.registry.quantize,
        },
        "signature": pyfunc.signature(meta.classes),
        # a small real input example: one test image as base64 PNG text, what an HTTP client sends
        "input_example": example(test_set),
        "code_paths": [str(Path(pyfunc.__file__).parents[1])],
        "pip_requirements": requirements(serving.engine),
    }


def serving_graph(
    params: Params, model: Any, sets: dict[str, Path], cache_dir: Path, staging: Path
) -> tuple[Path, dict[str, str]]:
    """The ONNX graph the version serves, checked: fp32 against PyTorch (exit 9 on a mismatch), and int8
    against fp32 on every evaluation condition when ``registry.quantize`` asks (exit 8 past the drop)."""
    cfg = params.registry
    fp32 = staging / "model.onnx"
    parity = serving_build.export_checked(
        model, cache.load(sets[CLEAN]).images, fp32, cfg.max_parity_diff, cfg.min_label_agreement
    )
    tags = {"engine": cfg.serving.engine, "quantize": cfg.quantize, **parity.tags()}
    if cfg.quantize == "none":
        return fp32, tags
    calibration = None
    if cfg.quantize == "static":
        train = cache.split_path(cache_dir, "train")
        calibration = serving_build.calibration_images(train, cfg.calibration_images)
    int8 = serving_build.quantize(fp32, staging / "model.int8.onnx", cfg.quantize, calibration)
    threads = cfg.serving.intra_op_threads
    before = serving_build.accuracies(fp32, sets, threads)
    after = serving_build.accuracies(int8, sets, threads)
    gates = quantization_gates(before, after, cfg.max_quantized_drop)
    if not all(g.passed for g in gates):
        raise GateFailed(
            f"the {cfg.quantize} int8 model loses more than registry.max_quantized_drop "
            f"({cfg.max_quantized_drop}) against fp32; nothing was registered:\n{gate_table(gates)}\n"
            "set registry.quantize=none to register fp32, or try the other mode"
        )
    tags.update({f"fp32_accuracy.{k}": f"{v:.6f}" for k, v in before.items()})
    tags.update({f"int8_accuracy.{k}": f"{v:.6f}" for k, v in after.items()})
    return int8, tags


def example(path: Path) -> Any:
    shard_set = cache.open(path)  # one image read, not the whole set
    try:
        image = shard_set.read(np.arange(1))[0]
    finally:
        shard_set.close()
    buf = io.BytesIO()
    save_png(pyfunc.decode(image, channels=image.shape[-1]), buf)
    return pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode("ascii")]})


def requirements(engine: str) -> list[str]:
    """What the served model imports: ONNX Runtime's path needs no torch (nor pydantic or PyYAML)."""
    names = ["mlflow", "numpy", "pandas", "pillow", "onnxruntime"]
    if engine == "pytorch":
        names.append("torch")
    return [f"{n}=={version(n).split('+')[0]}" for n in names]
