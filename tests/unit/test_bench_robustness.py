"""benchmarks/bench_robustness.py over seeds: each row's mean ± sd, and rows compared seed by seed."""

from __future__ import annotations

import importlib.util

import pytest

from tests.support.helpers import REPO

_spec = importlib.util.spec_from_file_location(
    "bench_robustness", REPO / "benchmarks" / "bench_robustness.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

HOLDOUT = ["jpeg_q10", "stripes_0.1"]


def _run(regime: str, seed: int, clean: float, alpha: float, stripes: float) -> dict:
    acc = {"original": clean, "luminance_1.0": alpha, "jpeg_q10": 0.9, "stripes_0.1": stripes}
    return {"regime": regime, "input_norm": "local", "seed": seed, "accuracy": acc, "seconds": 1.0}


RUNS = [
    _run("robust", 0, 0.98, 0.92, 0.80),
    _run("robust", 1, 0.97, 0.96, 0.84),
    _run("robust", 2, 0.99, 0.94, 0.82),
    # consistency: better on every seed, by 1, 3 and 2 points at α = 1
    _run("consistency", 0, 0.98, 0.93, 0.86),
    _run("consistency", 1, 0.98, 0.99, 0.85),
    _run("consistency", 2, 0.99, 0.96, 0.90),
]


def test_each_row_is_the_mean_and_sample_sd_over_its_seeds_with_per_run_aggregates():
    robust, consistency = bench.summarise(RUNS, HOLDOUT)
    assert (robust["regime"], robust["seeds"]) == ("robust", [0, 1, 2])
    assert robust["mean"]["luminance_1.0"] == pytest.approx(0.94)
    assert robust["sd"]["luminance_1.0"] == pytest.approx(0.02)  # n − 1
    # worst Table 1 and worst hold-out are taken per run, then averaged
    assert robust["values"]["table1_worst"] == pytest.approx([0.92, 0.96, 0.94])
    assert robust["values"]["holdout_worst"] == pytest.approx([0.80, 0.84, 0.82])
    assert consistency["mean"]["holdout_mean"] == pytest.approx((0.9 + (0.86 + 0.85 + 0.90) / 3) / 2)


def test_rows_are_compared_on_the_same_seeds_against_the_reference():
    summary = bench.summarise(RUNS, HOLDOUT)
    (row,) = bench.compare(summary, ("robust", "local"))
    assert row["regime"] == "consistency" and row["seeds"] == [0, 1, 2]
    alpha = row["columns"]["luminance_1.0"]
    assert alpha["mean_diff"] == pytest.approx(0.02) and alpha["sd_diff"] == pytest.approx(0.01)
    assert (alpha["wins"], alpha["losses"]) == (3, 0)
    assert alpha["t_p"] == pytest.approx(0.0741, abs=1e-3)  # t = 0.02 / (0.01 / √3) on 2 degrees of freedom
    assert alpha["sign_p"] == pytest.approx(0.25)  # 3 of 3: (1/2)^3 × 2
    clean = row["columns"]["original"]
    assert (clean["wins"], clean["losses"]) == (1, 0)  # two ties left out of the sign test


def test_a_row_with_fewer_than_two_common_seeds_is_not_compared():
    one_seed = [r for r in RUNS if r["seed"] == 0]
    summary = bench.summarise(one_seed, HOLDOUT)
    assert summary[0]["sd"]["original"] is None
    assert bench.compare(summary, ("robust", "local")) == []
    assert "| robust | local | 1 | 98.0 |" in bench.table(summary, HOLDOUT)
