"""Benchmark: training and evaluation streamed from shards at 10⁴–10⁶ images, DDP on the CPU, ingest cost.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--sizes 10000 100000 1000000] [--image-size 16]``
(``--quick``: 10³ and 10⁴ images in about a minute, to check the script works; it writes
``scale-quick.json``). Prints tables and writes ``benchmarks/results/scale.json`` and ``scale.png``.

1. **Scale.** For each size N it generates N synthetic images (cheap class-dependent textures from numpy,
   six classes like NEU-CLS, grayscale) streamed block by block into ``cache.write`` (never the whole set
   in memory), then, in a fresh child process each: one training epoch streamed from the shards
   (``train.loader.mode: stream``) through :func:`steelflow.training.loop.train`, and one evaluation epoch
   over the same N images streamed in order by :class:`steelflow.data.stream.StreamSource`. A thread of
   this process samples the child's whole process tree (the trainer and its DataLoader workers) every
   0.1 s: the peak of the summed RSS (and, every 0.5 s, of the summed PSS, which counts pages shared
   between the processes once). The memory path (``loader.mode: memory``, the split decoded into one
   tensor) runs at the ``--memory-sizes`` for comparison: its decoded bytes are N·H·W·C.
2. **Stream vs memory** at the first memory size: the training epoch's images/s of the two, same run.
3. **DDP** (``--ddp-size`` images): 1 process against 2 processes under torchrun (gloo, sync batch norm),
   1 thread a process, same global batch, settings that keep float noise small (lr 0.002, no flips,
   robust off, dropout 0, channels_last off); max |Δweight| of the saved models, beside the float-noise
   floor: the same 1-process run with only the memory layout (channels_last on) or the thread count (2)
   changed.
4. **Ingest + validate + split of NEU-CLS** as fresh processes (as ``dvc repro`` runs them), best of
   ``--ingest-repeats``: cost per image, split (which writes the shard sets) included.

Timing: a training epoch's time is that of the loop's training pass (``_fit_epoch``: the epoch's order,
DataLoader start-up and every step), measured apart from the validation pass (a fixed ``--val``-image set,
the same at every N) and from start-up; evaluation is the in-order pass over the N images. The machine is
shared: the load average before and after each measurement and the GEMM peak before and after are recorded.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
NEU = REPO.parent / "shared" / "datasets" / "NEU-CLS"
CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
PARITY = [  # settings under which one epoch on 1 and 2 processes can be compared weight by weight
    "train.lr=0.002",
    "train.augment.hflip=false",
    "train.augment.vflip=false",
    "train.robust.enabled=false",
    "model.dropout=0",
    "train.channels_last='off'",
]
EARLIER_INGEST_VALIDATE_S = 9.9  # README "Ingest + validate" (2026-11-24, before the near-duplicate checks)
EARLIER_INGEST_VALIDATE_CHECKS_S = 10.2  # the same with them (2026-12-01)


# --- synthetic data -------------------------------------------------------------------------------------


def textures(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, size, size): a sinusoidal grating whose frequency is set by the class (1 to 6.5 cycles a
    side, ± 0.3), at a random angle, phase and contrast, plus Gaussian noise. Cheap and learnable."""
    n = len(labels)
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    theta = rng.uniform(0, np.pi, n).astype(np.float32)[:, None, None]
    freq = (1.0 + 1.1 * labels + rng.uniform(-0.3, 0.3, n)).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    amp = rng.uniform(25, 60, n).astype(np.float32)[:, None, None]
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    img = 128 + amp * wave + rng.normal(0, 12, (n, size, size)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_records(n: int, size: int, seed: int, block: int = 4096):
    """``n`` Records, generated ``block`` at a time (memory stays flat whatever ``n``)."""
    from steelflow.data.cache import Record

    rng = np.random.default_rng(seed)
    for start in range(0, n, block):
        labels = rng.integers(0, len(CLASSES), min(block, n - start))
        for image, label in zip(textures(rng, labels, size), labels, strict=True):
            yield Record(image[:, :, None], CLASSES[label], hashlib.sha256(image.tobytes()).hexdigest())


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- child processes: what is measured ------------------------------------------------------------------


def child(spec: dict) -> None:
    if spec["kind"] == "generate":
        from steelflow.data import cache

        start = time.perf_counter()
        index = cache.write(
            synthetic_records(spec["n"], spec["size"], spec["seed"]),
            spec["path"],
            CLASSES,
            spec["shard_size"],
        )
        seconds = time.perf_counter() - start
        out = {"seconds": seconds, "shards": len(index["shards"]), "total": index["total"]}
    else:
        out = _child_train(spec)
        if out is None:  # a helper rank
            return
    Path(spec["result"]).write_text(json.dumps(out))


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its children that have ended (the DataLoader
    workers, joined at the end of each pass): unlike wall time, barely moved by other jobs on the machine."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _child_train(spec: dict) -> dict | None:
    import torch

    from steelflow.config import load_params
    from steelflow.data import cache, stream
    from steelflow.inference import as_float, load_trained
    from steelflow.training import loop, validation

    timed: dict[str, list[float]] = {"fit": [], "val": [], "fit_cpu": [], "val_cpu": []}

    def timing(name, fn):
        def wrapper(*args, **kwargs):
            start, cpu = time.perf_counter(), cpu_seconds()
            result = fn(*args, **kwargs)
            timed[name].append(time.perf_counter() - start)
            timed[f"{name}_cpu"].append(cpu_seconds() - cpu)
            return result

        return wrapper

    loop._fit_epoch = timing("fit", loop._fit_epoch)
    validation.validation_row = timing("val", validation.validation_row)
    p = load_params(REPO / "params.yaml", spec["overrides"])
    out_dir = Path(spec["out_dir"])
    start = time.perf_counter()
    result = loop.train(
        p.model,
        p.train,
        cache_dir=Path(spec["cache_dir"]),
        model_path=out_dir / "model.pt",
        checkpoint_path=out_dir / "checkpoint.pt",
        metrics_path=out_dir / "train.json",
        history_path=out_dir / "history.csv",
    )
    train_wall = time.perf_counter() - start
    if int(os.environ.get("RANK", "0")) > 0:
        return None
    n_train = len(cache.open(Path(spec["cache_dir"]) / "train"))
    out = {
        "n_train": n_train,
        "train_wall_s": train_wall,
        "fit_s": timed["fit"][0],
        "val_s": timed["val"][0],
        "train_images_per_s": n_train / timed["fit"][0],
        "fit_cpu_s": timed["fit_cpu"][0],
        "train_accuracy": result.history[0]["train_accuracy"],
        "val_accuracy": result.best_val_accuracy,
        "loop_images_per_s": result.images_per_s,
        "world": int(os.environ.get("WORLD_SIZE", "1")),
    }
    if spec.get("evaluate"):
        torch.set_num_threads(p.train.threads or torch.get_num_threads())
        cpu = torch.device("cpu")
        model, _ = load_trained(out_dir / "model.pt")
        channels_last = p.train.channels_last != "off"
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        start, cpu0 = time.perf_counter(), cpu_seconds()
        s = cache.open(Path(spec["cache_dir"]) / "train")
        mode = p.train.loader.mode
        source = (
            stream.MemorySource(s, cpu) if mode == "memory" else stream.StreamSource(s, cpu, spec["workers"])
        )
        loaded = time.perf_counter() - start
        right = 0
        with torch.no_grad():
            for xb, y in source.batches(stream.in_order(len(s), spec["eval_batch"])):
                x = as_float(xb)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                right += int((model(x).argmax(1) == y).sum())
        eval_s = time.perf_counter() - start
        out |= {
            "eval_s": eval_s,
            "eval_cpu_s": cpu_seconds() - cpu0,
            "eval_load_s": loaded,
            "eval_images_per_s": len(s) / eval_s,
            "eval_accuracy": right / len(s),
        }
    return out


# --- the parent: runs children, samples their process tree ----------------------------------------------


class TreeMemory(threading.Thread):
    """Peak summed RSS (every ``interval`` s) and PSS (every ``pss_every`` samples) of a process tree."""

    def __init__(self, pid: int, interval: float = 0.1, pss_every: int = 5):
        super().__init__(daemon=True)
        self.root, self.interval, self.pss_every = psutil.Process(pid), interval, pss_every
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.done = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.done.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            rss = pss = 0
            for proc in procs:
                try:
                    rss += proc.memory_info().rss
                    if i % self.pss_every == 0:
                        pss += proc.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(procs))
            i += 1
            self.done.wait(self.interval)


def run_child(spec: dict, work: Path, torchrun: int = 0) -> dict:
    """Run ``spec`` in a fresh process (under torchrun with ``torchrun`` processes); its result, peak
    memory of its process tree, wall time and the load average around it."""
    spec_file = work / f"spec-{spec['name']}.json"
    spec = {**spec, "result": str(work / f"result-{spec['name']}.json")}
    spec_file.write_text(json.dumps(spec))
    Path(spec["result"]).unlink(missing_ok=True)
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(torchrun)] if torchrun else []
    )
    cmd = [sys.executable, *launcher, __file__, "--child", str(spec_file)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    load_before = os.getloadavg()[0]
    log = (work / f"log-{spec['name']}.txt").open("w")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    monitor = TreeMemory(proc.pid)
    monitor.start()
    rc = proc.wait()
    wall = time.perf_counter() - start
    monitor.done.set()
    monitor.join()
    log.close()
    if rc != 0:
        tail = (work / f"log-{spec['name']}.txt").read_text()[-3000:]
        sys.exit(f"{spec['name']} failed (exit {rc}):\n{tail}")
    out = json.loads(Path(spec["result"]).read_text())
    return out | {
        "process_wall_s": wall,
        "peak_rss_mb": monitor.peak_rss / 2**20,
        "peak_pss_mb": monitor.peak_pss / 2**20,
        "processes": monitor.peak_procs,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def generate(path: Path, n: int, size: int, seed: int, shard_size: int, work: Path) -> dict:
    spec = {"kind": "generate", "name": path.name, "path": str(path), "n": n, "size": size, "seed": seed}
    r = run_child(spec | {"shard_size": shard_size}, work)
    r |= {"n": n, "bytes": folder_bytes(path), "images_per_s": n / r["seconds"]}
    print(
        f"  generated {n:>9,} images in {r['seconds']:7.1f} s ({r['images_per_s']:,.0f}/s), "
        f"{r['bytes'] / 2**20:8.1f} MiB on disk, {r['shards']} shards, "
        f"writer peak RSS {r['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return r


def scale_overrides(args: argparse.Namespace, mode: str) -> list[str]:
    return [
        f"model.image_size={args.image_size}",
        "train.epochs=1",
        "train.robust.enabled=false",
        f"train.batch_size={args.batch_size}",
        f"train.threads={args.threads}",
        f"train.loader.mode={mode}",
        f"train.loader.workers={args.workers}",
        "train.device=cpu",
    ]


def train_run(name: str, cache_dir: Path, overrides: list[str], work: Path, args, evaluate: bool, nproc=0):
    out_dir = work / "runs" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "kind": "train",
        "name": name,
        "cache_dir": str(cache_dir),
        "overrides": overrides,
        "out_dir": str(out_dir),
        "evaluate": evaluate,
        "workers": args.workers,
        "eval_batch": args.eval_batch,
    }
    return run_child(spec, work, torchrun=nproc) | {"model": str(out_dir / "model.pt")}


def max_weight_diff(a: str, b: str) -> dict:
    import torch

    sa = torch.load(a, weights_only=True)["state_dict"]
    sb = torch.load(b, weights_only=True)["state_dict"]
    params = [k for k in sa if sa[k].is_floating_point() and "running" not in k]
    stats = [k for k in sa if "running" in k]
    return {
        "weights": max(float((sa[k] - sb[k]).abs().max()) for k in params),
        "running_stats": max(float((sa[k] - sb[k]).abs().max()) for k in stats) if stats else 0.0,
        "largest_weight": max(float(sa[k].abs().max()) for k in params),
    }


def gemm_peak() -> float:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_model import matmul_peak_flops

    torch.set_num_threads(2)
    return max(matmul_peak_flops(torch.device("cpu")) for _ in range(2)) / 1e9


# --- ingest + validate + split of NEU-CLS -----------------------------------------------------------------


def ingest_cost(source: Path, repeats: int) -> dict:
    import yaml

    steelflow = [sys.executable, "-m", "steelflow"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"]["source"] = str(source)
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        for _ in range(repeats):
            for folder in ("data", "reports"):
                shutil.rmtree(work / folder, ignore_errors=True)
            row = {"load_before": os.getloadavg()[0]}
            for step in ("ingest", "validate", "split"):
                start = time.perf_counter()
                subprocess.run(
                    [*steelflow, step],
                    cwd=work,
                    check=True,
                    capture_output=True,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )
                row[f"{step}_s"] = time.perf_counter() - start
            runs.append(row)
        n = len((work / "data" / "manifest.csv").read_text().splitlines()) - 1
        split_images = sum(
            json.loads((work / "data" / "cache" / "splits" / s / "index.json").read_text())["total"]
            for s in ("train", "val", "test")
        )
        shard_bytes = folder_bytes(work / "data" / "cache" / "splits")
    for r in runs:
        r["ingest_validate_s"] = r["ingest_s"] + r["validate_s"]
        r["total_s"] = r["ingest_validate_s"] + r["split_s"]
    best = min(runs, key=lambda r: r["total_s"])
    return {
        "source": str(source),
        "images": n,
        "split_images": split_images,
        "shard_bytes": shard_bytes,
        "runs": runs,
        "best": best,
        "ms_per_image": {
            "ingest_validate": 1000 * best["ingest_validate_s"] / n,
            "split": 1000 * best["split_s"] / n,
            "ingest_validate_split": 1000 * best["total_s"] / n,
        },
        "earlier_ms_per_image": {
            "ingest_validate_2026-11-24": 1000 * EARLIER_INGEST_VALIDATE_S / n,
            "ingest_validate_checks_2026-12-01": 1000 * EARLIER_INGEST_VALIDATE_CHECKS_S / n,
        },
    }


# --- report -------------------------------------------------------------------------------------------


def spread(values: list[float]) -> float:
    """max / min: 1.0 is perfectly flat."""
    return max(values) / min(values)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    stream_rows, memory_rows = results["stream"], results["memory"]
    ns = [r["n"] for r in stream_rows]
    ax1.plot(ns, [r["train_images_per_s"] for r in stream_rows], "o-", label="train, stream")
    ax1.plot(ns, [r["eval_images_per_s"] for r in stream_rows], "s-", label="evaluate, stream")
    if memory_rows:
        mn = [r["n"] for r in memory_rows]
        ax1.plot(mn, [r["train_images_per_s"] for r in memory_rows], "o--", label="train, memory")
        ax1.plot(mn, [r["eval_images_per_s"] for r in memory_rows], "s--", label="evaluate, memory")
    ax1.set(xscale="log", xlabel="images (N)", ylabel="images/s", title="throughput, one epoch")
    ax1.set_ylim(bottom=0)
    ax1.legend()
    ax2.plot(ns, [r["peak_rss_mb"] for r in stream_rows], "o-", label="stream: peak RSS, process tree")
    ax2.plot(ns, [r["peak_pss_mb"] for r in stream_rows], "o:", label="stream: peak PSS, process tree")
    if memory_rows:
        mn = [r["n"] for r in memory_rows]
        ax2.plot(mn, [r["peak_rss_mb"] for r in memory_rows], "s--", label="memory: peak RSS")
    s = results["settings"]["image_size"]
    ax2.plot(ns, [n * s * s / 2**20 for n in ns], "k:", label=f"decoded set N·{s}·{s}·1 (memory path)")
    ax2.plot(ns, [n * 64 * 64 / 2**20 for n in ns], "r:", label="the same at 64 px")
    ax2.set(xscale="log", yscale="log", xlabel="images (N)", ylabel="MB", title="memory")
    ax2.legend(fontsize=8)
    fig.suptitle(f"steelflow streaming at scale, CASI-Net {s} px, 2-core CPU ({results['recorded']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--image-size", type=int, default=16, help="stored and model side (px)")
    parser.add_argument("--batch-size", type=int, default=64, help="train.batch_size")
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--val", type=int, default=512, help="validation images (the same at every size)")
    parser.add_argument("--workers", type=int, default=2, help="train.loader.workers")
    parser.add_argument("--threads", type=int, default=1, help="train.threads (DDP runs: 1 a process)")
    parser.add_argument("--shard-size", type=int, default=1000, help="data.shard_size")
    parser.add_argument("--ddp-size", type=int, default=10_000, help="images of the DDP runs (0: skip)")
    parser.add_argument("--ingest-repeats", type=int, default=3, help="0: skip the NEU-CLS measurement")
    parser.add_argument("--source", type=Path, default=NEU)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "steelflow-bench-scale")
    parser.add_argument("--keep", action="store_true", help="keep the generated shard sets")
    parser.add_argument("--quick", action="store_true", help="10³ and 10⁴ images, no NEU-CLS: a check")
    parser.add_argument("--out", default=None, help="result name under benchmarks/results/ (default scale)")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child.read_text()))
        return
    if args.quick:
        args.sizes, args.memory_sizes, args.ddp_size, args.ingest_repeats = [1000, 10_000], [1000], 1000, 0
        args.val = 256
    name = args.out or ("scale-quick" if args.quick else "scale")
    started = time.perf_counter()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    size = args.image_size
    print(f"work folder {work}; CASI-Net at {size} px, batch {args.batch_size}, {args.threads} threads")
    peak_before = gemm_peak()
    print(f"fp32 GEMM peak {peak_before:.0f} GFLOP/s (2 threads); load average {os.getloadavg()[0]:.2f}")

    results: dict = {
        "recorded": datetime.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "benchmarks/bench_scale.py", *sys.argv[1:]]),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "ram_gb": psutil.virtual_memory().total / 2**30,
            "python": platform.python_version(),
            "gemm_peak_gflops_before": peak_before,
            "note": "shared machine: other processes (test suites) may run at the same time; "
            "see load_before/after",
        },
        "settings": {
            "image_size": size,
            "channels": 1,
            "batch_size": args.batch_size,
            "eval_batch": args.eval_batch,
            "threads": args.threads,
            "workers": args.workers,
            "shard_size": args.shard_size,
            "shuffle_window": 8,
            "val_images": args.val,
            "scale_overrides": scale_overrides(args, "stream"),
            "parity_overrides": PARITY,
            "evaluated_on": "the N training images, in order (one evaluation epoch)",
        },
        "generate": [],
        "stream": [],
        "memory": [],
    }
    # the validation set, the same at every size
    val_dir = work / "val"
    generate(val_dir, args.val, size, 10**9, args.shard_size, work)
    sizes = sorted(set(args.sizes) | set(args.memory_sizes) | ({args.ddp_size} if args.ddp_size else set()))
    print("\n1. Scale: one training epoch and one evaluation epoch streamed from the shards")
    for n in sizes:
        cache_dir = work / f"n{n}"
        cache_dir.mkdir()
        (cache_dir / "val").symlink_to(val_dir)
        results["generate"].append(generate(cache_dir / "train", n, size, n, args.shard_size, work))
        modes = (["stream"] if n in args.sizes else []) + (["memory"] if n in args.memory_sizes else [])
        for mode in modes:
            r = train_run(f"{mode}-{n}", cache_dir, scale_overrides(args, mode), work, args, evaluate=True)
            r |= {"n": n, "mode": mode, "decoded_mb": n * size * size / 2**20}
            r["train_us_per_image"] = 1e6 / r["train_images_per_s"]
            r["eval_us_per_image"] = 1e6 * r["eval_s"] / n
            r["train_cpu_us_per_image"] = 1e6 * r["fit_cpu_s"] / n
            r["eval_cpu_us_per_image"] = 1e6 * r["eval_cpu_s"] / n
            results[mode].append(r)
            print(
                f"  {mode:6s} N={n:>9,}: train {r['train_images_per_s']:7.0f} images/s "
                f"({r['fit_s']:6.1f} s, CPU {r['train_cpu_us_per_image']:.0f} µs/image, "
                f"accuracy {r['train_accuracy']:.3f}), evaluate "
                f"{r['eval_images_per_s']:7.0f} images/s ({r['eval_s']:6.1f} s, "
                f"CPU {r['eval_cpu_us_per_image']:.0f} µs/image, "
                f"accuracy {r['eval_accuracy']:.3f}); peak RSS {r['peak_rss_mb']:6.0f} MB, "
                f"PSS {r['peak_pss_mb']:6.0f} MB ({r['processes']} processes); "
                f"load {r['load_before']:.1f}→{r['load_after']:.1f}",
                flush=True,
            )
        if n not in (args.ddp_size,) and not args.keep:
            shutil.rmtree(cache_dir / "train")

    rows = results["stream"]
    checks: dict = {}
    if len(rows) > 1:
        checks = {
            "train_us_per_image_spread": spread([r["train_us_per_image"] for r in rows]),
            "eval_us_per_image_spread": spread([r["eval_us_per_image"] for r in rows]),
            "train_eval_us_per_image_spread": spread(
                [1e6 * (r["fit_s"] + r["eval_s"]) / r["n"] for r in rows]
            ),
            "train_cpu_us_per_image_spread": spread([r["train_cpu_us_per_image"] for r in rows]),
            "eval_cpu_us_per_image_spread": spread([r["eval_cpu_us_per_image"] for r in rows]),
            "peak_rss_spread": spread([r["peak_rss_mb"] for r in rows]),
            "peak_pss_spread": spread([r["peak_pss_mb"] for r in rows]),
            "bound": 1.2,
        }
    mem = {r["n"]: r for r in results["memory"]}
    strm = {r["n"]: r for r in rows}
    both = [n for n in args.memory_sizes if n in strm and n in mem]
    if both:
        n = both[0]
        checks["stream_vs_memory"] = {
            "n": n,
            "train_ratio": strm[n]["train_images_per_s"] / mem[n]["train_images_per_s"],
            "eval_ratio": strm[n]["eval_images_per_s"] / mem[n]["eval_images_per_s"],
            "train_cpu_ratio": strm[n]["train_cpu_us_per_image"] / mem[n]["train_cpu_us_per_image"],
            "eval_cpu_ratio": strm[n]["eval_cpu_us_per_image"] / mem[n]["eval_cpu_us_per_image"],
            "bound": 0.85,
        }
    if len(mem) > 1:
        checks["memory_rss_growth_mb"] = {str(n): mem[n]["peak_rss_mb"] for n in sorted(mem)}
    results["checks"] = checks
    if checks:
        print(
            "  per-image cost spread over N (max/min): train "
            f"{checks.get('train_us_per_image_spread', 0):.2f}, "
            f"evaluate {checks.get('eval_us_per_image_spread', 0):.2f}; CPU time per image: train "
            f"{checks.get('train_cpu_us_per_image_spread', 0):.2f}, evaluate "
            f"{checks.get('eval_cpu_us_per_image_spread', 0):.2f}; peak RSS spread "
            f"{checks.get('peak_rss_spread', 0):.2f}, PSS {checks.get('peak_pss_spread', 0):.2f} (bound 1.20)"
        )
    if "stream_vs_memory" in checks:
        c = checks["stream_vs_memory"]
        print(
            f"2. Stream vs memory at N={c['n']:,}: training {c['train_ratio']:.2f}×, evaluation "
            f"{c['eval_ratio']:.2f}× the memory path's images/s; CPU time per image "
            f"{c['train_cpu_ratio']:.2f}× / {c['eval_cpu_ratio']:.2f}× the memory path's"
        )

    if args.ddp_size:
        print(f"\n3. DDP on the CPU, {args.ddp_size:,} images, one epoch, global batch {args.batch_size}")
        cache_dir = work / f"n{args.ddp_size}"
        base = [o for o in scale_overrides(args, "stream") if not o.startswith("train.threads")] + PARITY
        one = ["train.threads=1", *base]
        runs = {
            "1proc": train_run("ddp-1proc", cache_dir, one, work, args, evaluate=False),
            "1proc_channels_last": train_run(
                "ddp-1proc-cl", cache_dir, [*one, "train.channels_last='on'"], work, args, evaluate=False
            ),
            "1proc_2threads": train_run(
                "ddp-1proc-2t", cache_dir, ["train.threads=2", *base], work, args, evaluate=False
            ),
            "2proc": train_run("ddp-2proc", cache_dir, one, work, args, evaluate=False, nproc=2),
        }
        ref = runs["1proc"]["model"]
        ddp = {
            "n": args.ddp_size,
            "runs": runs,
            "speedup_2proc": runs["2proc"]["train_images_per_s"] / runs["1proc"]["train_images_per_s"],
            "max_abs_diff": {
                "2proc_vs_1proc": max_weight_diff(runs["2proc"]["model"], ref),
                "channels_last_vs_not_1proc (float-noise floor)": max_weight_diff(
                    runs["1proc_channels_last"]["model"], ref
                ),
                "2threads_vs_1thread_1proc": max_weight_diff(runs["1proc_2threads"]["model"], ref),
            },
        }
        results["ddp"] = ddp
        for key, r in runs.items():
            print(
                f"  {key:20s}: train {r['train_images_per_s']:6.0f} images/s ({r['fit_s']:.1f} s), "
                f"peak RSS {r['peak_rss_mb']:.0f} MB, load {r['load_before']:.1f}→{r['load_after']:.1f}"
            )
        print(f"  2 processes: {ddp['speedup_2proc']:.2f}× one process's images/s")
        for key, d in ddp["max_abs_diff"].items():
            print(f"  max |Δweight| {key}: {d['weights']:.2e} (running stats {d['running_stats']:.2e})")
        if not args.keep:
            shutil.rmtree(cache_dir / "train")

    if args.ingest_repeats:
        if not args.source.is_dir():
            print(f"\n4. skipped: {args.source} not found")
        else:
            print(f"\n4. NEU-CLS ingest + validate + split, fresh processes, best of {args.ingest_repeats}")
            ing = ingest_cost(args.source, args.ingest_repeats)
            results["ingest"] = ing
            for r in ing["runs"]:
                print(
                    f"  ingest {r['ingest_s']:5.2f} s  validate {r['validate_s']:5.2f} s  "
                    f"split {r['split_s']:5.2f} s"
                    f"  total {r['total_s']:5.2f} s  (load {r['load_before']:.1f})"
                )
            ms = ing["ms_per_image"]
            print(
                f"  per image: ingest + validate {ms['ingest_validate']:.2f} ms, "
                f"split (shards) {ms['split']:.2f} ms, "
                f"all three {ms['ingest_validate_split']:.2f} ms (earlier ingest + validate: "
                f"{ing['earlier_ms_per_image']['ingest_validate_2026-11-24']:.1f} ms)"
            )

    results["machine"]["gemm_peak_gflops_after"] = gemm_peak()
    results["run_seconds"] = time.perf_counter() - started
    print(
        f"\nfp32 GEMM peak after: {results['machine']['gemm_peak_gflops_after']:.0f} GFLOP/s; "
        f"whole run {results['run_seconds'] / 60:.1f} min"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote benchmarks/results/{name}.json")
    if rows:
        plot(results, RESULTS / f"{name}.png")
        print(f"wrote benchmarks/results/{name}.png")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
