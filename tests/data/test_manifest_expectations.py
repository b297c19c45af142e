"""validate: Great Expectations on the manifest → reports/validation.json + Data Docs, or ValidationFailed.

Manifests are written as CSV; no images are needed, since validation reads only the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from steelflow.config import DataConfig, ValidateConfig
from steelflow.data import manifest
from steelflow.errors import ValidationFailed
from steelflow.steps.validate import ValidationResult, validate

CLASSES = ["dent", "rust"]


def data_config(classes: list[str] | None = None) -> DataConfig:
    return DataConfig.model_validate(
        {
            "source": "synthetic",
            "classes": classes,
            "synthetic": {"per_class": 4, "image_size": 64, "seed": 0},
            "cache_size": 16,
        }
    )


def validate_config(**changes: object) -> ValidateConfig:
    base = {
        "min_per_class": 3,
        "duplicates": "drop",
        "min_width": 32,
        "max_width": 4096,
        "min_height": 32,
        "max_height": 4096,
        "modes": ["L", "RGB"],
    }
    return ValidateConfig.model_validate({**base, **changes})


def row(label: str, name: str, **changes: object) -> dict:
    """A decodable 64×64 grayscale image whose content is unique to its path unless ``sha256`` is given."""
    path = f"images/{label}/{name}.png"
    base = {"path": path, "label": label, "sha256": f"sha-{path}", "width": 64, "height": 64}
    decoded = {"format": "PNG", "decode_note": "", "phash": _unrelated_hash(path)}
    looks = {"brightness": 120.0, "sharpness": 0.8, "entropy": 6.5}
    return {**base, "mode": "L", "bytes": 4096, "error": "", **decoded, **looks, **changes}


def _unrelated_hash(path: str) -> str:
    """A perceptual hash far from every other path's (random 64-bit values are ~32 bits apart)."""
    import hashlib

    return hashlib.sha256(path.encode()).hexdigest()[:16]


def clean_rows(per_class: int = 4) -> list[dict]:
    return [row(label, f"img_{i}") for label in CLASSES for i in range(per_class)]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write ``rows`` as the manifest and validate it; reports go to ``tmp_path/reports``."""
    monkeypatch.chdir(tmp_path)  # so a stray gx/ folder in the cwd would be seen

    def _run(rows: list[dict], data: DataConfig | None = None, cfg: ValidateConfig | None = None):
        manifest.write(pd.DataFrame(rows), tmp_path / "manifest.csv")
        return validate(
            data or data_config(),
            cfg or validate_config(),
            tmp_path / "manifest.csv",
            report_path=tmp_path / "reports" / "validation.json",
            docs_dir=tmp_path / "reports" / "validation",
        )

    return _run


def reports(tmp_path: Path) -> tuple[dict, Path]:
    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    return report, tmp_path / "reports" / "validation" / "index.html"


def expectation(report: dict, column: str) -> dict:
    (found,) = [e for e in report["expectations"] if e["column"] == column]
    return found


# --- passing data -----------------------------------------------------------------------------------------


def test_clean_manifest_passes_and_writes_json_and_data_docs(run, tmp_path: Path, capfd) -> None:
    result = run(clean_rows())

    assert isinstance(result, ValidationResult)
    assert result.success and result.failures == [] and result.dropped == []
    assert result.n_images == 8
    report, index = reports(tmp_path)
    assert report == result.report
    assert list(report) == [
        "success",
        "n_images",
        "n_kept",
        "per_class",
        "expectations",
        "duplicates",
        "dropped",
        "manifest_sha256",
        "near_duplicates",
        "shortcuts",
        "quality",
        "warnings",
    ]
    assert report["per_class"] == {"dent": 4, "rust": 4} and report["n_kept"] == 8
    assert all(e["success"] and e["unexpected"] == [] for e in report["expectations"])
    assert index.is_file() and "<html" in index.read_text().lower()
    assert not (tmp_path / "gx").exists() and not (Path.cwd() / "gx").exists()
    assert "Calculating Metrics" not in "".join(capfd.readouterr())  # GX's progress bars stay off


def test_data_docs_name_the_data_asset_and_each_check(run, tmp_path: Path) -> None:
    run(clean_rows())
    docs = tmp_path / "reports" / "validation"
    (page,) = (docs / "validations" / "manifest").rglob("*.html")
    html = page.read_text()
    assert "Data asset: data/manifest.csv" in html and "Data asset: None" not in html
    suite = (docs / "expectations" / "manifest.html").read_text()
    for check in ("every file decodes as an image", "no content under two labels", "image mode in L, RGB"):
        assert check in suite, check  # GX 1.x shows an expectation's description= as its name


def test_report_is_deterministic_and_replaces_the_previous_one(run, tmp_path: Path) -> None:
    reports_dir = tmp_path / "reports"
    reports_dir.mkdir()
    (reports_dir / "validation.json").write_text('{"stale": true}\n')
    (reports_dir / "validation").mkdir()
    (reports_dir / "validation" / "stale.html").write_text("old")

    run(clean_rows())
    first = (reports_dir / "validation.json").read_bytes()
    run(clean_rows())

    assert (reports_dir / "validation.json").read_bytes() == first
    assert b"stale" not in first and not (reports_dir / "validation" / "stale.html").exists()
    assert sorted(p.name for p in reports_dir.iterdir()) == ["validation", "validation.json"]  # no temps


# --- failing data: reports are still written, the error names what is wrong -------------------------------


def test_undecodable_file_fails_naming_it_and_still_writes_reports(run, tmp_path: Path) -> None:
    broken = row("rust", "broken", width=0, height=0, mode="", error="UnidentifiedImageError: not an image")

    with pytest.raises(ValidationFailed) as failed:
        run([*clean_rows(), broken])

    assert "images/rust/broken.png" in str(failed.value) and "UnidentifiedImageError" in str(failed.value)
    report, index = reports(tmp_path)
    assert report["success"] is False and index.is_file()
    assert expectation(report, "error")["unexpected"] == ["images/rust/broken.png"]
    # Size and mode are checked on decodable files only: the broken file is reported once, not three times.
    assert expectation(report, "width")["success"] and expectation(report, "mode")["success"]


def test_unknown_label_fails_when_classes_are_set(run) -> None:
    with pytest.raises(ValidationFailed, match="dust") as failed:
        run([*clean_rows(), *(row("dust", f"d{i}") for i in range(3))], data=data_config(CLASSES))
    assert "images/dust/d0.png" in str(failed.value)


def test_class_under_min_per_class_fails_naming_the_class(run, tmp_path: Path) -> None:
    rows = [*clean_rows(), row("crack", "only_one")]

    with pytest.raises(
        ValidationFailed, match=r"at least 3 images per class: 1 class\(es\): crack \(1 images\)"
    ):
        run(rows)
    report, _ = reports(tmp_path)
    assert expectation(report, "images")["unexpected"] == ["crack"]


def test_expected_class_without_images_fails(run) -> None:
    rows = [row("dent", f"img_{i}") for i in range(4)]
    with pytest.raises(ValidationFailed, match=r"rust \(0 images\)"):
        run(rows, data=data_config(CLASSES))


def test_width_out_of_bounds_fails_naming_the_file(run, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match=r"images/dent/wide\.png \(width 5000\)"):
        run([*clean_rows(), row("dent", "wide", width=5000)])
    report, _ = reports(tmp_path)
    assert expectation(report, "width")["unexpected"] == ["images/dent/wide.png"]
    assert expectation(report, "height")["success"]


# --- duplicates -------------------------------------------------------------------------------------------


def in_class_copy() -> list[dict]:
    rows = clean_rows()
    return [*rows, row("dent", "copy", sha256=rows[0]["sha256"])]


def test_in_class_duplicate_is_dropped_keeping_the_first(run) -> None:
    result = run(in_class_copy())

    assert result.success and result.dropped == ["images/dent/copy.png"]
    assert result.report["dropped"] == ["images/dent/copy.png"]
    assert result.report["duplicates"] == [
        {
            "sha256": "sha-images/dent/img_0.png",
            "label": "dent",
            "kept": "images/dent/img_0.png",
            "dropped": ["images/dent/copy.png"],
        }
    ]
    assert result.report["n_images"] == 9 and result.report["n_kept"] == 8
    assert result.report["per_class"] == {"dent": 4, "rust": 4}


def test_in_class_duplicate_fails_with_the_fail_policy(run) -> None:
    with pytest.raises(ValidationFailed, match="images/dent/copy.png") as failed:
        run(in_class_copy(), cfg=validate_config(duplicates="fail"))
    assert "images/dent/img_0.png" in str(failed.value)


@pytest.mark.parametrize("policy", ["drop", "fail"])
def test_same_content_under_two_labels_always_fails(run, tmp_path: Path, policy: str) -> None:
    rows = clean_rows()
    rows.append(row("rust", "looks_like_dent", sha256=rows[0]["sha256"]))

    with pytest.raises(ValidationFailed) as failed:
        run(rows, cfg=validate_config(duplicates=policy))

    message = str(failed.value)
    assert "images/dent/img_0.png (label dent" in message
    assert "images/rust/looks_like_dent.png (label rust" in message
    report, _ = reports(tmp_path)
    assert report["dropped"] == []
