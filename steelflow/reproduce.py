"""``steelflow reproduce``: the paper's ablation — train and evaluate all four variants, write Table 1 and 2.

Runs :func:`steelflow.steps.train.train` and :func:`steelflow.steps.evaluate.evaluate` once per variant in
``steelflow models`` (the rows of the paper's Table 1) on the current data, with params from ``model``
(its ``variant`` is ignored), ``train``, ``evaluate`` and ``corrupt``. Writes, under ``out_dir``:
``<variant>/`` (model, metrics, plots), ``table1.md`` (ours beside the paper's numbers, Table 1's layout,
plus Table 2's parameter column) and ``reproduce.json`` (accuracies, parameter counts, wall times).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steelflow import io, paper, paths
from steelflow.config import Params
from steelflow.models import create_model, list_models
from steelflow.models.summary import count_params
from steelflow.steps.evaluate import evaluate
from steelflow.steps.train import train
from steelflow.tracking import NullTracker

DEFAULT_OUT = paths.REPORTS / "reproduce"


@dataclass(frozen=True)
class ReproduceResult:
    accuracy: dict[str, dict[str, float]]  # variant → condition → accuracy
    params: dict[str, int]
    seconds: dict[str, float]
    table: str


def reproduce(
    p: Params,
    out_dir: Path = DEFAULT_OUT,
    variants: list[str] | None = None,
    tracker_for: Callable[[str], Any] | None = None,
) -> ReproduceResult:
    """Train and evaluate each variant; ``tracker_for(variant)`` may open an MLflow run per variant."""
    out_dir = Path(out_dir)
    variants = variants or list_models()
    accuracy: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    n_params: dict[str, int] = {}
    for variant in variants:
        folder = out_dir / variant
        model_cfg = p.model.model_copy(update={"variant": variant})
        start = time.perf_counter()
        with tracker_for(variant) if tracker_for else contextlib.nullcontext(NullTracker()) as tracker:
            train(
                model_cfg,
                p.train,
                model_path=folder / "model.pt",
                checkpoint_path=folder / "checkpoint.pt",
                metrics_path=folder / "train.json",
                history_path=folder / "train_history.csv",
                tracker=tracker,
            )
            scored = evaluate(
                p.evaluate,
                p.corrupt,
                model_path=folder / "model.pt",
                metrics_path=folder / "evaluate.json",
                details_path=folder / "evaluation.json",
                robustness_path=folder / "robustness.md",
                predictions_path=folder / "predictions.csv",
                plots_dir=folder / "plots",
                device=p.train.device,
                tracker=tracker,
            )
        seconds[variant] = time.perf_counter() - start
        accuracy[variant] = scored.accuracy
        n_params[variant] = count_params(create_model(variant, len(_classes(folder)), p.model.image_size))

    table = tables(accuracy, n_params, p)
    io.write_text(out_dir / "table1.md", table)
    io.write_json(
        out_dir / "reproduce.json",
        {"image_size": p.model.image_size, "accuracy": accuracy, "params": n_params, "seconds": seconds},
    )
    return ReproduceResult(accuracy, n_params, seconds, table)


def tables(accuracy: dict[str, dict[str, float]], n_params: dict[str, int], p: Params) -> str:
    """Table 1 (ours, then the paper's row, per variant) and Table 2's parameter column, as Markdown."""
    conditions = paper.in_table_order(list(next(iter(accuracy.values()))))
    lines = [
        f"# Reproducing CASI-Net's Table 1 ({p.model.image_size} × {p.model.image_size}, "
        f"{p.train.epochs} epochs max)",
        "",
        *paper.table1_head(conditions),
    ]
    for variant, acc in accuracy.items():
        lines.append(paper.ours_row(f"ours: {paper.VARIANT_LABELS.get(variant, variant)}", acc, conditions))
        if variant in paper.TABLE1:
            lines.append(paper.paper_row(variant, conditions))
    lines += [
        "",
        "## Parameters (Table 2's column)",
        "",
        "| model | ours | paper |",
        "|---|---:|---:|",
    ]
    for variant, count in n_params.items():
        theirs = f"{paper.TABLE2['CASI-Net'][0]:.2f} M" if variant == "casinet" else "–"
        lines.append(f"| {paper.VARIANT_LABELS.get(variant, variant)} | {count / 1e6:.3f} M | {theirs} |")
    lines += ["", f"Paper: {paper.CITATION}. Corruptions are steelflow's Fu-style versions (README).", ""]
    return "\n".join(lines)


def _classes(folder: Path) -> list[str]:
    import torch

    return torch.load(folder / "model.pt", map_location="cpu", weights_only=True)["meta"]["classes"]
