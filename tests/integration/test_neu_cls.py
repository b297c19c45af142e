"""The real NEU-CLS set (../shared/datasets/NEU-CLS): a subset through every step, and full validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from steelflow.config import load_params
from steelflow.data import manifest
from steelflow.steps.corrupt import corrupt
from steelflow.steps.ingest import ingest
from steelflow.steps.split import find_leaks, split
from steelflow.steps.validate import validate
from tests.support.helpers import NEU_CLS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not NEU_CLS.is_dir(), reason=f"NEU-CLS not found at {NEU_CLS}"),
]
PREFIXES = ["Cr", "In", "Pa", "PS", "RS", "Sc"]


@pytest.fixture
def neu_subset(tmp_path) -> Path:
    """12 images per class in the official flat layout, plus the known duplicate pair Pa_101 / Pa_105."""
    dest = tmp_path / "neu"
    dest.mkdir()
    for prefix in PREFIXES:
        for n in range(1, 13):
            shutil.copy2(NEU_CLS / f"{prefix}_{n}.bmp", dest)
    for name in ("Pa_101.bmp", "Pa_105.bmp"):
        shutil.copy2(NEU_CLS / name, dest)
    return dest


def test_subset_through_every_step(project, neu_subset):
    params = load_params(overrides=[f"data.source={neu_subset}"])
    result = ingest(params.data)
    assert result.layout == "neu-flat"
    assert result.per_class == {
        "crazing": 12,
        "inclusion": 12,
        "patches": 14,
        "pitted_surface": 12,
        "rolled-in_scale": 12,
        "scratches": 12,
    }
    table = manifest.read("data/manifest.csv")
    assert set(table["mode"]) == {"L"} and set(table["width"]) == {200}

    checked = validate(params.data, params.validate_, Path("data/manifest.csv"))
    assert checked.success and checked.dropped == ["images/patches/Pa_105.bmp"]

    split(params.data, params.split)
    parts = {n: manifest.read(f"data/splits/{n}.csv") for n in ("train", "val", "test")}
    assert find_leaks(parts) == []
    assert sum(map(len, parts.values())) == 6 * 12 + 1

    corrupt(params.data, params.corrupt)
    assert Path("reports/corruptions.png").stat().st_size > 10_000


def test_full_dataset_reports_exactly_the_known_duplicate_pair(project):
    params = load_params(overrides=[f"data.source={NEU_CLS}"])
    assert ingest(params.data).n_images == 1800
    checked = validate(params.data, params.validate_, Path("data/manifest.csv"))
    assert checked.success
    report = json.loads(Path("reports/validation.json").read_text())
    pairs = [
        sorted([Path(g["kept"]).name, *map(lambda p: Path(p).name, g["dropped"])])
        for g in report["duplicates"]
    ]
    assert pairs == [["Pa_101.bmp", "Pa_105.bmp"]]
    assert report["n_kept"] == 1799
    # Near-duplicates (kept with a warning by default): two re-shot defects, each inside its class.
    near = [sorted(Path(p).name for p in g["paths"]) for g in report["near_duplicates"]["groups"]]
    assert near == [["In_188.bmp", "In_210.bmp"], ["PS_171.bmp", "PS_292.bmp"]]
    assert report["shortcuts"]["checked"] and not report["shortcuts"]["found"]  # all 200×200 L BMPs
    assert report["manifest_sha256"] == manifest.sha256("data/manifest.csv")
