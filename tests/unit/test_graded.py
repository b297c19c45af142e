"""Graded corruptions: ladders that grow harder with severity, and mCE as ImageNet-C defines it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from steelflow import mce
from steelflow.config import load_params
from steelflow.data import corruptions, synthetic
from steelflow.errors import ConfigError, DataError
from steelflow.gates import check_gates
from steelflow.reports import graded_lines
from tests.support.helpers import REPO

PARAMS = load_params(REPO / "params.yaml")
GRADED = PARAMS.corrupt.graded


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")


def _textures(n: int = 6, size: int = 96) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    classes = list(synthetic.CLASSES)
    return [synthetic.render(classes[i % len(classes)], rng, size) for i in range(n)]


@pytest.mark.parametrize("family", list(GRADED.families))
def test_each_severity_of_params_ladders_is_a_stronger_corruption(family):
    """Mean PSNR against the clean image falls strictly from severity 1 to 5, for every family."""
    images = _textures()
    psnr = []
    for condition in GRADED.conditions(family):
        psnr.append(
            np.mean(
                [
                    _psnr(
                        img,
                        corruptions.apply(
                            img, condition, corruptions.rng_for(0, f"{i:064x}", condition.name)
                        ),
                    )
                    for i, img in enumerate(images)
                ]
            )
        )
    assert all(a > b for a, b in zip(psnr, psnr[1:], strict=False)), (family, psnr)


def test_table_1_ladders_hold_the_papers_levels_and_hold_out_ladders_keep_todays_at_severity_3():
    for condition in PARAMS.corrupt.conditions:
        field, levels = GRADED.ladder(condition.kind)
        assert getattr(condition, field) in levels, condition.name
    for condition in PARAMS.corrupt.holdout:
        field, levels = GRADED.ladder(condition.kind)
        assert levels[2] == getattr(condition, field), condition.name


@pytest.mark.parametrize(
    ("ladder", "message"),
    [
        ("{snr_db: [40, 35, 35, 20, 12]}", "families.noise.snr_db: .* not strictly monotone"),
        ("{snr_db: [40, 30, 20]}", "3 levels, corrupt.graded.severities is 5"),
        ("{sigma: [1, 2, 3, 4, 5]}", "'sigma' is not a parameter of it"),
        ("{snr_db: [150, 35, 30, 20, 10]}", "severity 1 = 150"),
    ],
)
def test_a_bad_ladder_is_refused_naming_the_family(ladder, message):
    with pytest.raises(ConfigError, match=message):
        load_params(REPO / "params.yaml", overrides=[f"corrupt.graded.families.noise={ladder}"])


def test_an_unknown_family_is_refused_naming_the_kinds():
    with pytest.raises(ConfigError, match="families.fog: unknown corruption kind"):
        load_params(REPO / "params.yaml", overrides=["corrupt.graded.families.fog={alpha: [1, 2, 3, 4, 5]}"])


# --- mCE --------------------------------------------------------------------------------------------

# Two families, three severities. Model: clean error 0.1; baseline: clean error 0.2.
ACC = {"noise": [0.8, 0.7, 0.6], "jpeg": [0.9, 0.9, 0.6]}  # errors 0.2 0.3 0.4 | 0.1 0.1 0.4
BASELINE = {
    "format": 1,
    "model": {"variant": "casinet", "training": "clean-trained"},
    "clean_error": 0.2,
    "ladders": {"noise": {"snr_db": [30, 20, 10]}, "jpeg": {"quality": [20, 10, 5]}},
    "families": {"noise": [0.4, 0.6, 0.8], "jpeg": [0.2, 0.4, 0.6]},
}
GROUPS = {"noise": "table1", "jpeg": "holdout"}


def test_ce_mce_and_relative_mce_match_a_hand_computed_example():
    out = mce.graded_summary(ACC, 0.9, GROUPS, BASELINE)
    noise, jpeg = out["families"]["noise"], out["families"]["jpeg"]
    assert noise["ce"] == pytest.approx(0.9 / 1.8)  # (0.2+0.3+0.4) / (0.4+0.6+0.8)
    assert jpeg["ce"] == pytest.approx(0.6 / 1.2)  # (0.1+0.1+0.4) / (0.2+0.4+0.6)
    assert noise["relative_ce"] == pytest.approx((0.1 + 0.2 + 0.3) / (0.2 + 0.4 + 0.6))  # 0.5
    assert jpeg["relative_ce"] == pytest.approx((0.0 + 0.0 + 0.3) / (0.0 + 0.2 + 0.4))  # 0.5
    assert out["mce"] == pytest.approx(0.5) and out["relative_mce"] == pytest.approx(0.5)
    assert out["table1_mce"] == pytest.approx(0.5) and out["holdout_mce"] == pytest.approx(0.5)
    half = mce.graded_summary({**ACC, "noise": [0.6, 0.4, 0.2]}, 0.9, GROUPS, BASELINE)
    assert half["families"]["noise"]["ce"] == pytest.approx(1.8 / 1.8)
    assert half["mce"] == pytest.approx((1.0 + 0.5) / 2)


def test_a_family_the_baseline_never_erred_on_has_no_ce_and_stays_out_of_the_mean():
    perfect = {**BASELINE, "families": {"noise": [0.0, 0.0, 0.0], "jpeg": [0.2, 0.4, 0.6]}}
    out = mce.graded_summary(ACC, 0.9, GROUPS, perfect)
    assert out["families"]["noise"]["ce"] is None and out["families"]["noise"]["relative_ce"] is None
    assert out["mce"] == pytest.approx(0.5)  # jpeg alone


def test_without_a_baseline_there_is_no_mce_only_the_mean_error_and_the_report_says_why():
    out = mce.graded_summary(ACC, 0.9, GROUPS)
    assert "mce" not in out and "relative_mce" not in out
    assert out["families"]["noise"]["mean_error"] == pytest.approx(0.3)
    assert out["mean_error"] == pytest.approx((0.3 + 0.2) / 2)
    text = "\n".join(graded_lines(out, None))
    assert "| noise | table1 | 80.0 | 70.0 | 60.0 | 0.300 |" in text
    assert "No mCE: it needs a baseline" in text and "CE |" not in text


def test_the_report_has_the_table_with_ce_and_the_mce_line():
    text = "\n".join(graded_lines(mce.graded_summary(ACC, 0.9, GROUPS, BASELINE), "results/base.json"))
    assert "| family | group | s1 | s2 | s3 | mean error | CE | relative CE |" in text
    assert "| jpeg | holdout | 90.0 | 90.0 | 60.0 | 0.200 | 0.500 | 0.500 |" in text
    assert "**mCE 0.500**, relative mCE 0.500" in text and "`results/base.json`" in text


def test_a_baseline_written_by_evaluate_reads_back_and_one_on_other_ladders_is_refused(tmp_path):
    summary = mce.graded_summary({"noise": [0.6, 0.4, 0.2], "jpeg": [0.8, 0.6, 0.4]}, 0.8, GROUPS)
    written = mce.errors_file(summary, BASELINE["ladders"], BASELINE["model"])
    path = tmp_path / "graded_errors.json"
    path.write_text(json.dumps(written))
    back = mce.read_baseline(path, BASELINE["ladders"])
    assert back["families"]["noise"] == pytest.approx([0.4, 0.6, 0.8])
    assert back["clean_error"] == pytest.approx(0.2)
    other = {**BASELINE["ladders"], "jpeg": {"quality": [30, 10, 5]}}
    with pytest.raises(DataError, match=r"other ladders for \['jpeg'\]"):
        mce.read_baseline(path, other)
    with pytest.raises(
        DataError, match="measured on all test images per class, corrupt.graded.per_class is 6"
    ):
        mce.read_baseline(path, BASELINE["ladders"], per_class=6)
    with pytest.raises(DataError, match="evaluate.mce_baseline .*missing.json: cannot read it"):
        mce.read_baseline(tmp_path / "missing.json", BASELINE["ladders"])


# --- the gate --------------------------------------------------------------------------------------

ACCURACY = {"original": 0.97, "luminance_1.0": 0.95, "jpeg_q10": 0.9}


def _gates(**changes):
    return PARAMS.registry.gates.model_copy(update=changes)


def test_the_mce_gate_is_off_by_default():
    assert PARAMS.registry.gates.max_mce is None
    assert not any(g.name.startswith("mCE") for g in check_gates(_gates(), ACCURACY, None, ["jpeg_q10"]))


@pytest.mark.parametrize(("value", "passed"), [(0.6, True), (0.8, True), (0.81, False)])
def test_the_mce_gate_passes_at_or_under_its_threshold(value, passed):
    gates = check_gates(_gates(max_mce=0.8), ACCURACY, None, ["jpeg_q10"], mce=value)
    gate = next(g for g in gates if g.name.startswith("mCE"))
    assert gate.value == value and gate.passed is passed and gate.rule == "≤"


def test_a_model_without_mce_cannot_pass_the_mce_gate_silently():
    with pytest.raises(DataError, match="max_mce is set but the model has no mCE"):
        check_gates(_gates(max_mce=0.8), ACCURACY, None, ["jpeg_q10"])


def test_the_mce_gate_needs_a_baseline_in_params():
    with pytest.raises(ConfigError, match="max_mce is set but mCE is not measured"):
        load_params(REPO / "params.yaml", overrides=["registry.gates.max_mce=0.8"])
