"""Corrupt: every test image under every condition, cached, with the example grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from steelflow.config import load_params
from steelflow.data import cache, manifest
from steelflow.errors import DataError
from steelflow.steps.corrupt import corrupt
from steelflow.steps.ingest import ingest
from steelflow.steps.split import split
from tests.support.helpers import mark_validated


@pytest.fixture
def split_done(project):
    params = load_params()
    ingest(params.data)
    mark_validated()
    split(params.data, params.split)
    return params


def test_every_test_image_under_every_condition(split_done):
    result = corrupt(split_done.data, split_done.corrupt)
    test = manifest.read("data/splits/test.csv")
    # the Table 1 six, the hold-out ones, then each graded family at five severities
    names = [c.name for c in split_done.corrupt.all_conditions] + split_done.corrupt.graded_names
    assert split_done.corrupt.holdout and result.conditions == names and result.n_images == len(test)
    index = pd.read_csv("data/corrupted/index.csv")
    assert len(index) == len(test) * len(names)
    assert sorted(set(index["condition"])) == sorted(names)
    for _, row in index.iterrows():
        assert (Path("data/corrupted") / row["path"]).is_file()
    for name in names:
        cached = cache.load(cache.condition_path("data/cache", name))
        assert cached.images.shape[0] == len(test)
        assert cached.sha256.tolist() == test["sha256"].tolist()
        assert cached.classes == cache.load(cache.split_path("data/cache", "test")).classes


def test_the_graded_block_writes_five_sets_per_family_named_by_severity(split_done):
    graded = split_done.corrupt.graded
    assert graded.severities == 5 and len(graded.families) >= 2  # SMALL keeps two of params.yaml's ten
    two_each = split_done.corrupt.model_copy(update={"graded": graded.model_copy(update={"per_class": 2})})
    corrupt(split_done.data, two_each)
    test = manifest.read("data/splits/test.csv")
    first_two = test.groupby("label", sort=False).head(2)  # per_class: the first of each class
    index = pd.read_csv("data/corrupted/index.csv")
    for family in graded.families:
        folders = sorted(p.name for p in Path("data/cache/corrupted").glob(f"{family}_s*"))
        assert folders == [f"{family}_s{s}" for s in range(1, 6)], family
        for name in folders:
            cached = cache.load(cache.condition_path("data/cache", name))
            assert sorted(cached.sha256.tolist()) == sorted(first_two["sha256"]), name
            assert sorted(index[index["condition"] == name]["sha256"]) == sorted(first_two["sha256"])
    table1 = split_done.corrupt.conditions[0].name  # the single-level sets keep the whole split
    assert len(cache.load(cache.condition_path("data/cache", table1)).labels) == len(test)
    grid = Image.open("reports/corruptions.png")  # the grid keeps to the single-level conditions
    n_cols, n_rows = 1 + len(split_done.corrupt.all_conditions), 6 * split_done.corrupt.grid_per_class
    assert grid.width / grid.height == pytest.approx(n_cols / n_rows, rel=0.3)


def test_corrupted_images_differ_from_the_originals_and_keep_size(split_done):
    corrupt(split_done.data, split_done.corrupt)
    test = manifest.read("data/splits/test.csv")
    row = test.iloc[0]
    original = np.asarray(Image.open(Path("data") / row["path"]))
    for c in split_done.corrupt.all_conditions:
        out = np.asarray(
            Image.open(Path("data/corrupted") / c.name / row["label"] / (Path(row["path"]).stem + ".png"))
        )
        assert out.shape == original.shape
        assert not np.array_equal(out, original), c.name


@pytest.mark.slow
def test_reruns_are_byte_identical_and_grid_is_drawn(split_done):
    corrupt(split_done.data, split_done.corrupt)
    first = {p: p.read_bytes() for p in Path("data/corrupted").rglob("*.png")}
    corrupt(split_done.data, split_done.corrupt)
    assert {p: p.read_bytes() for p in Path("data/corrupted").rglob("*.png")} == first
    grid = Image.open("reports/corruptions.png")
    n_cols, n_rows = 1 + len(split_done.corrupt.all_conditions), 6 * split_done.corrupt.grid_per_class
    assert grid.width / grid.height == pytest.approx(n_cols / n_rows, rel=0.3)  # one square cell per example


def test_user_defined_condition_list(project):
    params = load_params(
        overrides=[
            "corrupt.conditions=[{name: dim, kind: luminance, alpha: 0.2},"
            " {name: shake, kind: blur, length: 3}]",
            "corrupt.holdout=[{name: fog, kind: jpeg, quality: 20}]",
            "corrupt.graded=null",
        ]
    )
    ingest(params.data)
    mark_validated()
    split(params.data, params.split)
    corrupt(params.data, params.corrupt)
    assert sorted(p.name for p in Path("data/corrupted").iterdir() if p.is_dir()) == ["dim", "fog", "shake"]


def test_an_image_replaced_after_split_is_refused_naming_it(split_done):
    first = manifest.read("data/splits/test.csv").iloc[0]
    Image.new("L", (64, 64), 0).save(Path("data") / first["path"])
    with pytest.raises(DataError, match=f"{first['path']} changed since it was validated"):
        corrupt(split_done.data, split_done.corrupt)
    assert not Path("data/corrupted").exists()
