"""Robustness on real NEU-CLS: clean-trained vs robust-trained CASI-Net, with every input stage.

Builds a throwaway project from profiles/paper.yaml on the real NEU-CLS (the paper's 70/30 split, 20 % of
train held out for early stopping), at a CPU size (default 64 px), runs ingest → validate → split →
corrupt once, then trains and evaluates one model per row: training regime (``clean``:
``train.robust.enabled`` off, the paper's; ``robust``: on) × input stage (``model.input_norm``). Rows run
as separate processes, ``--jobs`` at a time, one thread each. Columns: the clean test set, the six Table 1
conditions and the hold-out block (corruption families training never sees).

Prints the table and writes benchmarks/results/robustness.json, robustness.png (the table as a heat map)
and robust_training_examples.png (training images and what robust training makes of them).

    .venv/bin/python benchmarks/bench_robustness.py [--size 64] [--epochs 25] [--jobs 2]
        [--norms none standardize flatfield local] [--regimes clean robust] [--data DIR] [--workdir DIR]
        [--set KEY=VALUE ...] [--out NAME] [--collect]

``--set`` applies params overrides to every row, for an ablation
(e.g. ``--set train.robust.noise.spectrum=[0,0]``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FLOORS = {"clean": 0.975, "table1": 0.93, "holdout": 0.85}  # the robustness issue's floors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "NEU-CLS")
    parser.add_argument("--size", type=int, default=64, help="cache and model image size, px")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--jobs", type=int, default=2, help="rows trained at once (one thread each)")
    parser.add_argument("--norms", nargs="+", default=["none", "standardize", "flatfield", "local"])
    parser.add_argument("--regimes", nargs="+", default=["clean", "robust"])
    parser.add_argument("--workdir", type=Path, help="keep the project here (default: a temporary folder)")
    parser.add_argument("--out", default="robustness", help="name of the JSON and PNG under results/")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="params overrides")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="write the report from the rows already trained in --workdir (of --regimes x --norms), "
        "training none: for rows run apart (--row) or a run that was stopped",
    )
    parser.add_argument("--row", nargs=2, metavar=("REGIME", "NORM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:  # one row, in its own process (what the parent runs --jobs of at once)
        return _train_row(args.workdir, *args.row)

    started = time.perf_counter()
    rows = [(r, n) for r in args.regimes for n in args.norms]
    if args.collect:
        if not args.workdir:
            parser.error("--collect needs --workdir, the folder the rows were trained in")
        found = [(r, n) for r, n in rows if (args.workdir / "rows" / f"{r}-{n}" / "row.json").is_file()]
        if not found:
            parser.error(f"no trained rows under {args.workdir / 'rows'}")
        folder = args.workdir / "rows"
        results = [json.loads((folder / f"{r}-{n}" / "row.json").read_text()) for r, n in found]
        prep = None
    with tempfile.TemporaryDirectory(prefix="steelflow-bench-robust-") as tmp:
        project = args.workdir or Path(tmp)
        if not args.collect:
            project.mkdir(parents=True, exist_ok=True)
            _write_params(project, args)
            prep = time.perf_counter()
            for step in ("ingest", "validate", "split", "corrupt"):
                _steelflow(project, step)
            prep = time.perf_counter() - prep
            examples(project, RESULTS / "robust_training_examples.png")
            with ThreadPoolExecutor(args.jobs) as pool:
                results = list(pool.map(lambda row: _run_row(project, *row), rows))
    params = yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())
    holdout = [c["name"] for c in params["corrupt"]["holdout"]]
    report = {
        "data": str(args.data),
        "image_size": args.size,
        "epochs": args.epochs,
        "holdout": holdout,
        "overrides": args.set,
        "floors": FLOORS,
        "rows": results,
        "prepare_seconds": prep,
        "total_seconds": None if args.collect else time.perf_counter() - started,
        "row_seconds": sum(r["seconds"] for r in results),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": "benchmarks/bench_robustness.py " + " ".join(sys.argv[1:]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(results, holdout))
    _plot(results, holdout, RESULTS / f"{args.out}.png")
    took = f"{report['row_seconds']:.0f} s of rows" if args.collect else f"{report['total_seconds']:.0f} s"
    print(f"total {took} → {RESULTS / args.out}.json, {args.out}.png")


def _write_params(project: Path, args: argparse.Namespace) -> None:
    params = yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())
    params["data"]["source"] = str(args.data.resolve())
    params["data"]["cache_size"] = args.size
    params["model"]["image_size"] = args.size
    params["train"].update(epochs=args.epochs, patience=0, threads=1)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if args.set:  # validated here, once, so a typo fails before any training
        sys.path.insert(0, str(REPO))
        from steelflow.config import load_params

        load_params(project / "params.yaml", args.set)
        (project / "overrides.json").write_text(json.dumps(args.set))


def _steelflow(project: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "steelflow", *args], cwd=project, check=True, capture_output=True)


def _run_row(project: Path, regime: str, norm: str) -> dict:
    cmd = [sys.executable, __file__, "--workdir", str(project), "--row", regime, norm]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    row = json.loads((project / "rows" / f"{regime}-{norm}" / "row.json").read_text())
    print(f"{regime:>6} {norm:<11} {row['seconds']:6.0f} s  " + _cells(row["accuracy"]), flush=True)
    return row


def _train_row(project: Path, regime: str, norm: str) -> None:
    os.chdir(project)
    sys.path.insert(0, str(REPO))
    from steelflow.config import load_params
    from steelflow.reproduce import train_and_evaluate

    overrides = json.loads(Path("overrides.json").read_text()) if Path("overrides.json").exists() else []
    robust = "true" if regime == "robust" else "false"
    p = load_params("params.yaml", [*overrides, f"model.input_norm={norm}", f"train.robust.enabled={robust}"])
    out = Path("rows") / f"{regime}-{norm}"
    start = time.perf_counter()
    trained, scored = train_and_evaluate(p, p.model, p.train, out)
    row = {
        "regime": regime,
        "input_norm": norm,
        "accuracy": scored.accuracy,
        "summary": scored.summary,
        "best_epoch": trained.best_epoch,
        "train_seconds": trained.seconds,
        "seconds": time.perf_counter() - start,
    }
    (out / "row.json").write_text(json.dumps(row, indent=2))


def _cells(acc: dict[str, float]) -> str:
    return " ".join(f"{k}={100 * v:.1f}" for k, v in acc.items())


def table(rows: list[dict], holdout: list[str]) -> str:
    """Markdown: one row per (regime, input stage), the clean set, the six conditions, the hold-out block."""
    names = list(rows[0]["accuracy"])
    head = "| training | input stage | " + " | ".join(names) + " | floors met |"
    lines = [head, "|---|---|" + "---:|" * (len(names) + 1)]
    for r in rows:
        acc = r["accuracy"]
        cells = " | ".join(f"{100 * acc[n]:.1f}" for n in names)
        met = "yes" if meets(acc, holdout) else "no"
        lines.append(f"| {r['regime']} | {r['input_norm']} | {cells} | {met} |")
    return "\n".join(lines)


def meets(acc: dict[str, float], holdout: list[str]) -> bool:
    table1 = [v for k, v in acc.items() if k != "original" and k not in holdout]
    held = [acc[k] for k in holdout if k in acc]
    return (
        acc["original"] >= FLOORS["clean"]
        and min(table1) >= FLOORS["table1"]
        and (not held or min(held) >= FLOORS["holdout"])
    )


def examples(project: Path, out: Path, n: int = 8, draws: int = 3) -> None:
    """The first training image of each class (and more), then ``draws`` robust-training draws of each."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch
    from PIL import Image

    from steelflow.config import load_params
    from steelflow.data import cache
    from steelflow.training.loop import augment

    p = load_params(project / "params.yaml")
    data = cache.load(cache.split_path(project / "data" / "cache", "train"))
    picks = [int(np.flatnonzero(data.labels == k)[0]) for k in range(len(data.classes))]
    picks += [i for i in range(len(data)) if i not in picks][: max(0, n - len(picks))]
    x = torch.from_numpy(data.images[picks]).permute(0, 3, 1, 2).float() / 255
    rows = [x]
    for d in range(draws):
        torch.manual_seed(d)
        rows.append(augment(x.clone(), p.train))
    grid = torch.cat([torch.cat(list(r[:, 0]), dim=1) for r in rows], dim=0)
    img = Image.fromarray((grid.numpy() * 255).round().astype(np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.resize((img.width * 2, img.height * 2), Image.Resampling.NEAREST).save(out)


def _plot(rows: list[dict], holdout: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(rows[0]["accuracy"])
    grid = np.array([[100 * r["accuracy"][n] for n in names] for r in rows])
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 3, 0.5 * len(rows) + 1.8))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=50, vmax=100, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), [f"{r['regime']} / {r['input_norm']}" for r in rows])
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8)
    if holdout:
        ax.axvline(len(names) - len(holdout) - 0.5, color="black", linewidth=1.5)
    ax.set_title("NEU-CLS test accuracy (%): training regime / input stage × condition (right: hold-out)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
