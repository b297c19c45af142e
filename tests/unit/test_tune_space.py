"""tune.space over robust training's strengths and the input stage: one end of a range by index, values
within bounds that validate, the hand-set ends as the baseline, bad keys named, best_params applied."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from steelflow import config
from steelflow.cli import app
from steelflow.config import (
    ConfigError,
    changed_values,
    check_search_space,
    load_params,
    with_overrides,
    with_tuned,
)
from steelflow.tuning.study import baseline_values
from steelflow.tuning.trial import suggest
from tests.support.helpers import REPO, repo_params, write_params

ROBUST_SPACE = {
    "train.robust.illumination.strength.1": {"kind": "float", "low": 0.8, "high": 2.0},
    "train.robust.noise.snr_db.0": {"kind": "float", "low": 4.0, "high": 20.0},
    "train.robust.gamma.p": {"kind": "float", "low": 0.0, "high": 1.0},
    "train.robust.consistency.weight": {"kind": "float", "low": 0.0, "high": 12.0},
    "model.input_norm": {"kind": "categorical", "choices": ["none", "local", "flatfield"]},
}


def _params(space: dict, objective: str = "robust") -> config.Params:
    tree = load_params(REPO / "params.yaml").raw()
    tree["tune"] |= {"objective": objective, "space": space}
    return config.parse_params(tree)


def test_a_robust_space_suggests_values_within_bounds_that_make_a_valid_train_config():
    params = _params(ROBUST_SPACE)
    check_search_space(params)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        trial = study.ask()
        values = {key: suggest(trial, key, spec) for key, spec in params.tune.space.items()}
        tuned = with_overrides(params, values)  # validates the whole tree again
        robust = tuned.train.robust
        assert 0.8 <= robust.illumination.strength[1] <= 2.0 and robust.illumination.strength[0] == 0.2
        assert 4.0 <= robust.noise.snr_db[0] <= 20.0 and robust.noise.snr_db[1] == 40.0
        assert robust.gamma.p == values["train.robust.gamma.p"]
        assert robust.consistency.weight == values["train.robust.consistency.weight"]
        assert tuned.model.input_norm == values["model.input_norm"]
        study.tell(trial, 0.5)


def test_the_baseline_runs_the_hand_set_end_of_each_range():
    inside, outside = baseline_values(_params(ROBUST_SPACE), _params(ROBUST_SPACE).tune)
    assert not outside
    assert inside["train.robust.illumination.strength.1"] == 1.3  # params.yaml's [0.2, 1.3]
    assert inside["train.robust.noise.snr_db.0"] == 12.0  # params.yaml's [12, 40]
    assert inside["model.input_norm"] == "local"


@pytest.mark.parametrize(
    ("key", "entry", "message"),
    [
        (
            "train.robust.ilumination.strength.1",
            {"kind": "float", "low": 0.8, "high": 2.0},
            "unknown key 'train.robust.ilumination' (allowed: enabled, overlay, illumination",
        ),
        (
            "train.robust.illumination.strength",
            {"kind": "float", "low": 0.8, "high": 2.0},
            "holds a list ([0.2, 1.3]); search one item of it by index",
        ),
        (
            "train.robust.illumination.strength.2",
            {"kind": "float", "low": 0.8, "high": 2.0},
            "unknown key 'train.robust.illumination.strength.2' (a list of 2: index 0..1)",
        ),
        (
            "train.robust.illumination.strength.1",
            {"kind": "float", "low": 0.1, "high": 2.0},  # below the hand-set low end, 0.2
            "0.1 is not a valid value for train.robust.illumination.strength.1",
        ),
        ("train.robust.consistency.weight", {"kind": "float", "low": 0, "high": 200}, "less than or equal"),
    ],
)
def test_a_bad_robust_search_key_or_range_is_named(key, entry, message):
    with pytest.raises(ConfigError) as e:
        check_search_space(_params({key: entry}))
    assert f"'tune.space.{key}'" in str(e.value) and message in str(e.value)


def test_both_ends_of_a_range_may_be_searched_but_not_so_that_they_cross():
    ends = {
        "train.robust.noise.snr_db.0": {"kind": "float", "low": 4.0, "high": 20.0},
        "train.robust.noise.snr_db.1": {"kind": "float", "low": 25.0, "high": 45.0},
    }
    check_search_space(_params(ends))
    ends["train.robust.noise.snr_db.0"]["high"] = 30.0
    with pytest.raises(ConfigError, match=r"'tune\.space\.train\.robust\.noise\.snr_db\.0' reaches 30"):
        check_search_space(_params(ends))


def test_robust_strengths_are_not_searched_on_clean_accuracy_alone():
    with pytest.raises(
        ConfigError, match=r"'tune\.space\.train\.robust\.gamma\.p': tune\.objective accuracy"
    ):
        check_search_space(
            _params({"train.robust.gamma.p": ROBUST_SPACE["train.robust.gamma.p"]}, "accuracy")
        )
    check_search_space(_params(ROBUST_SPACE, "pareto"))


def test_best_params_with_robust_keys_are_applied_when_use_tuned_is_on(tmp_path):
    best = tmp_path / "best_params.yaml"
    chosen = {
        "train.robust.illumination.strength.1": 1.7,
        "train.robust.noise.snr_db.0": 8.0,
        "train.robust.consistency.weight": 6.0,
        "model.input_norm": "none",
    }
    best.write_text(yaml.safe_dump({"params": chosen}))
    off = load_params(REPO / "params.yaml")
    assert with_tuned(off, best) is off  # train.use_tuned false: params.yaml as it is
    tuned = with_tuned(load_params(REPO / "params.yaml", ["train.use_tuned=true"]), best)
    assert tuned.train.robust.illumination.strength == (0.2, 1.7)
    assert tuned.train.robust.noise.snr_db == (8.0, 40.0)
    assert tuned.train.robust.consistency.weight == 6.0 and tuned.model.input_norm == "none"
    changed = changed_values(load_params(REPO / "params.yaml", ["train.use_tuned=true"]), tuned)
    keys = [line.split(":")[0] for line in changed]
    assert sorted(keys) == sorted(
        ["train.robust.illumination.strength", "train.robust.noise.snr_db", "train.robust.consistency.weight"]
        + (["model.input_norm"] if off.model.input_norm != "none" else [])
    )
    assert any(line.endswith("→ 'none'") for line in changed) == (off.model.input_norm != "none")


@pytest.mark.slow
def test_a_robust_study_searches_range_ends_and_train_applies_its_pick(project):
    """For real: two 1-epoch trials on the tiny synthetic profile, robust objective, a range end, the
    consistency weight and the input stage searched; the picked values reach `steelflow train`."""
    space = {
        "train.robust.illumination.strength.1": {"kind": "float", "low": 0.8, "high": 2.0},
        "train.robust.consistency.weight": {"kind": "float", "low": 0.0, "high": 12.0},
        "model.input_norm": {"kind": "categorical", "choices": ["none", "local"]},
    }
    tree = repo_params(
        tune={
            "n_trials": 2,
            "max_epochs": 1,
            "objective": "robust",
            "pruner": {"kind": "none"},
            "significance": None,
        }
    )
    tree["tune"]["space"] = space  # only these (repo_params merges into params.yaml's space)
    tree["train"]["robust"]["enabled"] = True
    write_params(project, tree)
    runner = CliRunner()
    for args in (["ingest"], ["validate"], ["split"], ["tune", "--no-track"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    best = yaml.safe_load(Path("reports/tuning/best_params.yaml").read_text())["params"]
    assert set(best) == set(space)
    assert 0.8 <= best["train.robust.illumination.strength.1"] <= 2.0
    tuned = with_tuned(
        load_params("params.yaml", ["train.use_tuned=true"]), Path("reports/tuning/best_params.yaml")
    )
    assert tuned.train.robust.illumination.strength[1] == best["train.robust.illumination.strength.1"]
    assert tuned.train.robust.consistency.weight == best["train.robust.consistency.weight"]
    assert tuned.model.input_norm == best["model.input_norm"]
