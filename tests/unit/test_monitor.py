"""`steelflow monitor`: a clean batch passes, a corrupted one is flagged by name with exit 15, clean batches
are flagged at the rate asked for, bad input stops it before anything is written. Images are the synthetic
steel surfaces (small); the model is a stub, its confidence a function of the image's brightness."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from steelflow.cli import app
from steelflow.data import corruptions, synthetic
from steelflow.errors import DataError, DriftDetected
from steelflow.monitor import drift, watch

SIZE = 48
FAST = ["--no-track", "--set", "monitor.calibration_batches=500"]


def _write(folder: Path, first: int, count: int, corrupt=None) -> Path:
    """``count`` synthetic images, seeds from ``first`` on, classes in turn; ``corrupt(img, rng)`` applied."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + count):
        rng = np.random.default_rng(i)
        img = synthetic.render(synthetic.CLASSES[i % len(synthetic.CLASSES)], rng, SIZE)
        Image.fromarray(corrupt(img, rng) if corrupt else img).save(folder / f"img_{i}.png")
    return folder


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["monitor", *args, *FAST])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def reference(project: Path) -> Path:
    """120 known-good images measured into monitor.reference (quality measures only)."""
    _write(project / "good", 0, 120)
    code, output = _cli("good", "--build-reference", "--no-model")
    assert code == 0, output
    return project / "reports" / "monitor_reference.json"


def test_a_clean_batch_from_the_references_distribution_passes_with_exit_0(reference):
    _write(Path("incoming"), 1000, 40)

    code, output = _cli("incoming", "--no-model")

    assert code == 0, output
    result = json.loads(Path("reports/monitor/drift.json").read_text())
    assert not result["drifted"] and result["images"] == 40 and result["reference_images"] == 120
    assert set(result["measures"]) == {"brightness", "sharpness", "entropy", "size", "mode"}
    assert "no drift in 40 images" in output
    assert "data:image/png;base64," in Path("reports/monitor/drift.html").read_text()


@pytest.mark.parametrize(
    ("corrupt", "measure"),
    [
        (lambda img, rng: corruptions.noise(img, 10.0, rng), "sharpness"),
        (lambda img, rng: corruptions.luminance(img, 1.0, rng), "entropy"),
        (lambda img, rng: corruptions.posterize(img, 2), "entropy"),
    ],
    ids=["noise_10dB", "luminance_1.0", "posterize_2bit"],
)
def test_a_strongly_corrupted_batch_is_flagged_naming_the_measure_with_the_drift_exit_code(
    reference, corrupt, measure
):
    _write(Path("incoming"), 1000, 40, corrupt)

    code, output = _cli("incoming", "--no-model")

    assert code == DriftDetected.exit_code == 15, output
    result = json.loads(Path("reports/monitor/drift.json").read_text())
    assert result["drifted"] and result["measures"][measure]["drifted"]
    flagged = [name for name, m in result["measures"].items() if m["drifted"]]
    assert f"drifted from the reference on {', '.join(flagged)}" in output


def test_a_batch_of_another_size_or_mode_is_flagged_on_that_measure(reference):
    folder = _write(Path("incoming"), 1000, 40)
    for path in list(folder.iterdir())[:10]:
        Image.open(path).convert("RGB").resize((64, 64)).save(path)

    code, _ = _cli("incoming", "--no-model")

    result = json.loads(Path("reports/monitor/drift.json").read_text())
    assert code == 15 and result["measures"]["size"]["drifted"] and result["measures"]["mode"]["drifted"]


def test_clean_batches_are_flagged_at_the_false_alarm_rate_asked_for_across_the_measures():
    """Clean batches of 30, drawn independently of a reference of 300 from the same distribution, five
    measures (two of them correlated, one constant, one a category): 16 references × 100 batches, since the
    rate is a promise over references (one reference's own sampling error moves its rate a little).
    Seeded: the count is fixed, and the tolerance (~3 sd) is about calibration, not luck."""
    rng = np.random.default_rng(7)

    def draw(n: int) -> dict[str, np.ndarray]:
        base = rng.normal(size=n)
        return {
            "brightness": 120 + 15 * base,
            "entropy": 6 + 0.3 * base + 0.1 * rng.normal(size=n),  # correlated with brightness
            "sharpness": rng.gamma(2.0, 0.5, size=n),
            "size": np.full(n, 200.0),
            "mode": np.where(rng.random(n) < 0.9, "L", "RGB"),
        }

    flagged, tails = [], []
    for seed in range(16):
        reference = draw(300)
        calibration = drift.calibrate(reference, 30, 0.05, batches=1000, seed=seed)
        tails.append(calibration.tail)
        flagged += [any(v.drifted for v in drift.judge(draw(30), reference, calibration)) for _ in range(100)]
    assert abs(np.mean(flagged) - 0.05) < 0.02, np.mean(flagged)
    assert min(tails) > 0.05 / 5 and max(tails) <= 0.05  # between Bonferroni and no correction


def test_a_batch_larger_than_half_the_reference_is_refused():
    with pytest.raises(DataError, match="a batch of 61 images needs a reference of at least 122"):
        drift.calibrate({"brightness": np.arange(120.0)}, 61, 0.05, batches=200, seed=0)


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: None, "missing: no such file or folder"),
        (lambda: Path("missing").mkdir(), "no images"),
        (
            lambda: (_write(Path("missing"), 1000, 5) / "img_1002.png").write_bytes(b"not a png"),
            "img_1002.png",
        ),
        (lambda: Path("missing").write_text("a file"), "missing: not a folder"),
    ],
    ids=["no_folder", "empty_folder", "undecodable_file", "a_file"],
)
def test_bad_input_is_one_line_naming_it_and_writes_no_report(reference, make, named):
    make()

    code, output = _cli("missing", "--no-model")

    assert code == DataError.exit_code, output
    assert named in output and "Traceback" not in output
    assert not Path("reports/monitor").exists()


def test_a_missing_reference_says_how_to_write_it(project):
    _write(Path("incoming"), 1000, 5)

    code, output = _cli("incoming", "--no-model")

    assert code == DataError.exit_code
    assert (
        "reports/monitor_reference.json not found: write it once with `steelflow monitor --build-reference`"
        in output
    )


class _StubModel:
    """Not a network: a stand-in for the registered pyfunc, as `steelflow predict` loads it, whose answer's
    confidence falls as the image darkens (p = sigmoid((mean − 60) / 15) for one of two classes)."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        means = np.array([np.asarray(Image.open(io.BytesIO(b)).convert("L")).mean() for b in frame["image"]])
        p = 1 / (1 + np.exp(-(means - 60) / 15))
        return pd.DataFrame({"label": "a", "p_a": p, "p_b": 1 - p})


@pytest.fixture
def stub_model(monkeypatch):
    identity = {"uri": "models:/steel-defect-classifier@champion", "name": "steel-defect-classifier"}
    version = {"now": "3"}
    monkeypatch.setattr(watch, "_load_model", lambda params, uri: _StubModel())
    monkeypatch.setattr(watch, "model_identity", lambda params, uri: {**identity, "version": version["now"]})
    return version


def test_the_models_confidence_is_measured_and_a_darker_batch_lowers_it(project, stub_model):
    _write(project / "good", 0, 120)
    assert _cli("good", "--build-reference")[0] == 0
    _write(Path("incoming"), 1000, 40, lambda img, rng: (img * 0.6).astype(np.uint8))

    code, output = _cli("incoming", "--set", "monitor.measures=[confidence]")

    assert code == 15, output
    result = json.loads(Path("reports/monitor/drift.json").read_text())
    assert result["model"]["version"] == "3" and result["confidence"] == "max_softmax"
    confidence = result["measures"]["confidence"]
    assert confidence["drifted"] and confidence["batch_median"] < confidence["reference_median"]


def test_a_reference_from_another_model_version_must_be_rebuilt(project, stub_model):
    _write(project / "good", 0, 120)
    assert _cli("good", "--build-reference")[0] == 0
    stub_model["now"] = "4"  # a new champion
    _write(Path("incoming"), 1000, 10)

    code, output = _cli("incoming")

    assert code == DataError.exit_code
    assert (
        "holds the confidences of steel-defect-classifier version 3, not of steel-defect-classifier version 4"
        in output
    )
