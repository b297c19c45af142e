"""What runs the network when the registered model serves: ONNX Runtime, or PyTorch as a named fallback.

The registered model (:mod:`steelflow.serving.model`) builds an engine from its ``model_config`` and its
artifacts, and feeds it what :func:`steelflow.serving.pyfunc.preprocess` makes of the raw images: uint8
(N, S, S, C) → float32 (N, C, S, S) in [0, 1]. The ONNX path imports neither torch nor pydantic, so a
model served with ``engine: onnx`` needs only numpy, pandas, Pillow, ONNX Runtime and MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

ONNX, PYTORCH = "onnx", "pytorch"
ENGINES = (ONNX, PYTORCH)

Logits = Callable[[np.ndarray], np.ndarray]  # float32 (N, C, S, S) in [0, 1] → logits (N, K)


def as_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) → float32 (N, C, H, W) in [0, 1], as :func:`steelflow.inference.as_float`."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z, dtype=np.float64)
    return e / e.sum(axis=1, keepdims=True)


def onnx_session(path: str | Path, intra_op_threads: int = 2, inter_op_threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with the thread counts of ``registry.serving``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session: Any) -> Logits:
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def torch_logits(weights: str | Path, threads: int = 0) -> Logits:
    """The fallback: the PyTorch network from ``model.pt`` (needs torch in the serving environment)."""
    import torch

    from steelflow.inference import load_trained

    if threads:
        torch.set_num_threads(threads)
    model, _ = load_trained(weights)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).float().numpy()

    return run


def load(config: Mapping[str, Any], artifacts: Mapping[str, str]) -> Logits:
    """The engine ``config['engine']`` names, from the model's artifacts."""
    engine = config.get("engine", ONNX)
    intra, inter = int(config.get("intra_op_threads", 2)), int(config.get("inter_op_threads", 1))
    if engine == ONNX:
        return onnx_logits(onnx_session(artifacts["onnx"], intra, inter))
    if engine == PYTORCH:
        return torch_logits(artifacts["model"], intra)
    raise ValueError(f"model_config engine {engine!r}: expected one of {', '.join(ENGINES)}")


def run_batches(logits: Logits, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits (N, K) of uint8 images (N, S, S, C), ``batch_size`` at a time."""
    out = [logits(as_input(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
