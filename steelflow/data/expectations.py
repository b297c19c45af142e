"""The manifest's expectations in Great Expectations, and running them: what the validate step checks
(:mod:`steelflow.steps.validate`) and how each outcome reads in ``validation.json`` and in the error message.

The manifest is checked as two tables: the rows themselves (``manifest``), with helper columns the step
adds (in-class copies, near-duplicate groups, the size's factor off the median), and the images per class
(``per_class``: GX has no per-value count expectation). Each expectation carries its readable check in
``meta["check"]`` and, where it only warns, its ``severity``. GX itself is imported only inside the functions
that use it: it takes seconds to import, and only validation needs it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from steelflow.config import DataConfig, ValidateConfig
from steelflow.pages import offline_data_docs

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
QUALITY_CHECKS = {  # report name → the column its expectation reads and the bound it uses
    "dark": ("brightness", "min"),
    "bright": ("brightness", "max"),
    "blurry": ("sharpness", "min"),
    "low_information": ("entropy", "min"),
    "odd_size": (SIZE_RATIO, "max"),
}


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


# --- what each outcome says ---------------------------------------------------------------------------


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


# --- running Great Expectations -----------------------------------------------------------------------


def run_great_expectations(
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
    offline_data_docs(site)  # GX's pages load their scripts from CDNs: point them at local copies
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
