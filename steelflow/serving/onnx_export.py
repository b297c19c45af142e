"""`steelflow export-onnx`: the network as ONNX, checked against PyTorch, timed against it on the CPU.

The export covers the network (uint8 → float scaling and the PIL preprocessing stay in Python, as in the
pyfunc): input ``x`` float32 (N, C, S, S) in [0, 1] at the training cache's side S, output ``logits``
(N, K); the batch dimension is dynamic. Parity: the largest absolute logit difference against eager
PyTorch on the cached test images must stay below ``registry.onnx_tolerance``, or nothing is written.
Latency: median milliseconds per image at batch 1 and 32, ``registry.latency_runs`` timed runs each.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steelflow import atomic, paths
from steelflow.config import Params
from steelflow.data import cache
from steelflow.errors import ConfigError, DataError, ParityFailed
from steelflow.inference import as_float, load_trained, to_tensor

BATCH_SIZES = (1, 32)


def export_onnx(
    params: Params,
    model_uri: str | None = None,
    out_path: Path = paths.ONNX_MODEL,
    report_path: Path = paths.ONNX_REPORT,
    cache_dir: Path = paths.CACHE,
) -> dict[str, Any]:
    """Export, check parity, time both runtimes; writes the model and a JSON report."""
    import onnxruntime as ort

    if params.registry is None:
        raise ConfigError("params has no 'registry' section (registry.onnx_tolerance, registry.latency_runs)")
    tolerance, runs = params.registry.onnx_tolerance, params.registry.latency_runs
    with tempfile.TemporaryDirectory(prefix="steelflow-onnx-") as tmp:
        weights, size, source = _weights(params, model_uri, Path(tmp))
        model, meta = load_trained(weights)
        images = _test_images(cache_dir, meta.classes, size)
        x = as_float(to_tensor(images))
        with atomic.atomic_path(out_path) as staged:
            example = x[:2] if len(x) >= 2 else x.repeat(2, 1, 1, 1)
            export_network(model, example, staged)
            session = ort.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
            with torch.no_grad():
                eager = model(x).numpy()
            onnx = session.run(None, {"x": x.numpy()})[0]
            diff = float(np.abs(eager - onnx).max())
            if not diff < tolerance:
                raise ParityFailed(f"ONNX logits differ from PyTorch by {diff:.2e} (allowed {tolerance:.0e})")
            latency = {str(b): _latency(model, session, x, b, runs) for b in BATCH_SIZES}
    report = {
        "source": source,
        "onnx": str(out_path),
        "input": {"name": "x", "shape": ["batch", meta.data_channels, size, size], "range": [0, 1]},
        "classes": meta.classes,
        "parity": {"images": len(x), "max_abs_logit_diff": diff, "tolerance": tolerance},
        "latency_ms_per_image": latency,
        "threads": torch.get_num_threads(),
    }
    atomic.write_json(report_path, report)
    return report


def _weights(params: Params, model_uri: str | None, tmp: Path) -> tuple[Path, int, str]:
    """(model.pt, the cache side its pyfunc feeds it, where it came from)."""
    if model_uri and Path(model_uri).is_file():
        return Path(model_uri), params.data.cache_size, model_uri
    import mlflow.artifacts

    from steelflow.serving.predict import default_model_uri
    from steelflow.serving.pyfunc import weights_in
    from steelflow.tracking import tracking_uri

    uri = model_uri or default_model_uri(params)
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(tmp), tracking_uri=tracking_uri(params.mlflow)
            )
        )
    except Exception as e:
        raise DataError(f"cannot download model {uri}: {e}") from None
    weights, config = weights_in(local, uri)
    return weights, int(config.get("cache_size", params.data.cache_size)), uri


def _test_images(cache_dir: Path, classes: list[str], size: int) -> np.ndarray:
    """Up to 64 cached test images, as the pyfunc would feed them to the network."""
    from steelflow.serving.pyfunc import preprocess

    path = cache.split_path(cache_dir, "test")
    if not cache.exists(path):
        raise DataError(f"{path} not found: the parity check runs on the test split (run `steelflow split`)")
    data = cache.open(path)
    try:
        if data.classes != classes:
            raise DataError(f"{path}: classes {data.classes} differ from the model's {classes}")
        images = data.read(np.arange(min(64, len(data))))  # those 64 only, not the whole set
    finally:
        data.close()
    return preprocess(list(images), channels=images.shape[-1], size=size)


class _NoTorchvisionNotice(logging.Filter):
    """The dynamo exporter registers torchvision's ONNX ops and, without torchvision, logs one warning per
    op ("torchvision is not installed. Skipping torchvision::nms"). Our network uses none of them; the
    notice is dropped, every other exporter message kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


def export_network(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """The network (input stage included) as one ONNX file: input ``x`` (batch dynamic), output ``logits``."""
    notice = _NoTorchvisionNotice()
    logger = logging.getLogger(_REGISTRATION_LOGGER)
    logger.addFilter(notice)
    try:
        _export(model, example, path)
    finally:
        logger.removeFilter(notice)


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        external_data=False,  # one self-contained file (the weights are ~9 MB)
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        verbose=False,
    )


def _latency(
    model: torch.nn.Module, session: Any, x: torch.Tensor, batch: int, runs: int
) -> dict[str, float]:
    xb = x[:batch] if len(x) >= batch else x.repeat((batch + len(x) - 1) // len(x), 1, 1, 1)[:batch]
    feed = {"x": xb.numpy()}

    def timed(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000 / batch

    with torch.no_grad():
        eager = timed(lambda: model(xb))
    onnx = timed(lambda: session.run(None, feed))
    return {"pytorch": eager, "onnxruntime": onnx, "speedup": eager / onnx}
