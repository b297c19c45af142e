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


def _graded(clean_error: float, luminance: list[float], stripes: list[float]) -> dict:
    return {"clean_error": clean_error, "families": {"luminance": luminance, "stripes": stripes}}


def test_every_runs_mce_is_against_the_clean_rows_mean_errors_over_its_seeds(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "profiles" / "paper.yaml").read_text())
    clean = [
        {**_run("clean", s, 0.9, 0.5, 0.5), "input_norm": "none", "graded": _graded(0.1, lum, [0.4] * 2)}
        for s, lum in enumerate([[0.2, 0.4], [0.4, 0.6]])  # mean errors: luminance 0.3, 0.5; stripes 0.4
    ]
    robust = [
        {**_run("robust", s, 0.95, 0.9, 0.8), "graded": _graded(0.05, [0.1, 0.3], stripes)}
        for s, stripes in enumerate([[0.2, 0.2], [0.4, 0.4]])
    ]
    assert bench.add_mce(tmp_path, clean + robust, "clean/none") == "clean/none"
    first, second = (r["mce"] for r in robust)
    assert first["table1_mce"] == pytest.approx(0.4 / 0.8)  # Σ errors / Σ the baseline's
    assert first["holdout_mce"] == pytest.approx(0.4 / 0.8)  # stripes is a hold-out family in the profile
    assert second["holdout_mce"] == pytest.approx(1.0)  # as bad as the clean-trained model
    assert first["mce"] == pytest.approx(0.5) and second["mce"] == pytest.approx(0.75)
    # relative: what the corruption costs against the clean error, over what it cost the baseline
    assert first["table1_relative_mce"] == pytest.approx((0.05 + 0.25) / (0.2 + 0.4))
    robust_row = bench.summarise(clean + robust, HOLDOUT)[1]
    assert robust_row["mce"]["mce"]["mean"] == pytest.approx(0.625)
    assert robust_row["graded_error"]["stripes"] == pytest.approx([0.3, 0.3])  # mean over seeds, per severity
    assert "| robust | local | 2 | 62.5 ± 17.7 |" in bench.mce_table(bench.summarise(robust, HOLDOUT), "x")


def test_without_a_clean_row_or_graded_ladders_there_is_no_mce(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "profiles" / "paper.yaml").read_text())
    robust = [{**r, "graded": _graded(0.05, [0.1, 0.3], [0.2, 0.2])} for r in RUNS[:3]]
    assert bench.add_mce(tmp_path, robust, "clean/none") is None
    assert all("mce" not in r for r in robust)


def test_mce_can_take_its_baseline_from_an_earlier_results_runs_on_the_same_ladders(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "profiles" / "paper.yaml").read_text())
    ladders = bench.yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())["corrupt"]["graded"]

    def graded(error: float, on: dict = ladders["families"]) -> dict:
        families = {f: [error] * 5 for f in on}
        return {"format": 1, "clean_error": 0.01, "ladders": on, "per_class": None, "families": families}

    earlier = tmp_path / "earlier.json"
    clean = [
        {**_run("clean", s, 0.9, 0.5, 0.5), "input_norm": "none", "graded": graded(e)}
        for s, e in enumerate([0.3, 0.5])
    ]  # mean error 0.4 on every family
    earlier.write_text(bench.json.dumps({"rows": clean}))
    robust = [{**_run("robust", 0, 0.95, 0.9, 0.8), "graded": graded(0.1)}]
    assert bench.add_mce(tmp_path, robust, "clean/none", earlier) == "clean/none (earlier.json)"
    assert robust[0]["mce"]["mce"] == pytest.approx(0.1 / 0.4)
    assert robust[0]["mce"]["holdout_mce"] == pytest.approx(0.1 / 0.4)

    other = {**ladders["families"], "jpeg": {"quality": [30, 20, 10, 7, 5]}}
    earlier.write_text(bench.json.dumps({"rows": [{**clean[0], "graded": graded(0.4, other)}]}))
    with pytest.raises(SystemExit, match=r"earlier.json clean/none: measured on other ladders for ..jpeg"):
        bench.add_mce(tmp_path, robust, "clean/none", earlier)
    with pytest.raises(SystemExit, match="earlier.json: no graded run of clean/standardize"):
        bench.add_mce(tmp_path, robust, "clean/standardize", earlier)
