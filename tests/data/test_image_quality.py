"""Image-quality flags: very dark, very bright, blurry, low-information and odd-size images are counted with
examples in the report — warnings by default, failures with ``validate.quality.action: fail``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import ndimage

from steelflow.config import load_params
from steelflow.data import quality
from steelflow.errors import ValidationFailed
from steelflow.steps.ingest import ingest
from steelflow.steps.validate import validate


def noise(seed: int, size: tuple[int, int] = (40, 40)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, size[::-1], dtype=np.uint8))


def smooth(seed: int, sigma: float) -> np.ndarray:
    """Noise blurred in floating point, then stretched to 0..255: full contrast, no fine detail."""
    x = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(40, 40)), sigma)
    return np.rint((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)


@pytest.fixture
def flawed(image_folder: Path) -> Path:
    """The clean set plus one image of each flaw, in the dent class (seeds apart from the clean set's)."""
    dent = image_folder / "dent"
    Image.fromarray(np.asarray(noise(1001)) // 20).save(dent / "dark.png")  # mean ~6
    Image.fromarray(255 - np.asarray(noise(1002)) // 30).save(dent / "bright.png")  # mean ~251
    Image.fromarray(smooth(1003, sigma=4)).save(dent / "blurry.png")
    Image.new("L", (40, 40), 128).save(dent / "blank.png")
    noise(1004, size=(200, 40)).save(dent / "wide.png")
    return image_folder


def run(source: Path, *overrides: str):
    params = load_params(overrides=[f"data.source={source}", *overrides])
    ingest(params.data)
    return validate(params.data, params.validate_, Path("data/manifest.csv"))


def test_each_flaw_is_counted_with_its_file_and_only_warns(project, flawed):
    result = run(flawed)

    flags = result.report["quality"]
    assert {name: (f["count"], f["examples"]) for name, f in flags.items()} == {
        "dark": (1, ["images/dent/dark.png"]),
        "bright": (1, ["images/dent/bright.png"]),
        "blurry": (
            2,
            ["images/dent/blank.png", "images/dent/blurry.png"],
        ),  # a blank image has no detail either
        "low_information": (1, ["images/dent/blank.png"]),
        "odd_size": (1, ["images/dent/wide.png"]),
    }
    assert flags["dark"]["rule"] == "not dark: brightness ≥ 20"
    assert result.success and len(result.warnings) == 5
    assert any(w.startswith("not odd-sized") and "wide.png (size_ratio 5" in w for w in result.warnings)


def test_fail_action_turns_the_flags_into_failures(project, flawed):
    with pytest.raises(ValidationFailed, match=r"5 expectation\(s\) failed") as failed:
        run(flawed, "validate.quality.action=fail")
    assert "images/dent/dark.png (brightness" in str(failed.value)


def test_thresholds_come_from_params(project, flawed):
    result = run(flawed, "validate.quality.dark=0", "validate.quality.odd_size=6")
    assert result.report["quality"]["dark"]["count"] == 0
    assert result.report["quality"]["odd_size"]["count"] == 0


def test_clean_images_raise_no_flag(project, image_folder):
    result = run(image_folder)
    assert all(f["count"] == 0 for f in result.report["quality"].values()) and result.warnings == []


def test_measures_do_not_depend_on_resolution():
    small = noise(5, (100, 100)).filter(ImageFilter.GaussianBlur(1))
    large = small.resize((1000, 1000), Image.Resampling.BICUBIC)
    a, b = quality.measure(np.asarray(small)), quality.measure(np.asarray(large))
    assert b["brightness"] == pytest.approx(a["brightness"], abs=2)
    assert b["entropy"] == pytest.approx(a["entropy"], abs=0.5)
