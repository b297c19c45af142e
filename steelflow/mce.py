"""Mean corruption error (mCE) over the graded ladders, as ImageNet-C defines it.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations"
(ICLR 2019), §3: with ``E_{s,f}`` the top-1 error of a model on family ``f`` at severity ``s``,

- the corruption error ``CE_f = Σ_s E_{s,f} / Σ_s E^base_{s,f}``, and ``mCE`` its mean over families;
- the relative corruption error ``Σ_s (E_{s,f} − E_clean) / Σ_s (E^base_{s,f} − E^base_clean)`` (what the
  model loses to the corruption against what the baseline loses), and the relative mCE its mean.

The baseline here is the paper-faithful clean-trained CASI-Net: its errors on the same ladders are the
graded-errors file that every ``steelflow evaluate`` writes (:func:`errors_file`), named by
``evaluate.mce_baseline``. Without one there is no mCE: :func:`graded_summary` reports the mean error per
family instead. A family whose baseline denominator is not positive (the baseline made no error, or lost
nothing to the corruption) has no CE; the means are over the families that have one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from steelflow.errors import DataError

FORMAT = 1


def corruption_error(errors: list[float], base_errors: list[float]) -> float | None:
    """``Σ_s E_s / Σ_s E^base_s``; None when the baseline made no error on the family."""
    denominator = sum(base_errors)
    return sum(errors) / denominator if denominator > 0 else None


def relative_corruption_error(
    errors: list[float], clean: float, base_errors: list[float], base_clean: float
) -> float | None:
    """``Σ_s (E_s − E_clean) / Σ_s (E^base_s − E^base_clean)``; None when the baseline lost nothing."""
    denominator = sum(e - base_clean for e in base_errors)
    return sum(e - clean for e in errors) / denominator if denominator > 0 else None


def graded_summary(
    accuracy: dict[str, list[float]],
    clean_accuracy: float,
    groups: dict[str, str],
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per family: accuracy and error at each severity, mean error, and (with a baseline) CE and relative
    CE; overall: ``mce`` and ``relative_mce`` (all families) and the same per group (``table1_mce``,
    ``holdout_mce``, ...), or ``mean_error`` alone when there is no baseline.

    ``accuracy``: family → accuracy per severity (mildest first); ``groups``: family → its group.
    ``baseline``: a graded-errors file's content (:func:`read_baseline`).
    """
    clean = 1.0 - clean_accuracy
    families: dict[str, dict[str, Any]] = {}
    for family, accs in accuracy.items():
        errors = [1.0 - a for a in accs]
        row: dict[str, Any] = {
            "group": groups[family],
            "accuracy": list(accs),
            "error": errors,
            "mean_error": sum(errors) / len(errors),
        }
        if baseline is not None:
            base = baseline["families"][family]
            row["ce"] = corruption_error(errors, base)
            row["relative_ce"] = relative_corruption_error(errors, clean, base, baseline["clean_error"])
        families[family] = row
    out: dict[str, Any] = {
        "clean_error": clean,
        "mean_error": _mean([r["mean_error"] for r in families.values()]),
        "families": families,
    }
    if baseline is None:
        return out
    out["baseline"] = baseline.get("model", {})
    for prefix, members in [("", list(families)), *_by_group(families)]:
        out[f"{prefix}mce"] = _mean([families[f]["ce"] for f in members])
        out[f"{prefix}relative_mce"] = _mean([families[f]["relative_ce"] for f in members])
    return out


def errors_file(
    summary: dict[str, Any],
    ladders: dict[str, dict[str, list[float]]],
    model: dict[str, Any],
    per_class: int | None = None,
) -> dict[str, Any]:
    """What ``evaluate`` writes to ``reports/graded_errors.json``: this model's errors per family and
    severity on these ladders; a clean-trained CASI-Net's file is what ``evaluate.mce_baseline`` names."""
    return {
        "format": FORMAT,
        "model": model,
        "clean_error": summary["clean_error"],
        "ladders": ladders,
        "per_class": per_class,
        "families": {f: row["error"] for f, row in summary["families"].items()},
    }


def read_baseline(
    path: str | Path, ladders: dict[str, dict[str, list[float]]], per_class: int | None = None
) -> dict[str, Any]:
    """The baseline's graded errors from ``path``; a DataError naming the file when it is missing,
    unreadable, or not comparable (:func:`check_baseline`)."""
    where = f"evaluate.mce_baseline {path}"
    try:
        tree = json.loads(Path(path).read_text())
    except OSError as e:
        raise DataError(f"{where}: cannot read it ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not JSON ({e})") from None
    return check_baseline(tree, ladders, per_class, where)


def check_baseline(
    tree: Any, ladders: dict[str, dict[str, list[float]]], per_class: int | None, where: str
) -> dict[str, Any]:
    """``tree`` if it is a graded-errors file measured on ``ladders`` and the same ``per_class`` subset;
    else a DataError that starts with ``where`` (its errors would not be comparable)."""
    if not isinstance(tree, dict) or tree.get("format") != FORMAT or "families" not in tree:
        raise DataError(f"{where}: not a graded-errors file (write one with `steelflow evaluate`)")
    theirs = tree.get("ladders") or {}
    missing = [f for f in ladders if f not in theirs]
    if missing:
        raise DataError(f"{where}: no errors for famil{'y' if len(missing) == 1 else 'ies'} {missing}")
    differ = [f for f in ladders if _floats(theirs[f]) != _floats(ladders[f])]
    if differ:
        raise DataError(
            f"{where}: measured on other ladders for {differ} (corrupt.graded changed since): evaluate the "
            "baseline model again on these ladders"
        )
    if tree.get("per_class") != per_class:
        raise DataError(
            f"{where}: measured on {tree.get('per_class') or 'all'} test images per class, "
            f"corrupt.graded.per_class is {per_class or 'null (all)'}: evaluate the baseline model again"
        )
    return tree


def _floats(ladder: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: [float(v) for v in levels] for k, levels in ladder.items()}


def _by_group(families: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for family, row in families.items():
        groups.setdefault(row["group"], []).append(family)
    return [(f"{group}_", members) for group, members in groups.items()]


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None and math.isfinite(v)]
    return sum(defined) / len(defined) if defined else None
