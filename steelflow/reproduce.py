"""``steelflow reproduce``: the paper's ablation — train and evaluate all four variants, write Table 1 and 2.

Runs :func:`steelflow.training.loop.train` and :func:`steelflow.steps.evaluate.evaluate` for each variant in
``steelflow models`` (the rows of the paper's Table 1) and each training regime, ``clean`` (the paper's:
``train.robust.enabled`` off) and ``robust`` (on), on the current data, with params from ``model`` (its
``variant`` is ignored), ``train``, ``evaluate`` and ``corrupt``. Writes, under ``out_dir``:
``<variant>/<regime>/`` (model, metrics, plots), ``table1.md`` (per variant a clean-trained and a
robust-trained row beside the paper's, Table 1's layout; the hold-out block; Table 2's parameter column)
and ``reproduce.json`` (accuracies, parameter counts, wall times).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steelflow import atomic, paper, paths
from steelflow.config import ModelConfig, Params, RobustConfig, TrainConfig
from steelflow.models import create_model, list_models
from steelflow.models.summary import count_params
from steelflow.reports import data_label, is_synthetic
from steelflow.steps.evaluate import EvaluateResult, evaluate, holdout_lines, table1_lines
from steelflow.tracking import NullTracker
from steelflow.training.loop import TrainResult, train

DEFAULT_OUT = paths.REPORTS / "reproduce"
REGIMES = ("clean", "robust")


@dataclass(frozen=True)
class ReproduceResult:
    accuracy: dict[str, dict[str, dict[str, float]]]  # variant → regime → condition → accuracy
    params: dict[str, int]
    seconds: dict[str, dict[str, float]]  # variant → regime → seconds
    table: str


def reproduce(
    p: Params,
    out_dir: Path = DEFAULT_OUT,
    variants: list[str] | None = None,
    regimes: tuple[str, ...] = REGIMES,
    tracker_for: Callable[[str], Any] | None = None,
) -> ReproduceResult:
    """Train and evaluate each variant in each regime; ``tracker_for(name)`` may open an MLflow run each."""
    out_dir = Path(out_dir)
    variants = variants or list_models()
    accuracy: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, dict[str, float]] = {}
    n_params: dict[str, int] = {}
    for variant in variants:
        model_cfg = p.model.model_copy(update={"variant": variant})
        accuracy[variant], seconds[variant] = {}, {}
        for regime in regimes:
            folder = out_dir / variant / regime
            train_cfg = p.train.model_copy(
                update={"robust": p.train.robust.model_copy(update={"enabled": regime == "robust"})}
            )
            start = time.perf_counter()
            name = f"reproduce-{variant}-{regime}"
            with tracker_for(name) if tracker_for else contextlib.nullcontext(NullTracker()) as tracker:
                _, scored = train_and_evaluate(p, model_cfg, train_cfg, folder, tracker)
            seconds[variant][regime] = time.perf_counter() - start
            accuracy[variant][regime] = scored.accuracy
            n_classes = len(_classes(folder))
        n_params[variant] = count_params(create_model(variant, n_classes, p.model.image_size))

    table = tables(accuracy, n_params, p)
    atomic.write_text(out_dir / "table1.md", table)
    atomic.write_json(
        out_dir / "reproduce.json",
        {
            "image_size": p.model.image_size,
            "input_norm": p.model.input_norm,
            "holdout": p.corrupt.holdout_names,
            "accuracy": accuracy,
            "params": n_params,
            "seconds": seconds,
        },
    )
    return ReproduceResult(accuracy, n_params, seconds, table)


def train_and_evaluate(
    p: Params,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    folder: Path,
    tracker: Any = None,
    robust_val: RobustConfig | None = None,
    robust_val_epochs: frozenset[int] | None = None,
) -> tuple[TrainResult, EvaluateResult]:
    """Train one model into ``folder`` and evaluate it there (its model, metrics, report and plots).

    ``robust_val``: also score validation under these families (at ``robust_val_epochs``), as tuning does."""
    tracker = tracker or NullTracker()
    trained = train(
        model_cfg,
        train_cfg,
        model_path=folder / "model.pt",
        checkpoint_path=folder / "checkpoint.pt",
        metrics_path=folder / "train.json",
        history_path=folder / "train_history.csv",
        tracker=tracker,
        robust_val=robust_val,
        robust_val_epochs=robust_val_epochs,
    )
    scored = evaluate(
        p.evaluate,
        p.corrupt,
        model_path=folder / "model.pt",
        metrics_path=folder / "evaluate.json",
        details_path=folder / "evaluation.json",
        graded_errors_path=folder / "graded_errors.json",
        robustness_path=folder / "robustness.md",
        predictions_path=folder / "predictions.csv",
        plots_dir=folder / "plots",
        device=train_cfg.device,
        tracker=tracker,
    )
    return trained, scored


def tables(accuracy: dict[str, dict[str, dict[str, float]]], n_params: dict[str, int], p: Params) -> str:
    """Table 1 (ours per regime, then the paper's row, per variant), the hold-out block and Table 2's
    parameter column, as Markdown."""
    holdout = p.corrupt.holdout_names
    lines = [
        f"# Reproducing CASI-Net's Table 1 ({p.model.image_size} × {p.model.image_size}, "
        f"{p.train.epochs} epochs max, input stage `{p.model.input_norm}`)",
        "",
        f"Ours: trained and evaluated on {data_label(p.data.source)}."
        + (
            " **Not comparable with the paper's rows, which are on NEU-CLS**: set `data.source` to NEU-CLS "
            "to reproduce them."
            if is_synthetic(p.data.source)
            else ""
        ),
        "",
    ]
    rows: dict[str, dict[str, float]] = {}
    body: list[str] = []
    for variant, by_regime in accuracy.items():
        label = paper.VARIANT_LABELS.get(variant, variant)
        ours = {f"ours, {regime}-trained: {label}": acc for regime, acc in by_regime.items()}
        rows |= ours
        table = table1_lines(ours, holdout, [variant] if variant in paper.TABLE1 else [])
        body += table if not body else table[2:]  # one header for all variants
    lines += body
    if holdout:
        lines += ["", *holdout_lines(rows, holdout)]
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
    lines += [
        "",
        f"Paper: {paper.CITATION}. Corruptions are steelflow's Fu-style versions (README). Clean-trained: "
        "`train.robust.enabled: false`, the paper's setting; robust-trained: on.",
        "",
    ]
    return "\n".join(lines)


def _classes(folder: Path) -> list[str]:
    import torch

    return torch.load(folder / "model.pt", map_location="cpu", weights_only=True)["meta"]["classes"]
