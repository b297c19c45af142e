"""benchmarks/bench_tune.py: tuned values against the hand-set ones seed by seed, and on mCE against the
paper's clean-trained model."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from tests.support.helpers import REPO

_spec = importlib.util.spec_from_file_location("bench_tune", REPO / "benchmarks" / "bench_tune.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

PROFILE = yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())
LADDERS = PROFILE["corrupt"]["graded"]["families"]
TABLE1 = {"luminance", "noise", "blur"}  # the rest of the profile's ladders are hold-out families


def _graded(clean: float, table1: float, holdout: float, ladders: dict = LADDERS) -> dict:
    """A graded-errors file as `steelflow evaluate` writes it: the same error at every severity."""
    return {
        "format": 1,
        "model": {},
        "clean_error": clean,
        "ladders": ladders,
        "per_class": None,
        "families": {f: [table1 if f in TABLE1 else holdout] * 5 for f in ladders},
    }


def _result(tmp_path, ladders: dict = LADDERS):
    """A bench_robustness.py result: clean/none over two seeds (hold-out errors 0.4 and 0.6), and a robust
    row that must not be taken as the baseline."""
    rows = [
        {"regime": "clean", "input_norm": "none", "seed": s, "graded": _graded(0.01, 0.2, e, ladders)}
        for s, e in enumerate([0.4, 0.6])
    ]
    rows.append({"regime": "robust", "input_norm": "local", "seed": 0, "graded": _graded(0.02, 0.1, 0.1)})
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_each_training_gets_its_mce_against_the_baseline_rows_mean_over_its_seeds(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PROFILE))
    done = {
        "trial3-seed0": {"values": {"train.seed": 0}, "graded": _graded(0.02, 0.1, 0.25)},
        "defaults-seed0": {"values": {"train.seed": 0}, "graded": _graded(0.02, 0.2, 0.5)},
        "trial5-seed0": {"values": {"train.seed": 0}, "diverged": "loss nan at epoch 2"},
    }
    base = bench.add_mce(tmp_path, done, _result(tmp_path), "clean/none")
    assert base["row"] == "clean/none" and base["seeds"] == 2
    tuned, defaults = done["trial3-seed0"], done["defaults-seed0"]
    assert tuned["holdout_mce"] == pytest.approx(0.25 / 0.5)  # Σ errors / Σ the baseline's mean errors
    assert tuned["table1_mce"] == pytest.approx(0.1 / 0.2)
    assert defaults["holdout_mce"] == pytest.approx(1.0)  # as bad as the clean-trained model
    # relative: what the corruption costs over the clean error, against what it cost the baseline
    assert tuned["holdout_relative_mce"] == pytest.approx((0.25 - 0.02) / (0.5 - 0.01))
    assert "holdout_mce" not in done["trial5-seed0"]  # no model, no mCE


def test_a_baseline_measured_on_other_ladders_is_refused(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PROFILE))
    other = {**LADDERS, "jpeg": {"quality": [30, 20, 10, 7, 5]}}
    done = {"defaults-seed0": {"values": {"train.seed": 0}, "graded": _graded(0.02, 0.2, 0.5)}}
    with pytest.raises(SystemExit, match=r"robustness.json clean/none: measured on other ladders for ..jpeg"):
        bench.add_mce(tmp_path, done, _result(tmp_path, other), "clean/none")
    assert "holdout_mce" not in done["defaults-seed0"]


def test_groups_are_compared_seed_by_seed_on_the_seeds_both_trained():
    def row(seed: int, value: float | None, diverged: bool = False) -> dict:
        return {
            "values": {"train.seed": seed},
            "holdout_mce": value,
            **({"diverged": "x"} if diverged else {}),
        }

    tuned = [row(2, 0.5), row(0, 0.6), row(1, 0.9, diverged=True), row(3, 0.4)]
    defaults = [row(0, 0.8), row(1, 0.7), row(2, 0.9)]  # seed 3 only in tuned, seed 1 diverged there
    a, b = bench.same_seeds(tuned, defaults, "holdout_mce")
    assert a == [0.5, 0.6] and b == [0.9, 0.8]  # seed 2, then seed 0: in tuned's order, paired by seed
    test = bench.paired_test(a, b)
    assert test["mean_diff"] == pytest.approx(-0.3) and test["losses"] == 2 and test["seeds"] == 2
    assert bench.paired_test([0.5], [0.9]) is None  # one seed: nothing to test
