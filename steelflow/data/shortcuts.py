"""Shortcut check: can the label be predicted from file metadata alone?

If one class came as PNG and the others as JPEG, or at another size, a network can learn the container
instead of the defect. The check reads only manifest columns (:data:`FEATURES`) — never the file size, which
under compression follows the image's content — and cross-validates a depth-2 decision tree over them against
the majority-class baseline. It names the single most predictive feature and shows its class × value table.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from steelflow.data.images import BYTES_PER_PIXEL

FEATURES = ("extension", "format", "mode", "bytes_per_pixel", "lossless", "width", "height")
NUMERIC = ("bytes_per_pixel", "width", "height")
LOSSY_FORMATS = frozenset({"JPEG", "MPO"})
MAX_FOLDS = 5
MAX_VALUES = 8  # a numeric feature with more distinct values is shown in quartile bins
SEED = 0


def features(table: pd.DataFrame) -> pd.DataFrame:
    """The metadata a model could exploit, one row per manifest row."""
    return pd.DataFrame(
        {
            "extension": [PurePosixPath(p).suffix.lower() for p in table["path"]],
            "format": table["format"].to_numpy(),
            "mode": table["mode"].to_numpy(),
            "bytes_per_pixel": [float(BYTES_PER_PIXEL.get(m, 0)) for m in table["mode"]],
            "lossless": ["lossy" if f in LOSSY_FORMATS else "lossless" for f in table["format"]],
            "width": table["width"].to_numpy(),
            "height": table["height"].to_numpy(),
        },
        index=table.index,
    )


def check(table: pd.DataFrame, margin: float) -> dict[str, Any]:
    """Cross-validated accuracy from metadata vs the majority baseline; ``found`` when it beats it by more
    than ``margin``. Decodable rows only."""
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    rows = table[table["error"] == ""]
    labels = rows["label"]
    counts = labels.value_counts()
    if len(counts) < 2 or counts.min() < 2:
        return {"checked": False, "why": "needs two classes with at least 2 decodable images each"}
    folds = StratifiedKFold(n_splits=min(MAX_FOLDS, int(counts.min())), shuffle=True, random_state=SEED)
    meta = features(rows)

    def score(columns: list[str], model: Any = None) -> float:
        x = pd.get_dummies(meta[columns], columns=[c for c in columns if c not in NUMERIC], dtype=float)
        model = model or DecisionTreeClassifier(max_depth=2, random_state=SEED)
        return round(float(cross_val_score(model, x, labels, cv=folds).mean()), 4)

    baseline = score(["width"], DummyClassifier(strategy="most_frequent"))
    accuracy = score(list(FEATURES))
    alone = {f: score([f]) for f in FEATURES}
    feature = max(FEATURES, key=lambda f: alone[f])  # the first of the best, in FEATURES order
    table_ = value_table(meta[feature], labels)
    return {
        "checked": True,
        "found": accuracy - baseline > margin,
        "accuracy": accuracy,
        "baseline": baseline,
        "margin": margin,
        "feature": feature,
        "feature_accuracy": alone,
        "table": table_,
        "summary": describe(table_),
    }


def value_table(values: pd.Series, labels: pd.Series) -> dict[str, dict[str, float]]:
    """class → value → fraction of the class's images, e.g. ``{"dent": {"PNG": 1.0}}``."""
    if values.dtype.kind in "if" and values.nunique() > MAX_VALUES:
        values = pd.qcut(values, 4, duplicates="drop").astype(str)
    shares = pd.crosstab(labels, values.astype(str), normalize="index")
    rows = shares.iterrows()
    return {str(c): {str(v): round(float(s), 4) for v, s in row.items() if s > 0} for c, row in rows}


def describe(table: dict[str, dict[str, float]]) -> str:
    """``class dent is 100 % PNG, all others 100 % JPEG``: classes grouped by their most common value."""
    by_value: dict[tuple[str, float], list[str]] = {}
    for cls, shares in table.items():
        value = max(shares, key=lambda v: shares[v])
        by_value.setdefault((value, shares[value]), []).append(cls)
    ordered = sorted(by_value.items(), key=lambda kv: len(kv[1]))
    parts = [
        f"class{'es' if len(classes) > 1 else ''} {', '.join(classes)} {'are' if len(classes) > 1 else 'is'} "
        f"{share:.0%} {value}"
        for (value, share), classes in ordered[:-1]
    ]
    (value, share), classes = ordered[-1]
    last = "all others" if parts else ("every class" if len(classes) > 1 else f"class {classes[0]}")
    parts.append(f"{last} {share:.0%} {value}")
    return ", ".join(parts).replace("%", " %")
