"""Multi-fidelity tuning: rungs, the three objectives, the Pareto rung rule and where best_params comes from.

The rules are checked on trials built by hand (``optuna.trial.create_trial``) where the point is which
trial wins; the studies that train for real (tiny CASI-Nets) check what a trial records.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from steelflow import config
from steelflow.cli import app
from steelflow.config import ConfigError, load_params
from steelflow.data.augment import family_views
from steelflow.errors import DataError
from steelflow.steps import tune as tuning
from steelflow.tuning import objective as fidelity
from tests.support.helpers import REPO, repo_params, write_params

runner = CliRunner()
LR = {"train.lr": FloatDistribution(1e-4, 1.0, log=True)}
BASE = {fidelity.BASELINE: True}  # the user attribute of the trial that runs the hand-set values


def _cfg(**tune) -> config.TuneConfig:
    space = {"train.lr": {"kind": "float", "low": 0.01, "high": 0.1}}
    return config.TuneConfig(n_trials=4, space=space, **tune)


def _trial(
    number: int, clean: float, robust: float, epochs: int, state=TrialState.COMPLETE, values=None, **attrs
):
    t = create_trial(
        state=state,
        values=values if state == TrialState.COMPLETE else None,
        params={"train.lr": 0.01 * (number + 1)},
        distributions=LR,
        user_attrs={"clean": clean, "robust": robust, "epochs": epochs, **attrs},
    )
    t.number = number
    return t


# --- the rungs --------------------------------------------------------------------------------------


def test_rungs_climb_by_the_reduction_factor_up_to_the_full_budget():
    cfg = _cfg(pruner={"kind": "successive_halving", "min_epochs": 8, "reduction_factor": 3})
    objective = fidelity.Objective.of(cfg, train_epochs=40)
    assert objective.budget == 40  # max_epochs null = train.epochs
    assert objective.rungs == (8, 24)
    assert [objective.last_rung(e) for e in (3, 8, 23, 24, 39, 40)] == [0, 8, 8, 24, 24, 40]
    assert fidelity.Objective.of(_cfg(max_epochs=10), train_epochs=40).budget == 10


def test_tune_epochs_is_refused_with_its_new_name():
    with pytest.raises(ValueError, match="tune.max_epochs"):
        _cfg(epochs=4)


def test_a_pareto_study_refuses_optunas_single_objective_pruners():
    with pytest.raises(ValueError, match="needs a single objective"):
        _cfg(objective="pareto", pruner={"kind": "median"})


def test_a_budget_at_or_below_the_first_rung_scales_the_rungs_down_to_it():
    cfg = _cfg(pruner={"kind": "successive_halving", "min_epochs": 8, "reduction_factor": 3})
    assert fidelity.Objective.of(cfg, train_epochs=2).rungs == (1,)  # `-S train.epochs=2`
    assert fidelity.Objective.of(cfg, train_epochs=8).rungs == (2, 6)
    assert fidelity.Objective.of(cfg, train_epochs=9).rungs == (8,)  # below the budget: as set
    assert fidelity.rung_note(cfg, fidelity.Objective.of(cfg, train_epochs=9)) is None
    assert fidelity.rung_note(cfg, fidelity.Objective.of(cfg, train_epochs=8)) == (
        "tune: a trial's budget (8 epochs, train.epochs) is not above tune.pruner.min_epochs (8): "
        "the rungs are scaled to 2, 6 and the top rung 8 epochs"
    )


def test_a_one_epoch_budget_turns_pruning_off_and_says_so():
    cfg = _cfg(pruner={"kind": "hyperband", "min_epochs": 8}, max_epochs=1)
    objective = fidelity.Objective.of(cfg, train_epochs=40)
    assert objective.rungs == () and objective.last_rung(1) == 1
    assert fidelity.rung_note(cfg, objective) == (
        "tune: a trial's budget (1 epoch, tune.max_epochs) is not above tune.pruner.min_epochs (8): "
        "pruning is off, every trial runs the whole budget"
    )
    median = _cfg(pruner={"kind": "median"}, max_epochs=1)
    assert fidelity.rung_note(median, fidelity.Objective.of(median, 40)) is None  # no rungs to scale


def test_a_budget_below_the_first_rung_tunes_with_one_line_saying_so_and_a_line_per_trial(project):
    """The README's quick experiment (`-S train.epochs=...` under params.yaml's min_epochs 8) completes;
    without a terminal the trials show as plain lines, no bar's control characters."""
    tree = repo_params()
    tree["tune"] |= {"max_epochs": 2, "pruner": {"kind": "successive_halving", "min_epochs": 8}}
    write_params(project, tree)
    for step in ("ingest", "validate", "split"):
        assert runner.invoke(app, [step]).exit_code == 0
    result = runner.invoke(app, ["tune", "--no-track"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if "tune.pruner.min_epochs" in line] == [
        "tune: a trial's budget (2 epochs, tune.max_epochs) is not above tune.pruner.min_epochs (8): "
        "the rungs are scaled to 1 and the top rung 2 epochs"
    ]
    trial_lines = [line for line in lines if line.startswith("tune: trial ")]
    assert trial_lines[0].startswith("tune: trial 1/2 starts, 1 after it (the baseline, hand-set: train.lr=")
    assert trial_lines[1].startswith("tune: trial 1/2 complete: val acc ")
    assert trial_lines[1].endswith("after 2 epochs; 1 trial left [study trial 0]")
    assert trial_lines[2].startswith("tune: trial 2/2 starts, 0 after it (train.lr=")
    assert trial_lines[3].endswith("; the study is done [study trial 1]")
    assert "\x1b" not in result.output and "\r" not in result.output
    assert yaml.safe_load(Path("reports/tuning/best_params.yaml").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    ("refused", "fix"),
    [
        (["tune.objective=pareto", "tune.pruner.kind=median"], "tune.pruner.kind=successive_halving"),
        (["tune.grace_seconds=5"], "tune.grace_seconds=60"),
    ],
)
def test_a_refused_tune_setting_names_the_key_and_a_value_that_works(refused, fix):
    with pytest.raises(ConfigError) as e:
        load_params(REPO / "params.yaml", refused)
    key, value = fix.split("=")
    assert f"set {key} to {value}" in str(e.value)
    load_params(REPO / "params.yaml", [*refused, fix])  # the value named is accepted


@pytest.mark.parametrize(
    ("refused", "fix"),
    [
        (["split.val=0"], "split.val=0.2"),
        ([f"train.robust.{f}.p=0" for f in config.ROBUST_FAMILIES], "train.robust.overlay.p=0.5"),
    ],
)
def test_a_study_the_params_cannot_score_names_the_key_and_a_value_that_works(project, refused, fix):
    """Refused before any data is read: the fix named gets past the check to the missing split cache."""
    with pytest.raises(ConfigError) as e:
        tuning.prepare(load_params(REPO / "params.yaml", refused), cache_dir=project / "no-cache")
    key, value = fix.split("=")
    assert f"set {key} to {value}" in str(e.value) or f"or {key} to {value}" in str(e.value)
    with pytest.raises(DataError, match="run `steelflow split` first"):
        tuning.prepare(load_params(REPO / "params.yaml", [*refused, fix]), cache_dir=project / "no-cache")


# --- the Pareto rung rule and the pick --------------------------------------------------------------


def test_pareto_ranks_put_the_front_first():
    points = {0: (0.9, 0.5), 1: (0.8, 0.7), 2: (0.7, 0.4), 3: (0.95, 0.45)}
    assert fidelity.pareto_ranks(points) == {0: 0, 1: 0, 3: 0, 2: 1}


def test_at_a_rung_only_the_top_third_by_pareto_rank_climbs():
    at_rung = [(0.9, 0.5), (0.8, 0.7), (0.7, 0.4), (0.6, 0.3), (0.5, 0.2), (0.4, 0.1)]
    trials = [_trial(n, c, r, 8, TrialState.RUNNING, rung_8=[c, r]) for n, (c, r) in enumerate(at_rung)]
    climbs = [n for n in range(6) if fidelity.pareto_promotable(n, 8, trials, reduction_factor=3)]
    # front {0, 1}; 6 // 3 = 2 climb: both front members, and nobody else
    assert climbs == [0, 1]
    # alone at a rung, a trial climbs; with fewer than η others, only the best one does
    assert fidelity.pareto_promotable(0, 8, trials[:1], reduction_factor=3)
    assert not fidelity.pareto_promotable(2, 8, trials[:3], reduction_factor=3)


def test_pareto_pick_is_the_most_robust_within_max_clean_drop_of_the_best_clean():
    trials = [
        _trial(0, 0.98, 0.60, 40, values=[0.98, 0.60]),
        _trial(1, 0.965, 0.80, 40, values=[0.965, 0.80]),  # within 0.02 of 0.98, and the most robust
        _trial(2, 0.90, 0.95, 40, values=[0.90, 0.95]),  # more robust still, but 0.08 below on clean
    ]
    objective = fidelity.Objective.of(_cfg(objective="pareto"), train_epochs=40)
    assert fidelity.pick_best(trials, objective, max_clean_drop=0.02).number == 1
    assert fidelity.pick_best(trials, objective, max_clean_drop=0.1).number == 2
    assert fidelity.pick_best(trials, objective, max_clean_drop=0.0).number == 0
    assert fidelity.pareto_front(trials) == [0, 1, 2]


def _report_on(project: Path, trials, **tune) -> dict:
    """``tuning.report`` over a study holding exactly ``trials``; returns best_params.yaml."""
    _report(project, trials, **tune)
    return yaml.safe_load((project / "reports/tuning/best_params.yaml").read_text())


def _report(project: Path, trials, **tune) -> tuning.TuneResult:
    """``tuning.report`` over a study holding exactly ``trials``; returns its result."""
    tree = repo_params()
    tree["train"]["epochs"] = 40
    tree["tune"] |= {"max_epochs": None, **tune}
    write_params(project, tree)
    params = load_params("params.yaml")
    cfg = params.tune
    objective = fidelity.Objective.of(cfg, 40)
    ref = tuning.StudyRef(
        tuning.study_name(params), tuning.storage_url(cfg), params.raw(), "data/cache/splits"
    )
    study = optuna.create_study(study_name=ref.name, storage=ref.storage_url, directions=objective.directions)
    for t in trials:
        study.add_trial(t)
    return tuning.report(params, ref, project / "reports/tuning")


@pytest.mark.parametrize("objective", ["accuracy", "robust"])
def test_best_params_never_come_from_a_trial_below_the_top_rung(project, objective):
    key = "clean" if objective == "accuracy" else "robust"
    score = {"clean": (0.99, 0.5), "robust": (0.5, 0.99)}[key]
    trials = [
        # the best score of the study, but at 24 of 40 epochs: a snapshot, not a full training; and the
        # baseline, whose min_improvement head start does not count where it did not reach the top rung
        _trial(0, *score, epochs=24, values=[0.99], last_rung=24, **BASE),
        _trial(1, 0.7, 0.7, epochs=24, state=TrialState.PRUNED, last_rung=24),
        _trial(2, 0.8, 0.6, epochs=40, values=[0.8 if key == "clean" else 0.6], last_rung=40),
        _trial(3, 0.75, 0.65, epochs=40, values=[0.75 if key == "clean" else 0.65], last_rung=40),
    ]
    best = _report_on(project, trials, objective=objective, min_improvement=0.5)
    assert best["trial"] == (2 if key == "clean" else 3)
    assert best["epochs"] == 40 and best["top_rung_trials"] == 2
    assert best["baseline"] is False
    assert best["baseline_trial"]["number"] == 0 and best["baseline_trial"]["top_rung"] is False


# --- the baseline (the hand-set values) and tune.min_improvement ------------------------------------


@pytest.mark.parametrize(
    ("rival", "min_improvement", "winner"),
    [
        (0.81, 0.02, 0),  # one validation image of fifty better: noise, the hand-set values stay
        (0.82, 0.02, 0),  # exactly min_improvement better is not more than it
        (0.83, 0.02, 1),  # more than min_improvement better
        (0.80, 0.0, 0),  # a tie goes to the baseline, wherever it stands in the study
        (0.81, 0.0, 1),  # min_improvement 0: any win counts
    ],
)
def test_a_rival_replaces_the_baseline_only_by_more_than_min_improvement(rival, min_improvement, winner):
    baseline = _trial(3, 0.80, 0.5, 40, values=[0.80], **BASE)  # a late number: the retry of the baseline
    other = _trial(1, rival, 0.5, 40, values=[rival])
    objective = fidelity.Objective.of(_cfg(objective="accuracy"), train_epochs=40)
    picked = fidelity.pick_best([other, baseline], objective, 0.02, min_improvement)
    assert picked.number == {0: 3, 1: 1}[winner]


def test_pareto_keeps_the_baseline_unless_a_rival_is_more_robust_by_more_than_min_improvement():
    objective = fidelity.Objective.of(_cfg(objective="pareto"), train_epochs=40)
    baseline = _trial(0, 0.95, 0.80, 40, values=[0.95, 0.80], **BASE)

    def pick(clean: float, robust: float, min_improvement: float = 0.02) -> int:
        rival = _trial(1, clean, robust, 40, values=[clean, robust])
        return fidelity.pick_best([baseline, rival], objective, 0.02, min_improvement).number

    assert pick(0.95, 0.81) == 0  # marginally more robust
    assert pick(0.96, 0.82) == 0  # marginally better on both
    assert pick(0.95, 0.83) == 1  # more robust by more than min_improvement, as clean
    assert pick(1.0, 0.70) == 1  # clean by more than max_clean_drop + min_improvement: out of its reach
    assert pick(0.95, 0.81, min_improvement=0.0) == 1  # without a margin the normal rule applies


@pytest.mark.parametrize("rival", [0.81, 0.9])
def test_best_params_say_whether_they_are_the_baseline_with_its_scores(project, rival):
    trials = [
        _trial(0, 0.80, 0.5, 40, values=[0.80], last_rung=40, **BASE),
        _trial(1, rival, 0.5, 40, values=[rival], last_rung=40),  # 0.81: better by one image in fifty
        _trial(2, 0.95, 0.5, 8, state=TrialState.PRUNED, last_rung=8),
    ]
    result = _report(project, trials, objective="accuracy", min_improvement=0.02)
    best = yaml.safe_load((project / "reports/tuning/best_params.yaml").read_text())
    kept = rival == 0.81
    assert best["trial"] == (0 if kept else 1) and best["baseline"] is kept
    assert best["min_improvement"] == 0.02
    assert best["baseline_trial"] | {"params": None} == {
        "number": 0,
        "state": "COMPLETE",
        "epochs": 40,
        "top_rung": True,
        "value": 0.80,
        "clean": 0.80,
        "robust": 0.5,
        "params": None,
        "sampled": [],
    }
    assert result.baseline is kept and result.metrics["best_is_baseline"] == float(kept)
    assert result.metrics["baseline_value"] == pytest.approx(0.80)


# --- tune.significance: a win beyond the luck of which images landed in validation ----------------


def _right(images: range, n: int = 51) -> str:
    """A per-image record: these validation images right, the others wrong."""
    return fidelity.pack([i in images for i in range(n)])


def _correct(on: str, n: int = 51, **views: range) -> dict:
    return {on: {"epoch": 40, "n": n, "views": {name: _right(r, n) for name, r in views.items()}}}


@pytest.mark.parametrize(
    ("rival_right", "kept"),
    [
        (range(3, 46), True),  # 43 of 51 against 40: 6 images won, 3 lost; a coin flip in a resample
        (range(0, 51), False),  # 51 against 40: 11 won, none lost
    ],
)
def test_a_rival_that_wins_by_a_few_validation_images_leaves_the_hand_set_values(rival_right, kept):
    objective = fidelity.Objective.of(_cfg(objective="accuracy"), train_epochs=40)
    baseline = _trial(
        0, 40 / 51, 0.5, 40, values=[40 / 51], val_correct=_correct("clean", clean=range(40)), **BASE
    )
    score = len(rival_right) / 51
    rival = _trial(1, score, 0.5, 40, values=[score], val_correct=_correct("clean", clean=rival_right))
    winner = fidelity.pick_best([baseline, rival], objective, 0.02)
    assert winner.number == 1  # the plain rule: any win counts (min_improvement 0)
    picked, test = fidelity.guard_baseline(winner, [baseline, rival], objective, 0.02, 0.0, 0.05)
    assert picked.number == (0 if kept else 1)
    assert test["rival"] == 1 and test["score"] == "clean" and test["kept_baseline"] is kept
    assert (test["p"] > 0.05) is kept and test["p"] < (0.5 if kept else 0.01)
    # seeded: the same trials give the same p (the DVC stage and the Kubeflow step pick alike)
    assert fidelity.guard_baseline(winner, [baseline, rival], objective, 0.02, 0.0, 0.05)[1] == test
    assert fidelity.guard_baseline(winner, [baseline, rival], objective, 0.02, 0.0, None) == (winner, None)


@pytest.mark.parametrize("robust_score", ["worst", "mean"])
def test_the_robust_test_resamples_the_worst_or_the_mean_family(robust_score):
    objective = fidelity.Objective.of(_cfg(objective="robust", robust_score=robust_score), train_epochs=40)
    # baseline: illumination 30, noise 45 of 51 (worst 30, mean 37.5)
    # rival: illumination 31, noise 51 (worst 31: one image better; mean 41: ten images better)
    records = {
        0: _correct("robust", illumination=range(30), noise=range(45)),
        1: _correct("robust", illumination=range(31), noise=range(51)),
    }
    scores = {0: (30 / 51, 37.5 / 51), 1: (31 / 51, 41 / 51)}
    column = 0 if robust_score == "worst" else 1
    baseline, rival = (
        _trial(n, 0.9, scores[n][column], 40, values=[scores[n][column]], val_correct=records[n], **attrs)
        for n, attrs in ((0, BASE), (1, {}))
    )
    picked, test = fidelity.guard_baseline(rival, [baseline, rival], objective, 0.02, 0.0, 0.05)
    assert test["score"] == "robust"
    assert picked.number == (0 if robust_score == "worst" else 1)


def test_pareto_tests_the_score_that_decided_and_trials_without_records_keep_the_rule():
    objective = fidelity.Objective.of(_cfg(objective="pareto"), train_epochs=40)
    both = {"clean": _correct("clean", clean=range(45))["clean"]} | _correct("robust", noise=range(30))
    baseline = _trial(0, 45 / 51, 30 / 51, 40, values=[45 / 51, 30 / 51], val_correct=both, **BASE)
    more_robust = _trial(
        1, 45 / 51, 51 / 51, 40, values=[45 / 51, 1.0], val_correct=both | _correct("robust", noise=range(51))
    )
    cleaner = _trial(
        2, 51 / 51, 0.2, 40, values=[1.0, 0.2], val_correct=both | _correct("clean", clean=range(51))
    )
    for rival, score in ((more_robust, "robust"), (cleaner, "clean")):
        winner = fidelity.pick_best([baseline, rival], objective, 0.02)
        picked, test = fidelity.guard_baseline(winner, [baseline, rival], objective, 0.02, 0.0, 0.05)
        assert winner.number == picked.number == rival.number and test["score"] == score
    old = _trial(3, 1.0, 1.0, 40, values=[1.0, 1.0])  # a trial from before the per-image record
    picked, test = fidelity.guard_baseline(old, [baseline, old], objective, 0.02, 0.0, 0.05)
    assert picked.number == 3 and test["p"] is None and "no val_correct" in test["note"]


def test_best_params_and_the_summary_say_the_baseline_was_kept_by_the_bootstrap(project):
    trials = [
        _trial(
            0,
            40 / 51,
            0.5,
            40,
            values=[40 / 51],
            last_rung=40,
            val_correct=_correct("clean", clean=range(40)),
            **BASE,
        ),
        _trial(
            1,
            43 / 51,
            0.5,
            40,
            values=[43 / 51],
            last_rung=40,
            val_correct=_correct("clean", clean=range(3, 46)),
        ),
    ]
    result = _report(project, trials, objective="accuracy", min_improvement=0.0, significance=0.05)
    best = yaml.safe_load((project / "reports/tuning/best_params.yaml").read_text())
    assert best["trial"] == 0 and best["baseline"] is True
    assert best["significance"]["rival"] == 1 and best["significance"]["kept_baseline"] is True
    from steelflow.steps.tune import _baseline_note

    assert "trial 1 scored higher on clean" in _baseline_note(result)
    Path("optuna.db").unlink()  # the same study (significance only picks from it): begin it again
    best = _report_on(project, trials, objective="accuracy", significance=None)
    assert best["trial"] == 1 and best["significance"] is None


def test_significance_must_be_a_share_below_one_half():
    with pytest.raises(ValueError, match="significance"):
        _cfg(significance=0.5)


def test_a_study_with_no_top_rung_trial_fails_and_writes_nothing(project):
    trials = [
        _trial(0, 0.9, 0.9, epochs=8, state=TrialState.PRUNED, last_rung=8),
        _trial(1, 0.9, 0.9, epochs=24, values=[0.9, 0.9], last_rung=24),  # complete, yet short of 40
    ]
    with pytest.raises(tuning.TuningFailed, match="reached the top rung") as e:
        _report_on(project, trials, objective="pareto")
    assert "raise tune.n_trials to 6, or set tune.pruner.kind to none" in str(e.value)
    assert not (project / "reports/tuning/best_params.yaml").exists()


# --- what a real trial records ----------------------------------------------------------------------


@pytest.fixture
def small_split(project: Path) -> Path:
    for step in ("ingest", "validate", "split"):
        result = runner.invoke(app, [step])
        assert result.exit_code == 0, result.output
    return project


def _tune(project: Path, **tune) -> tuple[config.Params, optuna.Study]:
    tree = repo_params()
    tree["tune"] |= tune
    write_params(project, tree)
    params = load_params("params.yaml")
    return params, optuna.create_study(
        study_name=tuning.study_name(params),
        storage=tuning.storage_url(params.tune),
        directions=fidelity.Objective.of(params.tune, params.train.epochs).directions,
        load_if_exists=True,
    )


def _run() -> None:
    result = runner.invoke(app, ["tune", "--no-track"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["accuracy", "robust", "pareto"])
def test_each_objective_scores_full_trials_and_writes_its_plots(small_split, objective):
    params, _ = _tune(
        small_split, n_trials=2, objective=objective, robust_score="mean", pruner={"kind": "none"}
    )
    _run()
    study = optuna.load_study(study_name=tuning.study_name(params), storage=tuning.storage_url(params.tune))
    assert (
        study.metric_names
        == {
            "accuracy": ["val_accuracy"],
            "robust": ["robust_mean"],
            "pareto": ["val_accuracy", "robust_mean"],
        }[objective]
    )
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and t.user_attrs["epochs"] == 2 == len(t.user_attrs["curve"])
        clean = max(c for _, c, _ in t.user_attrs["curve"])
        assert t.user_attrs["clean"] == pytest.approx(clean)
        if objective == "accuracy":
            assert t.values == pytest.approx([clean]) and t.user_attrs["robust"] is None
        else:
            robust = max(r for _, _, r in t.user_attrs["curve"] if r is not None)
            assert 0 <= robust <= 1 and t.user_attrs["robust"] == pytest.approx(robust)
            assert t.values == pytest.approx({"robust": [robust], "pareto": [clean, robust]}[objective])
        # which validation images each best-so-far score got right: the record the bootstrap resamples
        kept = t.user_attrs[fidelity.CORRECT]
        record = kept["clean"]
        assert fidelity.unpack(record["views"]["clean"], record["n"]).mean() == pytest.approx(clean)
        if objective != "accuracy":
            record = kept["robust"]
            families = [fidelity.unpack(v, record["n"]).mean() for v in record["views"].values()]
            assert len(families) >= 2 and sum(families) / len(families) == pytest.approx(robust)
    best = yaml.safe_load(Path("reports/tuning/best_params.yaml").read_text())
    assert best["objective"] == objective and best["epochs"] == 2
    for name in ("rungs.png", "pareto_front.png", "history.png", "importance.png"):
        assert (Path("reports/tuning/plots") / name).stat().st_size > 1000, name


@pytest.mark.slow
def test_a_pruned_trial_records_its_last_rung(small_split):
    params, study = _tune(small_split, n_trials=2, max_epochs=2, objective="pareto")  # rung at 1 epoch
    # a finished trial that scored perfectly at the rung: no tiny 1-epoch model beats it there
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            values=[1.0, 1.0],
            params={k: v for k, v in _first_values(params).items()},
            distributions=_distributions(params),
            user_attrs={"clean": 1.0, "robust": 1.0, "epochs": 2, "rung_1": [1.0, 1.0], "last_rung": 2},
        )
    )
    _run()
    pruned = [
        t
        for t in optuna.load_study(
            study_name=study.study_name, storage=tuning.storage_url(params.tune)
        ).trials
        if t.state == TrialState.PRUNED
    ]
    assert pruned, "the trial that ranks below the planted one at rung 1 climbs no further"
    t = pruned[0]
    assert t.user_attrs["last_rung"] == 1 and t.user_attrs["epochs"] == 1 and len(t.user_attrs["curve"]) == 1
    assert t.user_attrs["rung_1"] == pytest.approx([t.user_attrs["clean"], t.user_attrs["robust"]])
    table = Path("reports/tuning/trials.csv").read_text().splitlines()
    assert "user_attrs_last_rung" in table[0].split(",")


def _first_values(params: config.Params) -> dict:
    return {k: spec.values()[0] for k, spec in params.tune.space.items()}


def _distributions(params: config.Params) -> dict:
    out = {}
    for key, spec in params.tune.space.items():
        if spec.kind == "categorical":
            out[key] = optuna.distributions.CategoricalDistribution(spec.choices)
        elif spec.kind == "int":
            out[key] = optuna.distributions.IntDistribution(int(spec.low), int(spec.high), log=spec.log)
        else:
            out[key] = FloatDistribution(spec.low, spec.high, log=spec.log)
    return out


# --- the robust score's views -----------------------------------------------------------------------


def test_family_views_are_each_family_alone_in_range_and_leave_the_rng_alone():
    robust = config.RobustConfig(enabled=True)
    x = torch.rand(5, 1, 32, 32)
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    views = family_views(x, robust, seed=0)
    assert torch.equal(torch.rand(3), before)  # training's random stream is untouched
    assert set(views) == {n for n in config.ROBUST_FAMILIES if getattr(robust, n).p > 0}
    for name, v in views.items():
        assert v.shape == x.shape and v.dtype == x.dtype, name
        assert float(v.min()) >= 0 and float(v.max()) <= 1, name
        assert not torch.equal(v, x), f"{name} changed nothing at p = 1"
    again = family_views(x, robust, seed=0)
    assert all(torch.equal(views[n], again[n]) for n in views)  # the same views for every trial
