"""Shortcut check: a label that metadata alone predicts fails (or warns), names the feature and shows the
class × value table; re-encoding at ingest removes a format shortcut."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from steelflow.config import load_params
from steelflow.data import shortcuts
from steelflow.errors import ValidationFailed
from steelflow.steps.ingest import ingest
from steelflow.steps.validate import validate


def ingest_and_validate(source: Path, *overrides: str):
    params = load_params(overrides=[f"data.source={source}", *overrides])
    ingest(params.data)
    return validate(params.data, params.validate_, Path("data/manifest.csv"))


@pytest.fixture
def dent_as_png(image_folder: Path) -> Path:
    """dent stays PNG; rust and scratch are stored as JPEG (the same pixels, another container)."""
    for label in ("rust", "scratch"):
        for png in sorted((image_folder / label).glob("*.png")):
            with Image.open(png) as im:
                im.save(png.with_suffix(".jpg"), quality=95)
            png.unlink()
    return image_folder


def test_a_class_that_alone_is_png_fails_naming_the_format(project, dent_as_png):
    with pytest.raises(ValidationFailed) as failed:
        ingest_and_validate(dent_as_png)

    message = " ".join(str(failed.value).split())
    assert "label predictable from metadata alone" in message
    assert "class dent is 100 % .png, all others 100 % .jpg" in message  # extension: first of the ties
    report = load_report()
    found = report["shortcuts"]
    assert found["found"] and found["accuracy"] > found["baseline"] + 0.3
    assert found["feature_accuracy"]["format"] == found["feature_accuracy"]["extension"]
    assert found["table"] == {"dent": {".png": 1.0}, "rust": {".jpg": 1.0}, "scratch": {".jpg": 1.0}}


def test_warn_policy_passes_with_the_same_finding_as_a_warning(project, dent_as_png):
    result = ingest_and_validate(dent_as_png, "validate.shortcuts=warn")
    assert result.success
    assert any("class dent is 100 % .png" in w for w in result.warnings)


def test_reencoding_at_ingest_removes_the_format_shortcut(project, dent_as_png):
    result = ingest_and_validate(dent_as_png, "data.reencode=png")
    assert result.success and not result.report["shortcuts"]["found"]
    assert {Path(p).suffix for p in Path("data/images").rglob("*.*")} == {".png"}


def test_a_size_that_gives_the_class_away_is_named(project, image_folder):
    for png in (image_folder / "scratch").glob("*.png"):
        with Image.open(png) as im:
            im.resize((48, 40)).save(png)
    with pytest.raises(ValidationFailed, match="most telling feature width: class scratch is 100 % 48"):
        ingest_and_validate(image_folder)


def test_metadata_that_is_the_same_everywhere_is_no_shortcut(project, image_folder):
    result = ingest_and_validate(image_folder)
    found = result.report["shortcuts"]
    assert found["checked"] and not found["found"] and found["accuracy"] == found["baseline"]


def test_description_groups_classes_by_their_most_common_value():
    table = {"a": {"PNG": 1.0}, "b": {"JPEG": 0.9, "PNG": 0.1}, "c": {"JPEG": 0.9, "PNG": 0.1}}
    assert shortcuts.describe(table) == "class a is 100 % PNG, all others 90 % JPEG"
    assert shortcuts.describe({"a": {"L": 1.0}, "b": {"L": 1.0}}) == "every class 100 % L"


def test_too_few_images_to_cross_validate_is_said_not_guessed():
    rows = pd.DataFrame(
        {"path": ["a/1.png", "b/1.jpg"], "label": ["a", "b"], "error": ["", ""], "format": ["PNG", "JPEG"]}
        | {"mode": ["L", "L"], "width": [8, 8], "height": [8, 8]}
    )
    assert shortcuts.check(rows, 0.1) == {
        "checked": False,
        "why": "needs two classes with at least 2 decodable images each",
    }


def load_report() -> dict:
    import json

    return json.loads(Path("reports/validation.json").read_text())
