"""Step 6, evaluate: the trained model on the clean test split and on every corrupted copy.

Reads ``models/model.pt``, the caches (shard sets) ``data/cache/splits/test/`` and
``data/cache/corrupted/<condition>/``, and params sections ``evaluate`` and ``corrupt`` (which conditions,
in which order, and the graded ladders). Writes ``metrics/summary.json`` (the headline numbers,
:data:`HEADLINE`: the one metrics file DVC shows by default), ``metrics/evaluate.json`` (per condition:
accuracy, macro precision / recall / F1, one-vs-rest AUROC; per graded family and severity: accuracy, and
the corruption error against ``evaluate.mce_baseline``; plus a summary with ``mce`` and ``relative_mce``),
``reports/evaluation.json`` (also per-class metrics and the confusion matrix of every condition),
``reports/graded_errors.json`` (this model's errors on the ladders: an mCE baseline when the model is the
clean-trained CASI-Net, :mod:`steelflow.mce`), ``reports/robustness.md`` (our accuracies in the layout of
the paper's Table 1, with the paper's numbers beside them unless our data are synthetic, then the graded
table),
``reports/predictions.csv`` (clean test set, for ``dvc plots``' confusion template) and, under
``reports/plots/``, accuracy per condition, accuracy against severity per graded family, the clean
confusion matrix, and the coordinate-attention picture (paper, Fig. 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelflow import atomic, mce, paper, paths
from steelflow.config import CorruptConfig, EvaluateConfig, Params
from steelflow.data import cache
from steelflow.inference import load_trained, pick_device
from steelflow.reports import (
    accuracy_bars,
    attention_figure,
    confusion_figure,
    data_label,
    graded_lines,
    holdout_lines,
    is_synthetic,
    robustness_table,
    severity_lines,
    table1_lines,
)
from steelflow.runs import tracker
from steelflow.scoring import (
    CLEAN,
    evaluation_sets,
    graded_sets,
    score,
    scored_sets,
    summarize,
    training_label,
)
from steelflow.step import Option, Produces, Step
from steelflow.tracking import NullTracker, Tracker

# re-exported: the scoring helpers and tables used to live here (reproduce, benchmarks and tests import them)
__all__ = [
    "CLEAN",
    "EvaluateResult",
    "evaluate",
    "evaluation_sets",
    "holdout_lines",
    "metric_names",
    "robustness_table",
    "score",
    "summarize",
    "table1_lines",
    "training_label",
]
SCALARS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc_ovr_macro")
# metrics/summary.json: numbers only (what `dvc metrics diff` can subtract), few enough for one line of
# `dvc metrics show`; mCE and relative mCE when the evaluation has graded corruptions to compute them
HEADLINE = ("clean_accuracy", "worst_accuracy", "holdout_worst_accuracy", "mce", "relative_mce")


@dataclass(frozen=True)
class EvaluateResult:
    accuracy: dict[str, float]  # condition → accuracy, the clean set first
    summary: dict[str, Any]
    graded: dict[str, Any] | None = None  # corrupt.graded: per family and severity, mCE (steelflow.mce)


def evaluate(
    cfg: EvaluateConfig,
    corrupt_cfg: CorruptConfig,
    model_path: Path = paths.MODEL,
    cache_dir: Path = paths.CACHE,
    metrics_path: Path = paths.EVALUATE_METRICS,
    summary_path: Path = paths.SUMMARY_METRICS,
    details_path: Path = paths.EVALUATION_DETAILS,
    graded_errors_path: Path = paths.GRADED_ERRORS,
    robustness_path: Path = paths.ROBUSTNESS_MD,
    predictions_path: Path = paths.PREDICTIONS,
    plots_dir: Path = paths.PLOTS,
    device: str = "auto",
    tracker: Tracker | None = None,
    data_source: str | None = None,
) -> EvaluateResult:
    """Score the model on every evaluation set and write the metrics, the robustness table and the plots.

    ``data_source`` (``data.source``) labels our rows; on synthetic data the paper's NEU-CLS numbers are
    left out of the table and the plot (they would say nothing about these images)."""
    tracker = tracker or NullTracker()
    dev = pick_device(device)
    # read first: a wrong baseline file fails before minutes of scoring
    baseline = read_baseline(cfg, corrupt_cfg)
    model, meta = load_trained(model_path, dev)
    sets = evaluation_sets(corrupt_cfg, cache_dir)

    per_condition: dict[str, dict[str, Any]] = {}
    for name, data, probs in scored_sets(model, meta, sets, cfg.batch_size, dev):
        per_condition[name] = score(data.labels, probs, meta.classes)
        if name == CLEAN:
            clean = data
            predictions = pd.DataFrame(
                {
                    "sha256": data.sha256(),
                    "actual": [meta.classes[i] for i in data.labels],
                    "predicted": [meta.classes[i] for i in probs.argmax(1)],
                }
            )

    accuracy = {name: m["accuracy"] for name, m in per_condition.items()}
    holdout = corrupt_cfg.holdout_names
    summary = {"variant": meta.variant, "training": training_label(meta), **summarize(accuracy, holdout)}
    graded, ladders, per_class = None, {}, None
    if corrupt_cfg.graded is not None:
        graded = _graded(model, meta, corrupt_cfg, cfg.batch_size, dev, cache_dir, accuracy[CLEAN], baseline)
        summary |= {k: graded[k] for k in graded if k.endswith("mce")} | {
            "graded_mean_error": graded["mean_error"]
        }
        ladders, per_class = dict(corrupt_cfg.graded.families), corrupt_cfg.graded.per_class
    model_info = {"variant": meta.variant, "training": summary["training"], "input_norm": meta.input_norm}
    errors = graded or mce.graded_summary({}, accuracy[CLEAN], {})  # nothing graded: no families
    atomic.write_json(graded_errors_path, mce.errors_file(errors, ladders, model_info, per_class))
    # DVC metrics stay scalar (readable in `dvc metrics show`); per-class metrics and confusion
    # matrices go to the detailed report beside them.
    metrics = {
        "summary": summary,
        "conditions": {n: {k: m[k] for k in SCALARS} for n, m in per_condition.items()},
        "holdout": holdout,
        **({"graded": graded_metrics(graded)} if graded is not None else {}),
    }
    atomic.write_json(metrics_path, metrics)
    atomic.write_json(summary_path, headline(metrics))
    atomic.write_json(details_path, per_condition)
    on = f", {data_label(data_source, short=True)}" if data_source else ""
    rows = {f"steelflow {meta.variant}, {summary['training']}{on}": accuracy}
    table = robustness_table(meta.variant, rows, holdout, data_source)
    if graded is not None:
        table += "\n" + "\n".join(graded_lines(graded, cfg.mce_baseline)) + "\n"
    atomic.write_text(robustness_path, table)
    with atomic.atomic_path(predictions_path) as tmp:
        predictions.to_csv(tmp, index=False)

    plots_dir = Path(plots_dir)
    paper_row = None if is_synthetic(data_source) else paper.TABLE1.get(meta.variant)
    accuracy_bars(accuracy, paper_row, plots_dir / "accuracy_by_condition.png", holdout)
    if graded is not None:
        severity_lines(graded, plots_dir / "accuracy_by_severity.png")
    confusion_figure(
        np.array(per_condition[CLEAN]["confusion_matrix"]),
        meta.classes,
        plots_dir / "confusion_matrix.png",
    )
    if hasattr(model, "attention_maps"):
        attention_figure(model, clean, cfg.attention_examples, plots_dir / "attention.png", dev)

    named = metric_names(per_condition, summary, graded)
    for name, path in sets.items():  # each set's metrics linked to the model and that dataset (MLflow 3)
        mine = {k: v for k, v in named.items() if k.startswith(f"eval/{name}/")}
        if mine:
            tracker.log_metrics(mine, data=(name, path))
    rest = {k: v for k, v in named.items() if not any(k.startswith(f"eval/{n}/") for n in sets)}
    tracker.log_metrics(rest)
    written = [summary_path, metrics_path, details_path, graded_errors_path, robustness_path]
    for artifact in (*written, *sorted(plots_dir.glob("*.png"))):
        tracker.log_artifact(artifact, "evaluation")
    return EvaluateResult(accuracy, summary, graded)


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of :data:`HEADLINE` found in ``metrics`` (``metrics/evaluate.json``'s tree: its summary,
    then its top level), in that order; a key it lacks (mCE without graded corruptions) is left out."""
    found = {**{k: v for k, v in metrics.items() if k in HEADLINE}, **metrics.get("summary", {})}
    return {k: found[k] for k in HEADLINE if _scalar(found.get(k))}


def read_baseline(cfg: EvaluateConfig, corrupt_cfg: CorruptConfig) -> dict[str, Any] | None:
    """The mCE baseline's errors (``evaluate.mce_baseline``), checked against ``corrupt.graded``'s
    ladders; None when no baseline is set or nothing is graded."""
    if cfg.mce_baseline is None or corrupt_cfg.graded is None:
        return None
    return mce.read_baseline(cfg.mce_baseline, corrupt_cfg.graded.families, corrupt_cfg.graded.per_class)


def _graded(model, meta, corrupt_cfg, batch_size, dev, cache_dir, clean_accuracy, baseline) -> dict[str, Any]:
    """Accuracy per graded family and severity, and the corruption errors
    (:func:`steelflow.mce.graded_summary`)."""
    accuracy = {
        family: [
            float((p.argmax(1) == d.labels).mean())
            for _, d, p in scored_sets(model, meta, sets, batch_size, dev)
        ]
        for family, sets in graded_sets(corrupt_cfg, cache_dir).items()
    }
    groups = {family: corrupt_cfg.graded_group(family) for family in accuracy}
    return mce.graded_summary(accuracy, clean_accuracy, groups, baseline)


def graded_metrics(graded: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``metrics/evaluate.json``'s ``graded``: family → accuracy at ``s1`` ... ``s5``, mean error, and CE and
    relative CE when there is a baseline (flat, for ``dvc metrics show``)."""
    out = {}
    for family, row in graded["families"].items():
        cells: dict[str, float | None] = {f"s{s}": a for s, a in enumerate(row["accuracy"], 1)}
        cells["mean_error"] = row["mean_error"]
        cells |= {k: row[k] for k in ("ce", "relative_ce") if k in row}
        out[family] = cells
    return out


def metric_names(
    per_condition: dict[str, dict[str, Any]], summary: dict[str, Any], graded: dict[str, Any] | None = None
) -> dict[str, float]:
    """MLflow metric names: ``eval/<condition>/<metric>``, ``eval/graded/<family>/<s1..s5|ce|...>`` and
    ``eval/<summary key>`` (``eval/mce``, ...). The "/" makes the MLflow UI group the charts per condition
    instead of one flat section of dozens."""
    families = graded_metrics(graded) if graded is not None else {}
    return (
        {f"eval/{name}/{k}": v for name, m in per_condition.items() for k, v in m.items() if _scalar(v)}
        | {f"eval/graded/{f}/{k}": v for f, cells in families.items() for k, v in cells.items() if _scalar(v)}
        | {f"eval/{k}": v for k, v in summary.items() if _scalar(v)}
    )


def _scalar(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def tracked(p: Params, track: bool = True) -> EvaluateResult:
    """:func:`evaluate`, logged into the MLflow run of the training it scores
    (``metrics/mlflow_run_id.txt``)."""
    last = paths.MLFLOW_RUN.read_text().strip() if paths.MLFLOW_RUN.is_file() else None
    with tracker(p, "evaluate", track, run_id=last) as t:
        sets = evaluation_sets(p.corrupt) | {
            n: f for g in graded_sets(p.corrupt).values() for n, f in g.items()
        }
        t.log_datasets([(name, path, "evaluation") for name, path in sets.items() if cache.exists(path)])
        return evaluate(p.evaluate, p.corrupt, device=p.train.device, tracker=t, data_source=p.data.source)


def summary(result: EvaluateResult) -> list[str]:
    s = result.summary
    held = (
        f", worst hold-out {s['holdout_worst_condition']} {s['holdout_worst_accuracy']:.3f}"
        if "holdout_worst_condition" in s
        else ""
    )
    graded = ""
    if s.get("mce") is not None:
        graded = f", mCE {s['mce']:.3f} (relative {_or_dash(s.get('relative_mce'))})"
    elif "graded_mean_error" in s:
        graded = (
            f", graded mean error {s['graded_mean_error']:.3f} (no mCE: evaluate.mce_baseline is not set)"
        )
    return [
        f"evaluate ({s['training']}): clean accuracy {s['clean_accuracy']:.3f}, worst "
        f"{s['worst_condition']} {s['worst_accuracy']:.3f}{held}{graded} → {paths.SUMMARY_METRICS}, "
        f"{paths.EVALUATE_METRICS}, {paths.ROBUSTNESS_MD}"
    ]


def _or_dash(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


STEP = Step(
    "evaluate",
    run=tracked,
    help="Evaluate on the clean and corrupted test sets → metrics/summary.json, metrics/evaluate.json, "
    "reports/robustness.md, plots.",
    sections=("params",),  # the whole tree: the MLflow run's identity tags are made from it
    inputs=(paths.MODEL, paths.MLFLOW_RUN, paths.TEST_CACHE, paths.CACHE_CORRUPTED),
    params=("evaluate", "corrupt.conditions", "corrupt.holdout", "corrupt.graded", "data.source"),
    notes={"data.source": "synthetic or real: labels our rows, leaves the paper's out on synthetic data"},
    outs=(
        paths.EVALUATE_METRICS,
        paths.ROBUSTNESS_MD,
        paths.EVALUATION_DETAILS,
        paths.GRADED_ERRORS,
        paths.PLOTS,
        paths.PREDICTIONS,
    ),
    # the headline alone is DVC's metrics file; the full set is an out that `dvc metrics show FILE` reads
    metrics=(paths.SUMMARY_METRICS,),
    plots=(paths.PLOTS,),
    options=(
        Option("track", bool, True, "log to the training run in MLflow", flag="--track/--no-track", kfp=True),
    ),
    summary=summary,
    consumes=("manifest", "splits", "corrupted", "model"),
    produces=(
        Produces("evaluation"),
        Produces("metrics", "Metrics", metrics=paths.EVALUATE_METRICS),
        Produces("robustness", "Markdown", page=paths.ROBUSTNESS_MD),
    ),
    retries=True,
)
