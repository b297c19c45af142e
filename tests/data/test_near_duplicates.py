"""Near-duplicates: JPEG re-encodes of an image are found, handled by policy inside a class, always fail
across classes, and never straddle two splits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from steelflow.cli import app
from steelflow.config import load_params
from steelflow.data import manifest, near_duplicates
from steelflow.errors import ValidationFailed
from steelflow.steps.ingest import ingest
from steelflow.steps.split import assign, find_leaks, split
from steelflow.steps.validate import validate
from tests.support.helpers import repo_params, write_params


def reencode(src: Path, dst: Path, quality: int = 95) -> Path:
    with Image.open(src) as im:
        im.save(dst, format="JPEG", quality=quality)
    return dst


def ingest_and_validate(source: Path, *overrides: str):
    params = load_params(overrides=[f"data.source={source}", *overrides])
    ingest(params.data)
    return params, validate(params.data, params.validate_, Path("data/manifest.csv"))


@pytest.fixture
def reencoded(image_folder: Path) -> Path:
    """Four images of each of dent and rust re-encoded at JPEG q95 beside their originals, as .jpg."""
    for label in ("dent", "rust"):
        for i in range(4):
            reencode(image_folder / label / f"img_{i}.png", image_folder / label / f"img_{i}_q95.jpg")
    return image_folder


def test_hashes_group_transitively_within_the_distance():
    a, b, c, far = "0" * 16, "0" * 15 + "7", "0" * 14 + "3f", "f" * 16  # a–b 3 bits, b–c 3, a–c 6
    assert near_duplicates.groups([a, far, b, c, ""], max_distance=3) == [[0, 2, 3]]
    assert near_duplicates.groups([a, far, b, c], max_distance=2) == []
    assert near_duplicates.distance(a, far) == 64


def test_reencodes_in_one_class_are_grouped_kept_with_a_warning_and_split_together(project, reencoded):
    params, result = ingest_and_validate(reencoded)

    groups = result.report["near_duplicates"]["groups"]
    assert [sorted(Path(p).name for p in g["paths"]) for g in groups] == [
        [f"img_{i}.png", f"img_{i}_q95.jpg"] for _ in ("dent", "rust") for i in range(4)
    ]
    assert all(g["max_distance"] <= 4 and g["dropped"] == [] for g in groups)
    assert result.dropped == [] and result.report["n_kept"] == 38
    assert any("near-duplicates within a class" in w and "img_0_q95.jpg" in w for w in result.warnings)
    docs = Path("reports/validation/expectations/manifest.html").read_text()
    assert "images/rust/img_3_q95.jpg" in docs and docs.count("data:image/png;base64,") == 16  # thumbnails

    split(params.data, params.split)
    parts = {n: manifest.read(f"data/splits/{n}.csv") for n in ("train", "val", "test")}
    where = {p: name for name, part in parts.items() for p in part["path"]}
    for g in groups:
        assert len({where[p] for p in g["paths"]}) == 1, f"group {g['paths']} straddles splits"
    assert find_leaks(parts, [g["paths"] for g in groups]) == []


def test_drop_policy_keeps_the_first_of_each_group(project, reencoded):
    _, result = ingest_and_validate(reencoded, "validate.near_duplicates=drop")
    assert sorted(result.dropped) == [
        f"images/{c}/img_{i}_q95.jpg" for c in ("dent", "rust") for i in range(4)
    ]
    assert result.report["per_class"] == {"dent": 10, "rust": 10, "scratch": 10}


def test_fail_policy_fails_naming_the_files(project, reencoded):
    with pytest.raises(ValidationFailed, match="near-duplicates within a class: 16 file") as failed:
        ingest_and_validate(reencoded, "validate.near_duplicates=fail")
    assert "images/dent/img_0_q95.jpg" in str(failed.value)


@pytest.mark.parametrize("policy", ["drop", "fail", "warn"])
def test_a_reencode_under_another_label_always_fails_naming_both(project, image_folder, policy):
    reencode(image_folder / "dent" / "img_3.png", image_folder / "rust" / "looks_like_dent.jpg")

    with pytest.raises(ValidationFailed, match="no near-duplicates under two labels") as failed:
        ingest_and_validate(image_folder, f"validate.near_duplicates={policy}")

    message = str(failed.value)
    assert "images/dent/img_3.png (label dent" in message
    assert "images/rust/looks_like_dent.jpg (label rust" in message


def test_unrelated_images_form_no_group(project, image_folder):
    _, result = ingest_and_validate(image_folder)
    assert result.report["near_duplicates"]["groups"] == [] and result.warnings == []


def test_a_group_is_split_as_one_unit_even_when_a_plain_split_would_part_it(project):
    table = pd.DataFrame(
        {"path": [f"images/{c}/{i}.png" for c in "ab" for i in range(20)], "label": ["a"] * 20 + ["b"] * 20}
    )
    cfg = load_params().split
    plain = assign(table, cfg)
    where = {p: n for n, part in plain.items() for p in part["path"]}
    parted = [p for p in table["path"] if where[p] != where[table["path"][0]]][:3]
    group = [table["path"][0], *parted]  # members a plain split puts in different splits
    assert len(parted) == 3

    grouped = assign(table, cfg, [group])
    assert len({n for n, part in grouped.items() for p in part["path"] if p in group}) == 1
    assert sum(len(p) for p in grouped.values()) == 40


def test_cli_prints_the_warning_and_passes(project, reencoded):
    write_params(project, repo_params(data={"source": str(reencoded)}))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest"]).exit_code == 0
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "warning: validate: no near-duplicates within a class" in " ".join(result.output.split())
