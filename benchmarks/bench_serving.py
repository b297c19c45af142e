"""Benchmark: the serving engines — PyTorch eager, ONNX Runtime fp32 and ONNX Runtime int8 — against the
machine's FLOP-bound limit, and the int8 accuracy gate on a trained model.

Run: ``.venv/bin/python benchmarks/bench_serving.py [--sizes 64 128 300] [--threads 2] [--model
models/model.pt] [--out serving]``. Prints tables and writes ``benchmarks/results/<out>.json``, with the
load average before and after (the timings are only as quiet as the machine). The accuracy gate alone, on
another project (e.g. a NEU-CLS one that ``bench_robustness.py --workdir`` trained), from that project's
folder: ``python .../bench_serving.py --sizes --model rows/robust-local/model.pt --out serving-neu``.

- **GEMM peak**: ONNX Runtime's own fp32 ``MatMul`` and int8 ``MatMulInteger`` (uint8 × int8) on square
  matrices of 512, 1024 and 2048, on ``--threads`` threads, the fastest of 10 products: the practical
  ceiling for each precision here. Measured before and after the latencies and the higher kept (on a
  shared machine one measurement can come out at half the other).
- **Latency per image**, batch 1 and 32, CASI-Net as registered (1 channel, ``local`` input stage, 6
  classes) at each size, random weights (speed does not depend on them): eager PyTorch, ONNX fp32 (the
  registered default), ONNX int8 static (QDQ, what ``registry.quantize: static`` registers) and dynamic.
  Each figure also as a fraction of its FLOP-bound time (the model's FLOPs over the GEMM peak).
- **Floors** at 300 px, batch 1: ONNX fp32 within 2× its FLOP-bound time; int8 at most 30 ms per image.
- **Accuracy gate** (with ``--model``, after ``dvc repro``): fp32 against int8 accuracy on every
  evaluation condition of this project's caches, as ``register`` checks it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from steelflow.models import create_model
from steelflow.models.summary import count_flops
from steelflow.serving import build as serving_build
from steelflow.serving import engine
from steelflow.serving.onnx_export import export_network

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES, CHANNELS = 6, 1


def gemm_peaks(
    threads: int, sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 10
) -> dict[str, float]:
    """Peak op/s of ONNX Runtime's fp32 MatMul and int8 MatMulInteger: the best over square ``sizes``
    (2n³ ops a product) of the fastest of ``repeats`` products."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    peaks = {"fp32": 0.0, "int8": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            graphs = {
                "fp32": (
                    helper.make_node("MatMul", ["a", "b"], ["c"]),
                    [TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT],
                    [rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)],
                ),
                "int8": (
                    helper.make_node("MatMulInteger", ["a", "b"], ["c"]),
                    [TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32],
                    [
                        rng.integers(0, 256, (n, n), dtype=np.uint8),
                        rng.integers(-128, 128, (n, n), dtype=np.int8),
                    ],
                ),
            }
            for name, (node, types, feeds) in graphs.items():
                inputs = [
                    helper.make_tensor_value_info(x, t, [n, n]) for x, t in zip("ab", types[:2], strict=True)
                ]
                graph = helper.make_graph(
                    [node], name, inputs, [helper.make_tensor_value_info("c", types[2], [n, n])]
                )
                path = Path(tmp) / f"{name}-{n}.onnx"
                onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
                session = engine.onnx_session(path, threads, 1)
                feed = {"a": feeds[0], "b": feeds[1]}
                seconds = min(_times(lambda s=session, f=feed: s.run(None, f), repeats, warmup=2))
                peaks[name] = max(peaks[name], 2 * n**3 / seconds)
    return peaks


def _times(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def latencies(size: int, threads: int, tmp: Path) -> dict[str, dict[str, float]]:
    """ms per image at batch 1 and 32 for each engine at ``size`` px."""
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = create_model("casinet", CLASSES, size, input_norm="local").eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, size, size, CHANNELS), dtype=np.uint8)
    fp32 = tmp / f"{size}.onnx"
    export_network(model, torch.from_numpy(engine.as_input(images[:2])), fp32)
    graphs = {
        "onnx fp32": fp32,
        "onnx int8 static": serving_build.quantize(fp32, tmp / f"{size}.s8.onnx", "static", images[:16]),
        "onnx int8 dynamic": serving_build.quantize(fp32, tmp / f"{size}.d8.onnx", "dynamic"),
    }
    runs = {"pytorch eager": lambda x: model(torch.from_numpy(x))}
    for name, path in graphs.items():
        runs[name] = engine.onnx_logits(engine.onnx_session(path, threads, 1))
    out: dict[str, dict[str, float]] = {}
    for batch in (1, 32):
        x = engine.as_input(images[:batch])
        repeats = (10 if batch == 1 else 4) if size <= 128 else (5 if batch == 1 else 2)
        for name, run in runs.items():
            with torch.no_grad():
                seconds = statistics.median(_times(lambda r=run, x=x: r(x), repeats))
            ms = 1000 * seconds / batch
            out.setdefault(name, {})[str(batch)] = ms
            print(f"  {size:>3} px  batch {batch:>2}  {name:<18} {ms:8.2f} ms/image", flush=True)
    return out


def accuracy_gate(weights: Path, cache_dir: Path, threads: int, tmp: Path) -> dict[str, object]:
    """fp32 and int8 (static, dynamic) accuracy on every evaluation set, and the gate's verdict."""
    from steelflow.config import load_params
    from steelflow.inference import load_trained
    from steelflow.steps.evaluate import evaluation_sets

    params = load_params()
    model, _ = load_trained(weights)
    sets = evaluation_sets(params.corrupt, cache_dir)
    fp32 = tmp / "trained.onnx"
    from steelflow.data import cache

    test = cache.load(sets["original"]).images
    parity = serving_build.export_checked(model, test, fp32, 1e-4, 1.0)
    calibration = serving_build.calibration_images(
        cache.split_path(cache_dir, "train"), params.registry.calibration_images
    )
    before = serving_build.accuracies(fp32, sets, threads)
    result: dict[str, object] = {
        "image_size": int(test.shape[1]),
        "parity": parity.tags(),
        "fp32": before,
        "max_quantized_drop": params.registry.max_quantized_drop,
    }
    for mode in ("static", "dynamic"):
        int8 = serving_build.quantize(fp32, tmp / f"trained.{mode}.onnx", mode, calibration)
        after = serving_build.accuracies(int8, sets, threads)
        drop = {k: before[k] - after[k] for k in before}
        result[mode] = {
            "accuracy": after,
            "worst_drop": max(drop.values()),
            "passes_gate": max(drop.values()) <= params.registry.max_quantized_drop,
        }
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 300], help="none: the gate only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"), help="trained weights (gate)")
    ap.add_argument("--cache", type=Path, default=Path("data/cache"))
    ap.add_argument("--out", default="serving", help="benchmarks/results/<out>.json")
    args = ap.parse_args()
    load_before = os.getloadavg()

    machine = platform.processor() or platform.machine()
    result: dict[str, object] = {"machine": machine, "cpus": os.cpu_count(), "threads": args.threads}
    first = gemm_peaks(args.threads)
    print(f"GEMM peak on {args.threads} threads: fp32 {first['fp32'] / 1e9:.1f} GFLOP/s, "
          f"int8 {first['int8'] / 1e9:.1f} GOP/s ({first['int8'] / first['fp32']:.2f}x)")  # fmt: skip

    sizes: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        measured = {size: latencies(size, args.threads, Path(tmp)) for size in args.sizes}
        again = gemm_peaks(args.threads)
        peaks = {k: max(first[k], again[k]) for k in first}
        result["gemm_peak_gflops"] = {k: v / 1e9 for k, v in peaks.items()}
        result["gemm_peak_gflops_measured"] = {
            "before": {k: v / 1e9 for k, v in first.items()},
            "after": {k: v / 1e9 for k, v in again.items()},
        }
        print(f"GEMM peak again: fp32 {again['fp32'] / 1e9:.1f} GFLOP/s, int8 {again['int8'] / 1e9:.1f} "
              f"GOP/s; kept fp32 {peaks['fp32'] / 1e9:.1f}, int8 {peaks['int8'] / 1e9:.1f}")  # fmt: skip
        for size, ms in measured.items():
            flops = count_flops(create_model("casinet", CLASSES, size, input_norm="local"), size, CHANNELS)
            bound = {"fp32": 1000 * flops / peaks["fp32"], "int8": 1000 * flops / peaks["int8"]}
            fraction = {
                name: {b: bound["int8" if "int8" in name else "fp32"] / t for b, t in by_batch.items()}
                for name, by_batch in ms.items()
            }
            sizes[str(size)] = {
                "gflops": flops / 1e9,
                "flop_bound_ms": bound,
                "ms_per_image": ms,
                "fraction_of_flop_bound": fraction,
            }
            print(f"  {size} px: {flops / 1e9:.2f} GFLOPs, FLOP-bound {bound['fp32']:.2f} ms fp32, "
                  f"{bound['int8']:.2f} ms int8")  # fmt: skip
        result["sizes"] = sizes
        if "300" in sizes:
            s = sizes["300"]
            fp32, int8 = s["ms_per_image"]["onnx fp32"]["1"], s["ms_per_image"]["onnx int8 static"]["1"]
            result["floors_300px_batch1"] = {
                "onnx_fp32_ms": fp32,
                "onnx_fp32_limit_ms": 2 * s["flop_bound_ms"]["fp32"],
                "onnx_fp32_pass": fp32 <= 2 * s["flop_bound_ms"]["fp32"],
                "int8_ms": int8,
                "int8_limit_ms": 30.0,
                "int8_pass": int8 <= 30.0,
            }
            print(f"floors at 300 px, batch 1: {json.dumps(result['floors_300px_batch1'])}")
        if args.model.is_file():
            result["accuracy_gate"] = accuracy_gate(args.model, args.cache, args.threads, Path(tmp))
            print(f"accuracy gate: {json.dumps(result['accuracy_gate'], indent=1)}")
    result["load_average_1min"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    result["command"] = "benchmarks/bench_serving.py " + " ".join(sys.argv[1:])
    out = RESULTS / f"{args.out}.json"
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after → {out}")


if __name__ == "__main__":
    main()
