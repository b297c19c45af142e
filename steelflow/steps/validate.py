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
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from steelflow import atomic, paths
from steelflow.config import DataConfig, ValidateConfig
from steelflow.data import images, manifest, near_duplicates, shortcuts
from steelflow.errors import ValidationFailed

if TYPE_CHECKING:  # GX takes seconds to import: load it only when validating
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.expectations import Expectation

UNEXPECTED_CAP = 50  # offending items listed per expectation in validation.json; the count is always total
MESSAGE_ITEMS = 5  # offending items named per failed expectation in the error message
MANIFEST_TABLE = "manifest"
CLASS_TABLE = "per_class"
ASSET_NAMES = {MANIFEST_TABLE: "data/manifest.csv", CLASS_TABLE: "data/manifest.csv (images per class)"}
IN_CLASS_COPY = "in_class_copy"  # helper column: a later copy of content already seen in the same class
NEAR_IN_CLASS = "near_duplicate_group"  # helper column: the in-class near-duplicate group of a row
NEAR_ACROSS = "near_duplicate_across_classes"  # helper column: the group of a row, when it spans labels
SIZE_RATIO = "size_ratio"  # helper column: the larger side's factor off the data set's median size
GX_SEVERITY = {"fail": "critical", "warn": "warning", "info": "info"}  # ours → how Data Docs shows it
THUMBNAIL = 64  # side of a near-duplicate's picture in the Data Docs, pixels
THUMBNAIL_GROUPS = 20  # groups pictured per expectation (the report lists them all)
_MESSAGE_ONLY = ("details", "raised", "observed")  # check fields the error message uses, not the JSON
QUALITY_CHECKS = {  # report name → the column its expectation reads and the bound it uses
    "dark": ("brightness", "min"),
    "bright": ("brightness", "max"),
    "blurry": ("sharpness", "min"),
    "low_information": ("entropy", "min"),
    "odd_size": (SIZE_RATIO, "max"),
}


@dataclass(frozen=True)
class ValidationResult:
    success: bool
    n_images: int
    dropped: list[str]  # manifest paths dropped as in-class (near-)duplicates (the first is kept)
    failures: list[str]  # one human line per failed expectation, with offending files
    report: dict  # what was written to validation.json
    warnings: list[str]  # one human line per warning (near-duplicates kept, quality flags, a shortcut)


def validate(
    manifest_path: Path,
    data: DataConfig,
    cfg: ValidateConfig,
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
        outcomes = _run_great_expectations(tables, suites, site)

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


# --- what is expected ---------------------------------------------------------------------------------


def manifest_expectations(
    data: DataConfig, cfg: ValidateConfig, notes: dict[str, str] | None = None
) -> list[Expectation]:
    """Row-level expectations on the manifest; image properties are checked on decodable rows only.

    ``notes``: Data Docs text (markdown) per helper column, e.g. the near-duplicate groups' thumbnails."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    ex = gx.expectations
    decodable = Column("error").is_null()
    expected: list[Expectation] = [
        ex.ExpectColumnValuesToBeNull(column="error", meta={"check": "every file decodes as an image"}),
    ]
    if data.classes is not None:
        expected.append(
            ex.ExpectColumnValuesToBeInSet(
                column="label", value_set=list(data.classes), meta={"check": "labels are in data.classes"}
            )
        )
    for side in ("width", "height"):
        lo, hi = getattr(cfg, f"min_{side}"), getattr(cfg, f"max_{side}")
        expected.append(
            ex.ExpectColumnValuesToBeBetween(
                column=side,
                min_value=lo,
                max_value=hi,
                row_condition=decodable,
                meta={"check": f"{side} within {lo}..{hi} px"},
            )
        )
    expected.append(
        ex.ExpectColumnValuesToBeInSet(
            column="mode",
            value_set=list(cfg.modes),
            row_condition=decodable,
            meta={"check": f"image mode in {', '.join(cfg.modes)}"},
        )
    )
    if cfg.duplicates == "drop":
        # Copies inside a class are dropped, so only what is kept must be unique: what is left is the
        # same content under different labels, which no policy can resolve.
        unique = ex.ExpectColumnValuesToBeUnique(
            column="sha256",
            row_condition=Column(IN_CLASS_COPY) == False,  # noqa: E712 - builds a GX condition, not a test
            meta={"check": "no content under two labels"},
        )
    else:
        unique = ex.ExpectColumnValuesToBeUnique(column="sha256", meta={"check": "no duplicate content"})
    expected.append(unique)
    expected.extend(near_duplicate_expectations(cfg, notes or {}))
    expected.extend(quality_expectations(cfg))
    return expected


def near_duplicate_expectations(cfg: ValidateConfig, notes: dict[str, str]) -> list[Expectation]:
    """Across labels: always a failure. Within a class: by ``validate.near_duplicates`` — a failure, a
    warning (kept), or for the record only (dropped but the first)."""
    import great_expectations as gx

    within = {
        "fail": ("no near-duplicates within a class", "fail"),
        "warn": ("no near-duplicates within a class (kept: split keeps each group in one split)", "warn"),
        "drop": ("near-duplicates within a class: all but the first dropped", "info"),
    }[cfg.near_duplicates]
    checks = [(NEAR_ACROSS, "no near-duplicates under two labels", "fail"), (NEAR_IN_CLASS, *within)]
    return [
        gx.expectations.ExpectColumnValuesToBeNull(
            column=column,
            meta={"check": check, "severity": severity},
            severity=GX_SEVERITY[severity],
            notes=notes.get(column),
        )
        for column, check, severity in checks
    ]


def quality_expectations(cfg: ValidateConfig) -> list[Expectation]:
    """One expectation per quality flag, on decodable rows; warnings unless ``quality.action`` is fail."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    q = cfg.quality
    bounds = {"dark": q.dark, "bright": q.bright, "blurry": q.blurry, "low_information": q.low_information}
    bounds["odd_size"] = q.odd_size
    words = {"dark": "not dark", "bright": "not bright", "blurry": "not blurry"}
    words |= {"low_information": "not low-information", "odd_size": "not odd-sized"}
    return [
        gx.expectations.ExpectColumnValuesToBeBetween(
            column=column,
            **{f"{side}_value": bounds[name]},
            row_condition=Column("error").is_null(),
            severity=GX_SEVERITY[q.action],
            meta={
                "check": f"{words[name]}: {column} {'≥' if side == 'min' else '≤'} {bounds[name]:g}",
                "severity": q.action,
                "quality": name,
            },
        )
        for name, (column, side) in QUALITY_CHECKS.items()
    ]


def class_expectations(cfg: ValidateConfig) -> list[Expectation]:
    import great_expectations as gx

    return [
        # An empty manifest (or a single class) would otherwise pass every row-level check vacuously.
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=2, meta={"check": "at least 2 classes"}),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="images",
            min_value=cfg.min_per_class,
            meta={"check": f"at least {cfg.min_per_class} images per class"},
        ),
    ]


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


def summarise(table_name: str, result: ExpectationValidationResult) -> dict[str, Any]:
    """One expectation's outcome for validation.json, plus what the error message needs: ``details``
    (offending item, why) and ``raised`` (GX's own error, when it could not evaluate the expectation)."""
    config = result.expectation_config
    column = config.kwargs.get("column")
    key = "path" if table_name == MANIFEST_TABLE else "label"
    rows = result.result.get("unexpected_index_list") or []
    details = [(str(row[key]), _why(column, row)) for row in rows]
    raised = result.exception_info or {}
    return {
        "check": config.meta.get("check", config.type),
        "severity": config.meta.get("severity", "fail"),
        **({"quality": config.meta["quality"]} if "quality" in config.meta else {}),
        "expectation": config.type,
        "table": table_name,
        "column": column,
        "success": bool(result.success),
        "unexpected_count": int(result.result.get("unexpected_count", len(rows))),
        "unexpected": [item for item, _ in details[:UNEXPECTED_CAP]],
        "details": details,
        "raised": str(raised.get("exception_message")) if raised.get("raised_exception") else None,
        "observed": result.result.get("observed_value"),
    }


def _why(column: str | None, row: dict[str, Any]) -> str:
    value = row.get(column)
    if column == "error":
        return str(value)
    if column == "sha256":
        return f"label {row['label']}, sha256 {str(value)[:12]}"
    if column == "images":
        return f"{value} images"
    if column in (NEAR_ACROSS, NEAR_IN_CLASS):
        return f"label {row['label']}, near-duplicate {value}"
    return f"{column} {value}"


def failure_line(check: dict[str, Any]) -> str:
    """``check: N file(s): item (why), … (+M more)``."""
    if check["raised"]:  # GX could not evaluate it: say why rather than "0 files"
        return f"{check['check']}: could not be evaluated: {check['raised']}"
    if check["column"] is None:  # a table-level expectation has no offending rows, only what it saw
        return f"{check['check']}: found {check['observed']}"
    shown = ", ".join(f"{item} ({why})" for item, why in check["details"][:MESSAGE_ITEMS])
    more = check["unexpected_count"] - min(len(check["details"]), MESSAGE_ITEMS)
    noun = "file(s)" if check["table"] == MANIFEST_TABLE else "class(es)"
    tail = f" (+{more} more)" if more else ""
    return f"{check['check']}: {check['unexpected_count']} {noun}: {shown}{tail}"


# --- Great Expectations, at the edge ------------------------------------------------------------------


def _run_great_expectations(
    tables: dict[str, tuple[pd.DataFrame, list[str]]], suites: dict[str, list[Expectation]], site: Path
) -> dict[str, list[ExpectationValidationResult]]:
    """Validate each table with its suite in a throwaway in-memory context; render Data Docs into ``site``.

    The context keeps nothing on disk but the Data Docs (no ``gx/`` folder appears anywhere), so every run
    starts from the same empty state.
    """
    with _quiet_great_expectations():
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                data_docs_sites={
                    "steelflow": {
                        "class_name": "SiteBuilder",
                        "show_how_to_buttons": False,
                        "store_backend": {
                            "class_name": "TupleFilesystemStoreBackend",
                            "base_directory": str(site.resolve()),
                        },
                        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                    }
                },
                progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                analytics_enabled=False,
            ),
        )
        source = context.data_sources.add_pandas("steelflow")
        run_id = gx.RunIdentifier(run_name="steelflow-validate")
        outcomes = {}
        for expectations in suites.values():
            for e in expectations:
                # GX 1.x renders `description` as the expectation's name in Data Docs: the readable check
                # ("every file decodes as an image") instead of the bare template text
                e.description = e.description or e.meta["check"]
        for name, (frame, index_columns) in tables.items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
            suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=suites[name]))
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
            outcome = definition.run(
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns},
                run_id=run_id,
            )
            # GX lists the expectations it could not evaluate first: keep the suite's order instead.
            position = {e.meta["check"]: i for i, e in enumerate(suites[name])}
            outcomes[name] = sorted(
                outcome.results, key=lambda r: position[r.expectation_config.meta["check"]]
            )
        _name_data_assets(context)
        context.build_data_docs()
    return outcomes


def _name_data_assets(context: Any) -> None:
    """Data Docs take a result's data asset from its batch spec, which an in-memory dataframe's lacks
    ("Data asset: None"): name it after the table (the asset it was validated as) in the stored results."""
    store = context.validation_results_store
    for key in store.list_keys():
        result = store.get(key)
        spec = result.meta.get("batch_spec") or {}
        spec = dict(spec) if isinstance(spec, dict) else {}
        spec["data_asset_name"] = ASSET_NAMES.get(result.suite_name, result.suite_name)
        result.meta["batch_spec"] = spec
        store.set(key, result)


@contextlib.contextmanager
def _quiet_great_expectations() -> Iterator[None]:
    """GX logs and warns liberally (deprecations, store notices); the step's own report says what matters."""
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
