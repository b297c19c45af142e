"""benchmarks/compare_robustness.py: one row each of two results trained apart, compared seed by seed."""

from __future__ import annotations

import importlib.util

import pytest

from tests.support.helpers import REPO

_spec = importlib.util.spec_from_file_location(
    "compare_robustness", REPO / "benchmarks" / "compare_robustness.py"
)
cmp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cmp)
bench = cmp.bench

HOLDOUT = ["stripes_0.1"]


def _result(stripes: list[float], mce: list[float], baseline: str, seeds=(0, 1, 2)) -> dict:
    runs = [
        {
            "regime": "robust",
            "input_norm": "local",
            "seed": s,
            "accuracy": {"original": 0.98, "luminance_1.0": 0.9, "stripes_0.1": v},
            "mce": {"mce": m},
        }
        for s, v, m in zip(seeds, stripes, mce, strict=False)
    ]
    summary = bench.summarise(runs, HOLDOUT)
    return {
        "data": "NEU-CLS",
        "image_size": 64,
        "holdout": HOLDOUT,
        "mce_baseline": baseline,
        "summary": summary,
    }


def test_the_second_results_row_is_paired_with_the_firsts_on_their_common_seeds():
    a = _result([0.80, 0.84, 0.82], [1.0, 1.1, 1.2], "clean/none")
    b = _result([0.82, 0.87, 0.84, 0.99], [0.9, 1.0, 1.0, 0.1], "clean/none (a.json)", seeds=(0, 1, 2, 3))
    p = cmp.pair(a, b, "robust/local", "robust/local", ("a.json", "b.json"))
    assert p["seeds"] == [0, 1, 2]  # seed 3 ran in B only: left out
    stripes = p["columns"]["stripes_0.1"]
    assert stripes["mean_diff"] == pytest.approx(0.02 + 0.01 / 3)
    assert (stripes["wins"], stripes["losses"]) == (3, 0)
    # A's own clean/none is the runs B took with --mce-from a.json: the same baseline, so mCE is paired
    assert p["mce"]["mce"]["mean_diff"] == pytest.approx(-0.4 / 3)
    shown = cmp.table(p, a["summary"][0], b["summary"][0])
    assert "| stripes_0.1 | 82.0 ± 2.0 | 84.3 ± 2.5 | +2.3 ± 0.6 (3–0" in shown  # B's means: seeds 0–2 too
    assert "| mce | 110.0 ± 10.0 | 96.7 ± 5.8 | -13.3 ± 5.8 (0–3" in shown


def test_mce_against_another_baseline_is_left_out_and_the_table_says_so():
    a = _result([0.80, 0.84, 0.82], [1.0, 1.1, 1.2], "clean/none")
    b = _result([0.82, 0.87, 0.84], [0.9, 1.0, 1.0], "clean/local")
    p = cmp.pair(a, b, "robust/local", "robust/local", ("a.json", "b.json"))
    assert p["mce"] == {} and p["columns"]["stripes_0.1"]["wins"] == 3
    assert "no mCE" in cmp.table(p, a["summary"][0], b["summary"][0])


def test_results_that_measure_different_things_or_lack_the_row_are_refused_by_name():
    a = _result([0.80, 0.84, 0.82], [1.0, 1.1, 1.2], "clean/none")
    with pytest.raises(ValueError, match="'image_size': 64 against 128"):
        cmp.pair(a, {**a, "image_size": 128}, "robust/local", "robust/local")
    with pytest.raises(ValueError, match="result B has no row clean/none .it has: robust/local"):
        cmp.pair(a, a, "robust/local", "clean/none")
    with pytest.raises(ValueError, match="fewer than two seeds in common"):
        cmp.pair(a, _result([0.9], [1.0], "clean/none", seeds=(5,)), "robust/local", "robust/local")
