"""Ingest: the source lands in data/images and every file is described in the manifest."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from steelflow.cli import app
from steelflow.config import load_params
from steelflow.data import cache, manifest
from steelflow.errors import DataError, ValidationFailed
from steelflow.steps.ingest import ingest
from steelflow.steps.split import split
from steelflow.steps.validate import validate
from tests.support.helpers import repo_params, write_image, write_params
from tests.unit.test_image_decoding import oversized_png_header


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


def test_non_image_files_are_reported_by_count_and_name(project, image_folder):
    (image_folder / "dent" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (image_folder / "rust" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (image_folder / "scratch" / "notes.txt").write_text("camera 2, shift B")
    write_params(project, repo_params(data={"source": str(image_folder)}))

    result = CliRunner().invoke(app, ["ingest"])

    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "skipped 3 file(s) that are not images: dent/.DS_Store, rust/Thumbs.db, scratch/notes.txt" in flat
    assert len(manifest.read("data/manifest.csv")) == 30


def test_16_bit_images_reach_the_cache_with_their_contrast(project, tmp_path):
    """The probe: 16-bit PNGs over 0..65535 were cached 99.6 % white (min 252) by a clipping convert("L")."""
    for c, label in enumerate(("dent", "rust")):
        for i in range(8):
            field = ndimage.gaussian_filter(np.random.default_rng(10 * c + i).normal(size=(40, 40)), 3)
            values = ((field - field.min()) / np.ptp(field) * 65535).astype(np.uint16)  # all of 0..65535
            (tmp_path / "src" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(values).save(tmp_path / "src" / label / f"{i}.png")
    params = load_params(overrides=[f"data.source={tmp_path / 'src'}", "validate.modes=[L, I;16]"])

    ingest(params.data)
    validate(params.data, params.validate_, Path("data/manifest.csv"))
    split(params.data, params.split)

    table = manifest.read("data/manifest.csv")
    assert set(table["mode"]) == {"I;16"} and table["decode_note"].str.contains("I;16 range").all()
    cached = cache.load(cache.split_path("data/cache", "train")).images
    assert (cached == 255).mean() < 0.05 and cached.min() < 40 and cached.max() > 215


def test_an_oversized_image_is_refused_from_its_header_and_validation_names_it(project, image_folder):
    oversized_png_header(image_folder / "dent" / "huge.png")
    params = load_params(overrides=[f"data.source={image_folder}"])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ingest(params.data)

    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    errors = manifest.read("data/manifest.csv").set_index("path")["error"]
    assert errors["images/dent/huge.png"].startswith("TooLarge: 12000×12000")
    with pytest.raises(ValidationFailed, match=r"images/dent/huge\.png \(TooLarge"):
        validate(params.data, params.validate_, Path("data/manifest.csv"))


def test_reencode_stores_png_and_refuses_two_files_that_would_collide(project, image_folder):
    write_image(image_folder / "dent" / "extra.jpg", 77, mode="RGB")
    data = load_params(overrides=[f"data.source={image_folder}", "data.reencode=png"]).data
    ingest(data)
    table = manifest.read("data/manifest.csv").set_index("path")
    assert set(table["format"]) == {"PNG"} and set(table["mode"]) == {"L", "RGB"}
    assert table.loc["images/dent/extra.png", "decode_note"] == "re-encoded from JPEG RGB"

    write_image(image_folder / "dent" / "extra.png", 78)
    with pytest.raises(DataError, match=r"extra\.(png|jpg) and .*extra\.(png|jpg) would both be stored as"):
        ingest(data)


def _secret_beside(image_folder: Path) -> Path:
    """An image outside the source folder (what a link in it may point at)."""
    return write_image(image_folder.parent / "elsewhere" / "secret.png", 999)


def test_a_link_pointing_outside_the_source_stops_ingest_naming_it_and_nothing_is_copied(
    project, image_folder
):
    secret = _secret_beside(image_folder)
    (image_folder / "dent" / "img_99.png").symlink_to(secret)
    write_params(project, repo_params(data={"source": str(image_folder)}))

    result = CliRunner().invoke(app, ["ingest"])

    assert result.exit_code == DataError.exit_code, result.output
    flat = " ".join(result.output.split())
    assert f"dent/img_99.png → {secret.resolve()}" in flat and "data.outside_links: skip" in flat
    assert not Path("data/images").exists() and not Path("data/manifest.csv").exists()
    assert not [p for p in Path("data").iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_with_outside_links_skip_links_out_of_the_source_are_left_out_with_a_warning(project, image_folder):
    secret = _secret_beside(image_folder)
    (image_folder / "dent" / "img_99.png").symlink_to(secret)
    (image_folder / "pits").symlink_to(secret.parent, target_is_directory=True)
    inside = image_folder / "rust" / "img_0_again.png"  # a link that stays in the source: ingested
    inside.symlink_to(image_folder / "rust" / "img_0.png")
    write_params(project, repo_params(data={"source": str(image_folder), "outside_links": "skip"}))

    result = CliRunner().invoke(app, ["ingest"])

    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "warning: ingest: left out 2 link(s) pointing outside data.source: " in flat
    assert f"pits → {secret.parent.resolve()}" in flat and f"dent/img_99.png → {secret.resolve()}" in flat
    table = manifest.read("data/manifest.csv")
    assert table.groupby("label").size().to_dict() == {"dent": 10, "rust": 11, "scratch": 10}
    secret_sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    assert secret_sha not in set(table["sha256"])
    assert not any(p.read_bytes() == secret.read_bytes() for p in Path("data/images").rglob("*.png"))


def _pages(path: Path, seeds: tuple[int, ...] = (1, 2, 3)) -> Path:
    """A multi-page TIFF (or animated PNG, by the suffix) of distinct 40×40 noise images."""
    frames = [
        Image.fromarray(np.random.default_rng(s).integers(0, 256, (40, 40), dtype=np.uint8)) for s in seeds
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


@pytest.mark.parametrize("name", ["stack.tif", "animated.png"])
def test_a_multi_frame_image_stops_ingest_naming_the_file_and_its_frame_count(project, image_folder, name):
    ingest(load_params(overrides=[f"data.source={image_folder}"]).data)
    before = Path("data/manifest.csv").read_bytes()
    _pages(image_folder / "dent" / name)

    with pytest.raises(
        DataError, match=rf"1 file\(s\) hold several images .*dent/{name} \(3 frames\).*expand"
    ):
        ingest(load_params(overrides=[f"data.source={image_folder}"]).data)

    assert Path("data/manifest.csv").read_bytes() == before


def test_multi_frame_expand_stores_each_frame_as_its_own_image_with_the_same_label(project, image_folder):
    _pages(image_folder / "dent" / "stack.tif", seeds=(501, 502, 503))
    write_params(project, repo_params(data={"source": str(image_folder), "multi_frame": "expand"}))

    result = CliRunner().invoke(app, ["ingest"])

    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "1 multi-frame file(s) stored as 3 images, one per frame (data.multi_frame: expand): " in flat
    assert "dent/stack.tif (3 frames)" in flat
    table = manifest.read("data/manifest.csv").set_index("path")
    pages = [f"images/dent/stack_p{i}.png" for i in (1, 2, 3)]
    assert set(table.loc[pages, "label"]) == {"dent"} and (table.loc[pages, "error"] == "").all()
    assert list(table.loc[pages, "decode_note"]) == [
        f"frame {i} of 3 of stack.tif, re-encoded from TIFF L" for i in (1, 2, 3)
    ]
    assert table.loc[pages, "sha256"].nunique() == 3
    params = load_params()
    validate(params.data, params.validate_, Path("data/manifest.csv"))  # the expanded manifest passes
