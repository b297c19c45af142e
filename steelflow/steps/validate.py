"""Step 2, validate: check the manifest with Great Expectations before anything trains on it.

Reads params sections ``validate`` and ``data`` (``classes``) and ``data/manifest.csv``. Writes
``reports/validation.json`` (deterministic: DVC hashes it as a metric) and the Great Expectations Data
Docs under ``reports/validation/`` (open ``index.html``). Both are written whether or not the data passes;
a failure then raises :class:`~steelflow.errors.ValidationFailed` naming each broken expectation and its
files.

The checks: every file decodes as an image; labels are among ``data.classes`` (when given); each class has
at least ``validate.min_per_class`` images; decodable images have their width, height and mode within
bounds; no content (sha256) appears twice. A copy inside one class is dropped (the first in manifest order
is kept; ``validate.duplicates: drop``) or fails (``fail``); the same content under two labels always fails.
Near-duplicates (perceptual hashes within ``validate.near_duplicate_distance`` bits) inside one class are
dropped, fail or are kept with a warning (``validate.near_duplicates``; split keeps each group in one split);
near-duplicates under two labels always fail. The label must not be predictable from metadata alone
(``validate.shortcuts``, :mod:`steelflow.data.shortcuts`). Quality flags (dark, bright, blurry,
low-information, odd-size; ``validate.quality``) warn unless ``validate.quality.action`` is fail.
GX has no per-value count expectation, so class sizes are checked on a second, per-class table.

The report records the sha256 of the manifest it checked: later steps refuse any other manifest
(:func:`steelflow.data.manifest.require_validated`).

Under Kubeflow validate is not cut into parts: it runs once, on the manifest ingest's parts merged into. Its
per-image work (decoding, hashes, quality measures) is already done, part by part, by ingest, and sits in
the manifest's columns; what is left is checks of the whole table (copies and near-duplicates across any two
images, class counts, sizes against the median, the shortcut model) and one Data Docs site.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from steelflow import atomic, paths
from steelflow.config import DataConfig, ValidateConfig
from steelflow.data import images, manifest, near_duplicates, shortcuts
from steelflow.data.expectations import (
    CLASS_TABLE,
    IN_CLASS_COPY,
    MANIFEST_TABLE,
    NEAR_ACROSS,
    NEAR_IN_CLASS,
    SIZE_RATIO,
    class_expectations,
    failure_line,
    manifest_expectations,
    run_great_expectations,
    summarise,
)
from steelflow.errors import ValidationFailed
from steelflow.step import Produces, Step

THUMBNAIL = 64  # side of a near-duplicate's picture in the Data Docs, pixels
THUMBNAIL_GROUPS = 20  # groups pictured per expectation (the report lists them all)
_MESSAGE_ONLY = ("details", "raised", "observed")  # check fields the error message uses, not the JSON


@dataclass(frozen=True)
class ValidationResult:
    success: bool
    n_images: int
    dropped: list[str]  # manifest paths dropped as in-class (near-)duplicates (the first is kept)
    failures: list[str]  # one human line per failed expectation, with offending files
    report: dict  # what was written to validation.json
    warnings: list[str]  # one human line per warning (near-duplicates kept, quality flags, a shortcut)


def validate(
    data: DataConfig,
    cfg: ValidateConfig,
    manifest_path: Path = paths.MANIFEST,
    report_path: Path = paths.VALIDATION_JSON,
    docs_dir: Path = paths.VALIDATION_DOCS,
) -> ValidationResult:
    """Run the expectations on the manifest, write both reports, and raise if any expectation fails."""
    table = manifest.read(manifest_path)
    checked = manifest.sha256(manifest_path)
    copies = in_class_copies(table)
    groups = near_duplicate_groups(table, cfg.near_duplicate_distance, cfg.near_duplicates)
    dropped = table.loc[copies, "path"].tolist() if cfg.duplicates == "drop" else []
    dropped += [p for g in groups for p in g["dropped"] if p not in dropped]
    counts = class_counts(table[~table["path"].isin(dropped)], data.classes)

    tables = {
        MANIFEST_TABLE: (gx_frame(table, copies, groups), ["path", "label"]),
        CLASS_TABLE: (pd.DataFrame({"label": list(counts), "images": list(counts.values())}), ["label"]),
    }
    notes = group_notes(groups, Path(manifest_path).parent)
    suites = {MANIFEST_TABLE: manifest_expectations(data, cfg, notes), CLASS_TABLE: class_expectations(cfg)}
    with atomic.atomic_path(docs_dir) as site:
        outcomes = run_great_expectations(tables, suites, site)

    checks = [summarise(table_name, r) for table_name, results in outcomes.items() for r in results]
    failures = [failure_line(c) for c in checks if not c["success"] and c["severity"] == "fail"]
    warned = [failure_line(c) for c in checks if not c["success"] and c["severity"] == "warn"]
    shortcut = shortcuts.check(table, cfg.shortcut_margin) if cfg.shortcuts != "off" else {"checked": False}
    if shortcut.get("found"):
        (failures if cfg.shortcuts == "fail" else warned).append(shortcut_line(shortcut))
    report = {
        "success": not failures,
        "n_images": len(table),
        "n_kept": len(table) - len(dropped),
        "per_class": counts,
        "expectations": [{k: v for k, v in c.items() if k not in _MESSAGE_ONLY} for c in checks],
        "duplicates": duplicate_groups(table) if cfg.duplicates == "drop" else [],
        "dropped": dropped,
        "manifest_sha256": checked,
        "near_duplicates": {
            "policy": cfg.near_duplicates,
            "max_distance": cfg.near_duplicate_distance,
            "groups": groups,
        },
        "shortcuts": {"policy": cfg.shortcuts, **shortcut},
        "quality": quality_flags(checks),
        "warnings": warned,
    }
    atomic.write_json(report_path, report)
    if failures:
        raise ValidationFailed(
            f"{len(failures)} expectation(s) failed on {manifest_path} "
            f"(see {report_path} and {Path(docs_dir) / 'index.html'}):\n  - " + "\n  - ".join(failures)
        )
    return ValidationResult(True, len(table), dropped, [], report, warned)


# --- pure helpers ---------------------------------------------------------------------------------------


def in_class_copies(table: pd.DataFrame) -> pd.Series:
    """True for each row whose content already appeared earlier (manifest order) in the same class."""
    return table.duplicated(["sha256", "label"], keep="first")


def duplicate_groups(table: pd.DataFrame) -> list[dict[str, Any]]:
    """In-class copies as ``{sha256, label, kept, dropped}``, in the manifest order of the kept file."""
    copies = table[table.duplicated(["sha256", "label"], keep=False)]
    return [
        {
            "sha256": sha,
            "label": label,
            "kept": rows["path"].iloc[0],
            "dropped": rows["path"].iloc[1:].tolist(),
        }
        for (sha, label), rows in copies.groupby(["sha256", "label"], sort=False)
    ]


def near_duplicate_groups(table: pd.DataFrame, max_distance: int, policy: str) -> list[dict[str, Any]]:
    """Groups of near-duplicate content, in manifest order: ``{group, labels, paths, max_distance, kept,
    dropped}``. Exact copies of one content are not a group by themselves (the sha256 check has those).
    ``dropped`` is filled only under the ``drop`` policy, and never for a group that spans labels."""
    ok = table[(table["error"] == "") & (table["phash"] != "")]
    contents = ok.drop_duplicates("sha256")
    found = near_duplicates.groups(contents["phash"].tolist(), max_distance)
    groups = []
    for number, members in enumerate(found, start=1):
        rows = ok[ok["sha256"].isin(contents["sha256"].iloc[members])]
        hashes = contents["phash"].iloc[members].tolist()
        labels = sorted(set(rows["label"]))
        paths = rows["path"].tolist()
        groups.append(
            {
                "group": number,
                "labels": labels,
                "paths": paths,
                "max_distance": max(near_duplicates.distance(a, b) for a in hashes for b in hashes),
                "kept": paths[0],
                "dropped": paths[1:] if policy == "drop" and len(labels) == 1 else [],
            }
        )
    return groups


def class_counts(table: pd.DataFrame, classes: list[str] | None) -> dict[str, int]:
    """Images per class: ``data.classes`` in order (absent ones as 0), then any other label, sorted."""
    found = table["label"].value_counts()
    expected = list(classes or [])
    names = expected + sorted(set(found.index) - set(expected))
    return {name: int(found.get(name, 0)) for name in names}


def gx_frame(table: pd.DataFrame, copies: pd.Series, groups: list[dict[str, Any]]) -> pd.DataFrame:
    """The manifest as GX sees it: a missing decode error is null, in-class copies are flagged, each row in
    a near-duplicate group names it (in one column or the other, by whether it spans labels), and each row
    has its size's factor off the median."""
    frame = table.copy()
    frame["error"] = frame["error"].where(frame["error"] != "", None)
    frame[IN_CLASS_COPY] = copies.to_numpy()
    across = {p: _group_name(g) for g in groups if len(g["labels"]) > 1 for p in g["paths"]}
    within = {p: _group_name(g) for g in groups if len(g["labels"]) == 1 for p in g["paths"]}
    frame[NEAR_ACROSS] = frame["path"].map(across).astype(object).where(frame["path"].isin(across), None)
    frame[NEAR_IN_CLASS] = frame["path"].map(within).astype(object).where(frame["path"].isin(within), None)
    frame[SIZE_RATIO] = size_ratio(frame, frame["error"].isna())
    return frame


def size_ratio(frame: pd.DataFrame, decodable: pd.Series) -> pd.Series:
    """How far each decodable image's sides are off the median (a factor ≥ 1, the larger of the two)."""
    ratio = pd.Series(1.0, index=frame.index)
    if decodable.any():
        for side in ("width", "height"):
            r = frame.loc[decodable, side] / frame.loc[decodable, side].median()
            ratio[decodable] = ratio[decodable].combine(r.where(r >= 1, 1 / r), max)
    return ratio


def group_notes(groups: list[dict[str, Any]], root: Path) -> dict[str, str]:
    """Markdown for the Data Docs: each group's files with thumbnails (when the images are at hand)."""
    notes: dict[str, list[str]] = {NEAR_ACROSS: [], NEAR_IN_CLASS: []}
    for g in groups:
        column = NEAR_ACROSS if len(g["labels"]) > 1 else NEAR_IN_CLASS
        if len(notes[column]) < THUMBNAIL_GROUPS:
            pictures = " ".join(_thumbnail(root / p, p) for p in g["paths"])
            notes[column].append(f"**{_group_name(g)}**, hashes ≤ {g['max_distance']} bits apart: {pictures}")
    return {column: "\n\n".join(lines) for column, lines in notes.items() if lines}


def _thumbnail(path: Path, name: str) -> str:
    """A markdown image of ``path`` as an inline PNG; just its name when it cannot be read."""
    try:
        picture = images.resize(images.load(path, 1), THUMBNAIL)
    except (OSError, ValueError):
        return f"`{name}`"
    buf = io.BytesIO()
    images.save_png(picture, buf)
    return f"![{name}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}) `{name}`"


def _group_name(group: dict[str, Any]) -> str:
    return f"group {group['group']} ({len(group['paths'])} files: {', '.join(group['labels'])})"


def quality_flags(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each quality flag as the report lists it: its rule, how many images raise it, the first of them."""
    return {
        c["quality"]: {"rule": c["check"], "count": c["unexpected_count"], "examples": c["unexpected"][:5]}
        for c in checks
        if c.get("quality")
    }


def shortcut_line(found: dict[str, Any]) -> str:
    return (
        f"label predictable from metadata alone: a depth-2 tree scores {found['accuracy']:.2f} against a "
        f"majority baseline of {found['baseline']:.2f} (margin {found['margin']:g}); most telling feature "
        f"{found['feature']}: {found['summary']} (ingest with data.reencode: png to remove a format shortcut)"
    )


def summary(result: ValidationResult) -> list[str]:
    dropped = f", {len(result.dropped)} duplicate(s) dropped" if result.dropped else ""
    warned = f", {len(result.warnings)} warning(s)" if result.warnings else ""
    return [
        *(f"warning: validate: {line}" for line in result.warnings),
        f"validate: {result.n_images} images passed{dropped}{warned} → {paths.VALIDATION_JSON}",
    ]


STEP = Step(
    "validate",
    run=validate,
    help="Check the manifest with Great Expectations → reports/validation.json and Data Docs.",
    sections=("data", "validate"),
    inputs=(paths.MANIFEST, paths.IMAGES),
    params=("data.classes", "validate"),
    outs=(paths.VALIDATION_DOCS, paths.VALIDATION_JSON),
    notes={str(paths.IMAGES): "thumbnails of near-duplicate groups in the Data Docs"},
    summary=summary,
    consumes=("dataset",),
    produces=(
        Produces("report"),
        Produces("metrics", "Metrics", metrics=paths.VALIDATION_JSON),
        Produces("data_docs", "HTML", page=paths.VALIDATION_DOCS),
    ),
    # under Kubeflow a failed expectation does not fail the task: the graph skips every later step
    refusal=ValidationFailed,
    answer=lambda result: result is not None,
    answer_type=bool,
)
