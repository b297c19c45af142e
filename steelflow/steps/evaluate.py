"""Step 6, evaluate: the trained model on the clean test split and on every corrupted copy.

Reads ``models/model.pt``, the caches ``data/cache/splits/test.npz`` and
``data/cache/corrupted/<condition>.npz``, and params sections ``evaluate`` and ``corrupt`` (which conditions,
in which order). Writes ``metrics/evaluate.json`` (per condition: accuracy, macro precision / recall / F1,
one-vs-rest AUROC; plus a summary), ``reports/evaluation.json`` (also per-class metrics and the confusion
matrix of every condition), ``reports/robustness.md`` (our
accuracies in the layout of the paper's Table 1, with the paper's numbers beside them),
``reports/predictions.csv`` (clean test set, for ``dvc plots``' confusion template) and, under
``reports/plots/``, accuracy per condition, the clean confusion matrix, and the coordinate-attention
picture (paper, Fig. 7).
"""

from __future__ import annotations

import hashlib
import io as pyio
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from steelflow import io, paper, paths
from steelflow.config import CorruptConfig, EvaluateConfig
from steelflow.data import cache
from steelflow.errors import DataError
from steelflow.inference import load_trained, pick_device, predict_logits, to_tensor
from steelflow.reports import accuracy_bars, attention_figure, confusion_figure
from steelflow.tracking import NullTracker, Tracker

CLEAN = "original"
SCALARS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc_ovr_macro")


@dataclass(frozen=True)
class EvaluateResult:
    accuracy: dict[str, float]  # condition → accuracy, the clean set first
    summary: dict[str, Any]


def evaluate(
    cfg: EvaluateConfig,
    corrupt_cfg: CorruptConfig,
    model_path: Path = paths.MODEL,
    cache_dir: Path = paths.CACHE,
    metrics_path: Path = paths.EVALUATE_METRICS,
    details_path: Path = paths.EVALUATION_DETAILS,
    robustness_path: Path = paths.ROBUSTNESS_MD,
    predictions_path: Path = paths.PREDICTIONS,
    plots_dir: Path = paths.PLOTS,
    device: str = "auto",
    tracker: Tracker | None = None,
) -> EvaluateResult:
    """Score the model on every evaluation set and write the metrics, the robustness table and the plots."""
    tracker = tracker or NullTracker()
    dev = pick_device(device)
    model, meta = load_trained(model_path, dev)
    sets = evaluation_sets(corrupt_cfg, cache_dir)

    per_condition: dict[str, dict[str, Any]] = {}
    for name, data, probs in _scored_sets(model, meta, sets, cfg.batch_size, dev):
        per_condition[name] = score(data.labels, probs, meta["classes"])
        if name == CLEAN:
            clean = data
            predictions = pd.DataFrame(
                {
                    "sha256": data.sha256,
                    "actual": [meta["classes"][i] for i in data.labels],
                    "predicted": [meta["classes"][i] for i in probs.argmax(1)],
                }
            )

    accuracy = {name: m["accuracy"] for name, m in per_condition.items()}
    holdout = corrupt_cfg.holdout_names
    summary = {"variant": meta["variant"], "training": training_label(meta), **summarize(accuracy, holdout)}
    # DVC metrics stay scalar (readable in `dvc metrics show`); per-class metrics and confusion
    # matrices go to the detailed report beside them.
    io.write_json(
        metrics_path,
        {
            "summary": summary,
            "conditions": {n: {k: m[k] for k in SCALARS} for n, m in per_condition.items()},
            "holdout": holdout,
        },
    )
    io.write_json(details_path, per_condition)
    rows = {f"steelflow {meta['variant']}, {summary['training']}": accuracy}
    io.write_text(robustness_path, robustness_table(meta["variant"], rows, holdout))
    with io.atomic_path(predictions_path) as tmp:
        predictions.to_csv(tmp, index=False)

    plots_dir = Path(plots_dir)
    accuracy_bars(
        accuracy, paper.TABLE1.get(meta["variant"]), plots_dir / "accuracy_by_condition.png", holdout
    )
    confusion_figure(
        np.array(per_condition[CLEAN]["confusion_matrix"]),
        meta["classes"],
        plots_dir / "confusion_matrix.png",
    )
    if hasattr(model, "attention_maps"):
        attention_figure(model, clean, cfg.attention_examples, plots_dir / "attention.png", dev)

    tracker.log_metrics(metric_names(per_condition, summary))
    for artifact in (metrics_path, details_path, robustness_path, *sorted(plots_dir.glob("*.png"))):
        tracker.log_artifact(artifact, "evaluation")
    return EvaluateResult(accuracy, summary)


def metric_names(per_condition: dict[str, dict[str, Any]], summary: dict[str, Any]) -> dict[str, float]:
    """MLflow metric names: ``eval/<condition>/<metric>`` and ``eval/<summary key>``. The "/" makes the
    MLflow UI group the charts per condition instead of one flat section of dozens."""
    return {
        f"eval/{name}/{k}": v for name, m in per_condition.items() for k, v in m.items() if _scalar(v)
    } | {f"eval/{k}": v for k, v in summary.items() if _scalar(v)}


def evaluation_sets(corrupt_cfg: CorruptConfig, cache_dir: Path = paths.CACHE) -> dict[str, Path]:
    """Condition name → its cache file: the clean test split, every corrupted copy, then the hold-out ones."""
    sets = {CLEAN: Path(cache_dir) / "splits" / "test.npz"}
    sets.update({c.name: Path(cache_dir) / "corrupted" / f"{c.name}.npz" for c in corrupt_cfg.all_conditions})
    return sets


def worst_condition(accuracy: dict[str, float], exclude: Collection[str] = ()) -> str:
    """The corrupted set with the lowest accuracy, but ``exclude`` (the clean set when none is left)."""
    corrupted = {k: v for k, v in accuracy.items() if k != CLEAN and k not in exclude}
    return min(corrupted, key=corrupted.get) if corrupted else CLEAN


def summarize(accuracy: dict[str, float], holdout: Collection[str]) -> dict[str, Any]:
    """Clean, worst and mean accuracy over the Table 1 conditions, and the same over the hold-out block."""
    corrupted = [v for k, v in accuracy.items() if k != CLEAN and k not in holdout]
    worst = worst_condition(accuracy, exclude=holdout)
    out: dict[str, Any] = {
        "clean_accuracy": accuracy[CLEAN],
        "worst_condition": worst,
        "worst_accuracy": accuracy[worst],
        "mean_corrupted_accuracy": float(np.mean(corrupted)) if corrupted else accuracy[CLEAN],
    }
    held = {k: accuracy[k] for k in holdout if k in accuracy}
    if held:
        worst_held = min(held, key=held.get)
        out |= {
            "holdout_worst_condition": worst_held,
            "holdout_worst_accuracy": held[worst_held],
            "holdout_mean_accuracy": float(np.mean(list(held.values()))),
        }
    return out


def training_label(meta: dict[str, Any]) -> str:
    """How the saved model was trained: with ``train.robust`` on, or clean (models from before it: clean)."""
    return "robust-trained" if meta.get("robust") else "clean-trained"


def data_hash(sets: dict[str, Path]) -> str:
    """sha256 over the evaluation sets' names, images and labels: equal hashes, equal evaluation data."""
    digest = hashlib.sha256()
    for name, path in sets.items():
        data = _load(path)
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(data.images).tobytes())
        digest.update(np.ascontiguousarray(data.labels).tobytes())
        digest.update("\n".join(data.classes).encode())
    return digest.hexdigest()


def accuracy_of(
    model_path: Path, sets: dict[str, Path], batch_size: int, device: str = "auto"
) -> dict[str, float]:
    """Accuracy of a saved model on every evaluation set (promotion re-scores a champion with it)."""
    dev = pick_device(device)
    model, meta = load_trained(model_path, dev)
    scored = _scored_sets(model, meta, sets, batch_size, dev)
    return {name: float((probs.argmax(1) == data.labels).mean()) for name, data, probs in scored}


def _scored_sets(
    model: Any, meta: dict[str, Any], sets: dict[str, Path], batch_size: int, dev: torch.device
) -> Iterator[tuple[str, cache.CachedSet, np.ndarray]]:
    """Each evaluation set, loaded, with the model's class probabilities on it."""
    for name, path in sets.items():
        data = _load(path, meta["classes"])
        logits = predict_logits(model, to_tensor(data.images), batch_size, dev)
        yield name, data, torch.softmax(logits, 1).numpy()


def score(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, one-vs-rest AUROC, per-class metrics and the confusion matrix."""
    k = len(classes)
    predicted = probs.argmax(1)
    p, r, f, support = precision_recall_fscore_support(
        labels, predicted, labels=range(k), average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision_macro": float(p.mean()),
        "recall_macro": float(r.mean()),
        "f1_macro": float(f.mean()),
        "auroc_ovr_macro": _auroc(labels, probs, k),
        "per_class": {
            c: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=range(k)).tolist(),
    }


def robustness_table(variant: str, rows: dict[str, dict[str, float]], holdout: Collection[str] = ()) -> str:
    """Markdown: our rows (label → accuracy) in the layout of the paper's Table 1 with the paper's rows,
    then the hold-out block (conditions no training family resembles), which the paper does not have."""
    out = pyio.StringIO()
    out.write(f"# Robustness: accuracy (%) of `{variant}` on the clean and corrupted test sets\n\n")
    out.write("\n".join(table1_lines(rows, holdout, [v for v in paper.TABLE1])) + "\n\n")
    out.write(
        f"Paper rows: {paper.CITATION}, on NEU-CLS at 300 × 300. Our corruptions are Fu-style "
        "re-implementations (see README), and our data and image size come from params.yaml, so compare "
        "the pattern across conditions rather than single numbers.\n"
    )
    if holdout:
        out.write("\n" + "\n".join(holdout_lines(rows, holdout)) + "\n")
    return out.getvalue()


def table1_lines(
    rows: dict[str, dict[str, float]], holdout: Collection[str], paper_variants: list[str]
) -> list[str]:
    """Table 1's head over the clean set and the paper's conditions, our rows, then the paper's rows."""
    first = next(iter(rows.values()))
    columns = paper.in_table_order([c for c in first if c not in holdout])
    return [
        *paper.table1_head(columns),
        *(paper.ours_row(label, acc, columns) for label, acc in rows.items()),
        *(paper.paper_row(v, columns) for v in paper_variants),
    ]


def holdout_lines(rows: dict[str, dict[str, float]], holdout: Collection[str]) -> list[str]:
    """The hold-out block: a heading, our rows over the hold-out conditions (the clean set for reference)."""
    columns = [CLEAN, *holdout]
    return [
        "## Hold-out conditions: corruption families training never augments with",
        "",
        *paper.table1_head(columns),
        *(paper.ours_row(label, acc, columns) for label, acc in rows.items()),
    ]


def _auroc(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    if len(np.unique(labels)) < k:  # a class absent from this set: AUROC is undefined for it
        return float("nan")
    return float(roc_auc_score(labels, probs, multi_class="ovr", labels=list(range(k))))


def _scalar(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _load(path: Path, classes: list[str] | None = None) -> cache.CachedSet:
    if not path.is_file():
        raise DataError(f"{path} not found: run `steelflow split` and `steelflow corrupt` first")
    data = cache.load(path)
    if classes is not None and data.classes != classes:
        raise DataError(f"{path}: classes {data.classes} differ from the model's {classes}")
    return data
