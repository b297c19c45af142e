"""What ``register`` logs as the serving engine: the network as ONNX, checked, and optionally int8.

- :func:`export_checked`: export the trained network (input stage included) with
  :func:`steelflow.serving.onnx_export.export_network`, run it with ONNX Runtime on the clean test set, and
  compare it with PyTorch: the largest probability difference and the share of images given the same label.
  Outside ``registry.max_parity_diff`` / ``registry.min_label_agreement`` it raises :class:`ParityFailed`.
- :func:`quantize`: int8 with ONNX Runtime's quantization, ``dynamic`` (the head's matrix weights int8,
  activations quantized at run time) or ``static`` (QDQ: the convolutions, their ReLUs and pools and the
  head's matrices, activation ranges calibrated on ``registry.calibration_images`` training images). The
  input stage (``model.input_norm``) stays fp32 in both: see :func:`input_stage_nodes`.
- :func:`accuracies`: an ONNX graph's accuracy on every evaluation set (what the int8 gate compares).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from steelflow.data import cache
from steelflow.errors import DataError
from steelflow.serving import engine
from steelflow.serving.onnx_export import ParityFailed, export_network

QUANTIZE_MODES = ("none", "dynamic", "static")
MATMULS = ["MatMul", "Gemm"]
# Static int8: convolutions with the ReLU and max-pool after them, so activations stay int8 from one conv
# to the next (quantizing only Conv and MatMul put a DequantizeLinear/QuantizeLinear pair around every ReLU:
# int8 was slower than fp32, 38 against 35 ms at 300 px).
STATIC_OPS = ["Conv", "Relu", "MaxPool", *MATMULS]
# What the exporter writes in each node's ``namespace`` for the modules of the input stage
INPUT_STAGE = "/input_norm:"


@dataclasses.dataclass(frozen=True)
class Parity:
    images: int
    max_abs_prob_diff: float
    label_agreement: float

    def tags(self) -> dict[str, str]:
        return {
            "parity.images": str(self.images),
            "parity.max_abs_prob_diff": f"{self.max_abs_prob_diff:.3e}",
            "parity.label_agreement": f"{self.label_agreement:.6f}",
        }


def export_checked(
    model: Any, test_images: np.ndarray, out: Path, max_diff: float, min_agreement: float
) -> Parity:
    """Export ``model`` to ``out`` and check it against PyTorch on uint8 (N, S, S, C) ``test_images``."""
    import torch

    if not len(test_images):
        raise DataError("the parity check needs test images, and the test set is empty")
    x = engine.as_input(test_images)
    example = torch.from_numpy(x[:2] if len(x) >= 2 else np.repeat(x, 2, axis=0))
    export_network(model, example, out)
    with torch.no_grad():
        eager = np.concatenate([model(torch.from_numpy(x[i : i + 64])).numpy() for i in range(0, len(x), 64)])
    onnx = engine.run_batches(engine.onnx_logits(engine.onnx_session(out)), test_images, 64)
    parity = compare(eager, onnx)
    if not (parity.max_abs_prob_diff <= max_diff and parity.label_agreement >= min_agreement):
        raise ParityFailed(
            f"ONNX Runtime and PyTorch disagree on {parity.images} test images: max |Δp| "
            f"{parity.max_abs_prob_diff:.2e} (allowed {max_diff:.0e}), same label on "
            f"{parity.label_agreement:.2%} (required {min_agreement:.2%}); nothing was registered"
        )
    return parity


def compare(reference_logits: np.ndarray, logits: np.ndarray) -> Parity:
    p, q = engine.softmax(reference_logits), engine.softmax(logits)
    return Parity(
        images=len(p),
        max_abs_prob_diff=float(np.abs(p - q).max()),
        label_agreement=float((p.argmax(1) == q.argmax(1)).mean()),
    )


def quantize(fp32: Path, out: Path, mode: str, calibration: np.ndarray | None = None) -> Path:
    """int8 copy of the ``fp32`` graph at ``out``; ``static`` calibrates on uint8 ``calibration`` images."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    if mode not in ("dynamic", "static"):
        raise ValueError(f"quantize mode {mode!r}: expected dynamic or static")
    prepared = out.with_name(out.stem + ".pre.onnx")
    keep_fp32 = input_stage_nodes(fp32)
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    try:
        if mode == "dynamic":
            # the head's matrices only: dynamic ConvInteger was 6-16x slower than fp32 here (bench_serving)
            quantize_dynamic(
                str(prepared),
                str(out),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=MATMULS,
                nodes_to_exclude=keep_fp32,
            )
        else:
            if calibration is None or not len(calibration):
                raise DataError("static quantization needs calibration images (the training split)")
            quantize_static(
                str(prepared),
                str(out),
                _Calibration(calibration),
                # ranges from the 99.999th percentile: min/max ranges lost 18.5 points at α = 1 lighting
                op_types_to_quantize=STATIC_OPS,
                nodes_to_exclude=keep_fp32,
                calibrate_method=CalibrationMethod.Percentile,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    finally:
        prepared.unlink(missing_ok=True)
    return out


def input_stage_nodes(graph: Path) -> list[str]:
    """Names of the nodes of the network's input stage in the exported ``graph``, which int8 leaves fp32.

    The stage (local contrast, flat-field, standardisation) divides by a local or global spread: in int8
    its output loses exactly the small contrasts it exists to bring up, and the Gaussian it computes is
    fixed, not learned, so there is nothing for calibration to fit. It is also cheap in fp32 (two matrix
    products per blur). The exporter records each node's module in its ``namespace``; this reads it from
    the graph as exported, since ``quant_pre_process`` keeps the names but not always that metadata.
    """
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    return [
        node.name
        for node in model.graph.node
        if any(p.key == "namespace" and INPUT_STAGE in p.value for p in node.metadata_props)
    ]


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over uint8 images, 8 at a time."""

    def __init__(self, images: np.ndarray, batch: int = 8):
        self._batches = iter([engine.as_input(images[i : i + batch]) for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._batches, None)
        return None if x is None else {"x": x}


def calibration_images(train_cache: Path, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training images (a seeded sample, every class likely in it) from the training cache."""
    if not cache.exists(train_cache):
        raise DataError(f"{train_cache} not found: static quantization calibrates on the training split")
    train = cache.open(train_cache)
    try:  # the picked images only, read from their shards: the training split may not fit in memory
        pick = np.random.default_rng(seed).permutation(len(train))[:n]
        return train.read(np.sort(pick))
    finally:
        train.close()


def accuracies(graph: Path, sets: dict[str, Path], threads: int = 2) -> dict[str, float]:
    """Accuracy of the ONNX ``graph`` on each evaluation set (cached uint8 images and labels)."""
    logits = engine.onnx_logits(engine.onnx_session(graph, threads))
    out = {}
    for name, path in sets.items():
        data = cache.load(path)
        predicted = engine.run_batches(logits, data.images, 64).argmax(1)
        out[name] = float((predicted == np.asarray(data.labels)).mean())
    return out
