"""Split: stratified, seeded, leak-free, and cached for training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from steelflow import paths
from steelflow.cli import app
from steelflow.config import load_params
from steelflow.data import cache, manifest
from steelflow.errors import DataError
from steelflow.steps.ingest import ingest
from steelflow.steps.split import STEP as SPLIT_STEP
from steelflow.steps.split import find_leaks, split
from steelflow.steps.validate import validate
from tests.support.helpers import REPO, mark_validated


def _passed_validation(dropped: list[str] | None = None) -> None:
    mark_validated(dropped)


@pytest.fixture
def ingested(project):
    params = load_params()
    ingest(params.data)
    _passed_validation()
    return params


def _read(name: str) -> pd.DataFrame:
    return manifest.read(f"data/splits/{name}.csv")


def test_split_is_stratified_and_matches_the_ratios(ingested):
    split(ingested.data, ingested.split)
    parts = {n: _read(n) for n in ("train", "val", "test")}
    per_class = ingested.data.synthetic.per_class
    for name, part in parts.items():
        counts = part["label"].value_counts()
        assert len(counts) == 6 and counts.max() - counts.min() <= 1, (name, counts)
    assert sum(len(p) for p in parts.values()) == 6 * per_class
    assert len(parts["test"]) == pytest.approx(0.3 * 6 * per_class, abs=6)
    report = json.loads(Path("reports/split.json").read_text())
    assert report["counts"]["test"] == parts["test"]["label"].value_counts().sort_index().to_dict()


def test_same_seed_same_files_other_seed_other_files(ingested):
    split(ingested.data, ingested.split)
    first = Path("data/splits/test.csv").read_bytes()
    split(ingested.data, ingested.split)
    assert Path("data/splits/test.csv").read_bytes() == first
    other = ingested.split.model_copy(update={"seed": ingested.split.seed + 1})
    split(ingested.data, other)
    assert Path("data/splits/test.csv").read_bytes() != first


def test_cache_holds_each_split_decoded_at_cache_size(ingested):
    split(ingested.data, ingested.split)
    for name in ("train", "val", "test"):
        cached = cache.load(cache.split_path("data/cache", name))
        rows = _read(name)
        size = ingested.data.cache_size
        assert cached.images.shape == (len(rows), size, size, 1) and cached.images.dtype == np.uint8
        # every row once, with its label, in a shuffled order (not the CSV's class-by-class one)
        label_of = dict(zip(rows["sha256"], rows["label"], strict=True))
        assert sorted(cached.sha256.tolist()) == sorted(rows["sha256"].tolist())
        assert [cached.classes[i] for i in cached.labels] == [label_of[h] for h in cached.sha256]
        assert cached.sha256.tolist() != rows["sha256"].tolist() or len(rows) < 3
    assert sorted(p.name for p in Path("data/cache/splits").iterdir()) == ["test", "train", "val"]


def test_split_writes_several_shards_per_split_with_a_small_shard_size(project):
    """`steelflow split --set data.shard_size=3`: each split a shard set of ⌈n/3⌉ shards, and what DVC
    tracks (the split stage's outs) is the folder of those shard sets."""
    ingest(load_params().data)
    _passed_validation()
    result = CliRunner().invoke(app, ["split", "--set", "data.shard_size=3"])
    assert result.exit_code == 0, result.output
    for name in ("train", "val", "test"):
        folder = Path("data/cache/splits") / name
        opened = cache.open(folder)
        n = len(_read(name))
        assert len(opened) == n and len(opened.counts) >= 3
        assert opened.counts == [3] * (n // 3) + ([n % 3] if n % 3 else [])
        assert sorted(p.name for p in folder.glob("shard-*.tar")) == [
            f"shard-{i:06d}.tar" for i in range(len(opened.counts))
        ]
        opened.verify()
    stage = yaml.safe_load(Path(REPO / "dvc.yaml").read_text())["stages"]["split"]
    assert "data.shard_size" in stage["params"] and paths.CACHE_SPLITS.as_posix() in stage["outs"]
    assert paths.CACHE_SPLITS in SPLIT_STEP.outs and SPLIT_STEP.params.count("data.shard_size") == 1


def test_dropped_duplicates_are_left_out(ingested):
    dropped = manifest.read("data/manifest.csv")["path"].iloc[:3].tolist()
    _passed_validation(dropped)
    split(ingested.data, ingested.split)
    used = pd.concat(_read(n) for n in ("train", "val", "test"))["path"]
    assert not set(dropped) & set(used)


def test_refuses_to_split_data_that_failed_validation(ingested):
    Path("reports/validation.json").write_text(json.dumps({"success": False}))
    with pytest.raises(DataError, match="validation failed"):
        split(ingested.data, ingested.split)
    assert not Path("data/splits").exists()


def test_leak_check_names_the_sha_and_files():
    a = pd.DataFrame({"path": ["images/x/1.png"], "sha256": ["ab" * 32]})
    b = pd.DataFrame({"path": ["images/y/2.png"], "sha256": ["ab" * 32]})
    c = pd.DataFrame({"path": ["images/x/3.png"], "sha256": ["cd" * 32]})
    leaks = find_leaks({"train": a, "val": c, "test": b})
    assert len(leaks) == 1 and "images/x/1.png" in leaks[0] and "images/y/2.png" in leaks[0]
    assert find_leaks({"train": a, "test": c}) == []


def test_refuses_a_manifest_ingested_after_validation_naming_both_hashes(project, image_folder):
    """validate (pass) → ingest of other data → split must not split data that never passed validation."""
    params = load_params(overrides=[f"data.source={image_folder}"])
    ingest(params.data)
    validate(params.data, params.validate_, Path("data/manifest.csv"))
    validated = manifest.sha256("data/manifest.csv")
    (image_folder / "rust" / "img_0.png").unlink()
    ingest(params.data)
    current = manifest.sha256("data/manifest.csv")

    with pytest.raises(DataError, match="is not the manifest that passed validation") as refused:
        split(params.data, params.split)

    assert validated in str(refused.value) and current in str(refused.value) and validated != current
    assert not Path("data/splits").exists() and not Path("data/cache").exists()


def test_refuses_a_report_without_a_manifest_hash(ingested):
    Path("reports/validation.json").write_text(json.dumps({"success": True, "dropped": []}))
    with pytest.raises(DataError, match="records no manifest hash"):
        split(ingested.data, ingested.split)
