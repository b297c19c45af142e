"""Ingest: the source lands in data/images and every file is described in the manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from steelflow.config import load_params
from steelflow.data import manifest
from steelflow.errors import DataError
from steelflow.steps.ingest import ingest
from tests.helpers import write_image


def test_folder_source_is_copied_byte_for_byte_and_described(project, image_folder):
    data = load_params(overrides=[f"data.source={image_folder}"]).data
    result = ingest(data)
    assert result.layout == "folder-per-class"
    assert result.per_class == {"dent": 10, "rust": 10, "scratch": 10}
    table = manifest.read("data/manifest.csv")
    assert list(table.columns) == manifest.COLUMNS
    row = table.iloc[0]
    copied = Path("data") / row["path"]
    assert row["path"] == "images/dent/img_0.png"
    assert copied.read_bytes() == (image_folder / "dent" / "img_0.png").read_bytes()
    assert row["sha256"] == hashlib.sha256(copied.read_bytes()).hexdigest()
    assert (row["width"], row["height"], row["mode"], row["bytes"]) == (40, 40, "L", copied.stat().st_size)
    assert (table["error"] == "").all()


def test_synthetic_source_is_generated_and_reproducible(project):
    data = load_params().data
    ingest(data)
    first = Path("data/manifest.csv").read_bytes()
    table = manifest.read("data/manifest.csv")
    assert len(table) == 6 * data.synthetic.per_class
    assert set(table["width"]) == {data.synthetic.image_size}
    ingest(data)
    assert Path("data/manifest.csv").read_bytes() == first


def test_undecodable_files_are_recorded_with_their_error(project, image_folder):
    good = image_folder / "dent" / "img_0.png"
    (image_folder / "dent" / "truncated.png").write_bytes(good.read_bytes()[:200])
    (image_folder / "dent" / "empty.png").write_bytes(b"")
    (image_folder / "rust" / "readme.png").write_text("this is text, not a PNG")
    ingest(load_params(overrides=[f"data.source={image_folder}"]).data)
    errors = manifest.read("data/manifest.csv").set_index("path")["error"]
    for bad in ["images/dent/truncated.png", "images/dent/empty.png", "images/rust/readme.png"]:
        assert errors[bad], bad
    assert errors["images/dent/img_0.png"] == ""


def test_failed_ingest_leaves_previous_outputs_intact(project, image_folder):
    ingest(load_params(overrides=[f"data.source={image_folder}"]).data)
    before = Path("data/manifest.csv").read_bytes()
    (image_folder / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class has no images"):
        ingest(load_params(overrides=[f"data.source={image_folder}"]).data)
    assert Path("data/manifest.csv").read_bytes() == before
    assert len(list(Path("data/images").rglob("*.png"))) == 30
    assert not [p for p in Path("data").iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_rgb_images_keep_their_mode(project, tmp_path):
    for i in range(3):
        write_image(tmp_path / "src" / "a" / f"{i}.jpg", i, mode="RGB")
        write_image(tmp_path / "src" / "b" / f"{i}.jpg", 10 + i, mode="RGB")
    ingest(load_params(overrides=[f"data.source={tmp_path / 'src'}"]).data)
    assert set(manifest.read("data/manifest.csv")["mode"]) == {"RGB"}
