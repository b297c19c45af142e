"""Benchmark: CASI-Net variants' size, training throughput by execution path, and inference latency.

Run: ``.venv/bin/python benchmarks/bench_model.py [--sizes 300 64] [--quick]``. Prints tables and writes
``benchmarks/results/model.json``. Training throughput is images/s over a few SGD steps on random data
(the model's own work; data loading is the cache's job): plain fp32 eager against channels_last,
bf16 autocast and torch.compile, on whatever device is present. All figures of one run share a machine
state; compare ratios within a run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from steelflow.models import create_model, list_models
from steelflow.models.summary import count_flops, count_params

RESULT = Path(__file__).resolve().parent / "results" / "model.json"
PATHS = {
    "eager fp32": {"channels_last": False, "bf16": False, "compile": False},
    "channels_last": {"channels_last": True, "bf16": False, "compile": False},
    "bf16 autocast": {"channels_last": False, "bf16": True, "compile": False},
    "channels_last + bf16": {"channels_last": True, "bf16": True, "compile": False},
    "torch.compile": {"channels_last": False, "bf16": False, "compile": True},
    "channels_last + compile": {"channels_last": True, "bf16": False, "compile": True},
}


def train_throughput(
    size: int, batch: int, steps: int, device: torch.device, channels_last: bool, bf16: bool, compile: bool
) -> float:
    torch.manual_seed(0)
    model = create_model("casinet", num_classes=6, image_size=size).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    x = torch.rand(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 6, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(step_model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up (and compilation)
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


@torch.no_grad()
def latency_ms(size: int, batch: int, repeats: int, device: torch.device) -> float:
    model = create_model("casinet", num_classes=6, image_size=size).to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    model(x)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        model(x)
    _sync(device)
    return 1000 * (time.perf_counter() - start) / (repeats * batch)


def matmul_peak_flops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """The machine's practical fp32 peak: FLOP/s of a large square matmul."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 64])
    parser.add_argument("--batch", type=int, default=16, help="training batch (paper: 16)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--skip-at-large",
        nargs="*",
        default=["bf16 autocast", "channels_last + bf16"],
        help="paths not run at sizes >= 200 (bf16 autocast is ~10x slower than fp32 on CPUs without bf16)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    result: dict[str, object] = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "variants": {},
        "train_images_per_s": {},
        "inference_ms_per_image": {},
    }

    peak = matmul_peak_flops(device)
    result["matmul_peak_gflops"] = peak / 1e9
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s on {result['threads']} threads")
    print(f"{'variant':<14}{'size':>6}{'params':>12}{'GFLOPs':>10}")
    for size in args.sizes:
        for name in list_models():
            model = create_model(name, num_classes=6, image_size=size)
            params, flops = count_params(model), count_flops(model, size)
            result["variants"][f"{name}@{size}"] = {"params": params, "flops": flops}
            print(f"{name:<14}{size:>6}{params:>12,}{flops / 1e9:>10.3f}")

    for size in args.sizes:
        steps = max(1, args.steps if size >= 200 else args.steps * 10)
        print(f"\ntraining at {size}×{size}, batch {args.batch}, {steps} steps, {device}:", flush=True)
        rows: dict[str, float] = {}
        for label, opts in PATHS.items():
            if size >= 200 and label in args.skip_at_large:
                continue
            rows[label] = train_throughput(size, args.batch, steps, device, **opts)
            print(
                f"  {label:<22}{rows[label]:8.2f} images/s  {rows[label] / rows['eager fp32']:5.2f}×",
                flush=True,
            )
        result["train_images_per_s"][str(size)] = rows
        # A training step costs about 3 forward passes (forward, and backward's two products).
        flops = result["variants"][f"casinet@{size}"]["flops"]
        best = max(rows, key=rows.get)
        frac = 3 * flops * rows[best] / peak
        result.setdefault("fraction_of_matmul_peak", {})[str(size)] = {"path": best, "fraction": frac}
        print(f"  best path ({best}) uses {100 * frac:.1f} % of the fp32 matmul peak", flush=True)

    for size in args.sizes:
        lat = {str(b): latency_ms(size, b, 3 if size >= 200 else 20, device) for b in (1, 32)}
        result["inference_ms_per_image"][str(size)] = lat
        print(
            f"\ninference at {size}×{size}: batch 1 {lat['1']:.1f} ms/image, "
            f"batch 32 {lat['32']:.1f} ms/image"
        )

    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULT}")


if __name__ == "__main__":
    main()
