"""`steelflow tune`: search-space checks, the trial queue with parallel workers, pruning, failures, MLflow.

Every study here runs for real: Optuna on a SQLite file or the PostgreSQL at 127.0.0.1:5432, trials that
train a (tiny) CASI-Net, and MLflow on a SQLite file.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from steelflow import config
from steelflow.cli import app
from steelflow.config import ConfigError, load_params
from steelflow.steps import tune as tuning
from steelflow.tuning import study as study_machinery
from steelflow.tuning.objective import BASELINE
from tests.support.helpers import repo_params, write_params

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
runner = CliRunner()


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"steelflow {' '.join(args)}:\n{result.output}"
    return result.output


@pytest.fixture
def split_project(project: Path) -> Path:
    """A project with ingested, split and cached synthetic data (the tiny test profile)."""
    for step in ("ingest", "validate", "split"):
        _cli(step)
    return project


def _params(project: Path, **tune) -> config.Params:
    tree = repo_params(tune=tune)
    write_params(project, tree)
    return load_params(project / "params.yaml")


def _study(params: config.Params) -> optuna.Study:
    return optuna.load_study(
        study_name=tuning.study_name(params), storage=study_machinery.storage_url(params.tune)
    )


# --- the search space is checked before any trial ---------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "float", "low": 0.1, "high": 0.01}, "low (0.1) > high (0.01)"),
        ({"kind": "floot", "low": 0.1, "high": 0.2}, "'float', 'int' or 'categorical'"),
        ({"kind": "float", "low": 0.0, "high": 0.1, "log": True}, "log scale needs low > 0"),
        ({"kind": "categorical", "choices": []}, "non-empty 'choices'"),
        ({"kind": "int", "low": 1}, "needs both 'low' and 'high'"),
    ],
)
def test_a_bad_search_space_entry_is_named(project, entry, message):
    tree = repo_params()
    tree["tune"]["space"] = {"train.lr": entry}
    write_params(project, tree)
    with pytest.raises(ConfigError) as e:
        load_params(project / "params.yaml")
    assert "tune.space.train.lr" in str(e.value)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("key", "entry", "message"),
    [
        ("train.momentum", {"kind": "float", "low": 0.5, "high": 1.0}, "1.0 is not a valid value"),
        ("train.lrate", {"kind": "float", "low": 0.1, "high": 0.2}, "unknown key 'train.lrate'"),
        ("corrupt.seed", {"kind": "int", "low": 0, "high": 3}, "only model.* and train.*"),
    ],
)
def test_a_search_key_that_params_do_not_accept_fails_before_any_trial(split_project, key, entry, message):
    tree = repo_params()
    tree["tune"]["space"] = {key: entry}
    write_params(split_project, tree)
    result = runner.invoke(app, ["tune", "--no-track"])
    assert result.exit_code == ConfigError.exit_code, result.output
    assert f"tune.space.{key}" in result.output
    assert message in " ".join(result.output.split())
    assert not Path("optuna.db").exists()  # no study was created, no trial ran
    assert not Path("reports/tuning").exists()


def test_set_reaches_a_search_entry_whose_key_has_dots(project):
    p = load_params(project / "params.yaml", ["tune.space.train.lr.high=0.5"])
    assert p.tune.space["train.lr"].high == 0.5


# --- a study, end to end ----------------------------------------------------------------------------


@pytest.mark.slow
def test_tune_writes_best_params_that_train_applies(split_project):
    # no pruner: whether a 1-epoch trial is pruned depends on the trials' values, not on what this tests
    # no significance test: the best is the study's best, whichever trial that is on this tiny data
    params = _params(
        split_project,
        n_trials=3,
        max_epochs=1,
        objective="accuracy",
        pruner={"kind": "none"},
        significance=None,
    )
    out = _cli("tune", "--no-track")
    assert "3 complete" in out

    best = yaml.safe_load(Path("reports/tuning/best_params.yaml").read_text())
    assert set(best["params"]) == set(params.tune.space)
    assert best["study"] == tuning.study_name(params)
    study = _study(params)
    assert best["trial"] == study.best_trial.number
    assert best["value"] == pytest.approx(study.best_value)
    for name in ("history.png", "rungs.png", "pareto_front.png", "importance.png"):
        assert (Path("reports/tuning/plots") / name).stat().st_size > 1000
    trials = Path("reports/tuning/trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 3

    on = load_params("params.yaml", ["train.use_tuned=true"])
    tuned = config.with_tuned(on, Path("reports/tuning/best_params.yaml"))
    assert tuned.train.lr == pytest.approx(best["params"]["train.lr"])
    assert tuned.model.dropout == pytest.approx(best["params"]["model.dropout"])
    assert tuned.train.batch_size == best["params"]["train.batch_size"]


@pytest.mark.slow
def test_rerunning_continues_the_study_up_to_n_trials(split_project):
    params = _params(split_project, n_trials=2, max_epochs=2)
    _cli("tune", "--no-track")
    _cli("tune", "--no-track")  # nothing left to do
    assert len(_study(params).trials) == 2
    _cli("tune", "--no-track", "--set", "tune.n_trials=3")  # same study (n_trials is not in its name)
    assert sorted(t.number for t in _study(params).trials) == [0, 1, 2]


# --- the baseline: the hand-set values as the study's first trial -----------------------------------


def _hand_set(params: config.Params) -> dict:
    return {key: config.flatten_tree(params.raw())[key] for key in params.tune.space}


@pytest.mark.slow
def test_a_new_studys_first_trial_runs_the_hand_set_values_as_one_of_n_trials(split_project):
    params = _params(split_project, n_trials=2, max_epochs=1, objective="accuracy", pruner={"kind": "none"})
    out = " ".join(_cli("tune", "--no-track").split())
    trials = _study(params).trials
    assert len(trials) == 2  # the baseline counts as one of n_trials
    assert trials[0].user_attrs[BASELINE] is True and BASELINE not in trials[1].user_attrs
    assert trials[0].params == pytest.approx(_hand_set(params))
    best = yaml.safe_load(Path("reports/tuning/best_params.yaml").read_text())
    assert best["baseline_trial"]["number"] == 0 and best["baseline_trial"]["sampled"] == []
    assert best["baseline"] is (best["trial"] == 0)
    # the baseline kept: as the best, or because a higher score was within the bootstrap's noise
    assert ("(the baseline: " if best["baseline"] else "beat the baseline, trial 0") in out
    assert "(the baseline, hand-set: train.lr=" in out  # the trial's own line

    _cli("tune", "--no-track", "--set", "tune.n_trials=3")  # continued: one more trial, sampled
    trials = _study(params).trials
    assert len(trials) == 3 and [t.number for t in trials if t.user_attrs.get(BASELINE)] == [0]


def test_a_continued_study_never_queues_the_baseline_again(split_project):
    params = _params(split_project, n_trials=3)
    tuning.prepare(params)
    tuning.prepare(params)  # a second `steelflow tune` (or Kubeflow tune-start) on the same study
    tuning.prepare(load_params("params.yaml", ["tune.n_trials=5"]))
    trials = _study(params).trials
    assert len(trials) == 5
    assert [t.number for t in trials if t.user_attrs.get(BASELINE)] == [0]
    assert trials[0].system_attrs["fixed_params"] == _hand_set(params)


def test_baseline_off_queues_only_sampled_trials_and_keeps_the_study_name_it_had(split_project):
    params = _params(split_project, n_trials=2, baseline=False)
    tuning.prepare(params)
    assert not any(t.user_attrs.get(BASELINE) for t in _study(params).trials)
    # the hand-set values name a study only when its first trial runs them
    moved = load_params("params.yaml", ["train.lr=0.07"])
    assert tuning.study_name(moved) == tuning.study_name(params)
    on = load_params("params.yaml", ["tune.baseline=true"])
    assert tuning.study_name(on) != tuning.study_name(
        load_params("params.yaml", ["tune.baseline=true", "train.lr=0.07"])
    )


@pytest.mark.parametrize(
    ("key", "entry", "shown"),
    [
        ("train.lr", {"kind": "float", "low": 0.1, "high": 0.2, "log": True}, "float 0.1..0.2, log"),
        ("train.batch_size", {"kind": "categorical", "choices": [8, 32]}, "choices [8, 32]"),
    ],
)
def test_a_hand_set_value_outside_its_search_space_is_left_to_the_sampler_and_named(
    split_project, capsys, key, entry, shown
):
    tree = repo_params()
    tree["tune"]["space"] = {key: entry, "model.dropout": {"kind": "float", "low": 0.0, "high": 0.5}}
    write_params(split_project, tree)
    params = load_params("params.yaml")
    value = _hand_set(params)[key]  # train.lr 0.05, train.batch_size 16 (params.yaml)
    capsys.readouterr()
    tuning.prepare(params)
    err = capsys.readouterr().err
    assert err.count("warning: tune:") == 1
    assert f"the hand-set {key} = {value!r} is outside tune.space.{key} ({shown})" in err
    baseline = _study(params).trials[0]
    assert baseline.system_attrs["fixed_params"] == {"model.dropout": params.model.dropout}
    assert baseline.user_attrs["baseline_sampled"] == [key]


def test_use_tuned_without_a_tuning_run_says_what_to_do(split_project):
    result = runner.invoke(app, ["train", "--no-track", "--set", "train.use_tuned=true"])
    assert result.exit_code == ConfigError.exit_code
    assert "run `steelflow tune` first" in result.output


def test_train_says_which_values_tune_replaced_even_one_set_on_the_command_line(split_project):
    best = Path("reports/tuning/best_params.yaml")
    best.parent.mkdir(parents=True, exist_ok=True)
    best.write_text(yaml.safe_dump({"params": {"train.lr": 0.0123, "model.dropout": 0.5}}))
    sets = ["train.use_tuned=true", "train.lr=0.05", "model.dropout=0.5", "train.epochs=1"]
    result = runner.invoke(app, ["train", "--no-track", *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if line.startswith("train.use_tuned:")]
    # the dropout tune picked is the one already set: not a replacement, not listed
    assert said == [f"train.use_tuned: {best} replaces train.lr: 0.05 → 0.0123"]


def _claims_study(url: str) -> tuple[optuna.Study, object]:
    space = {"train.lr": {"kind": "float", "low": 0.1, "high": 0.2}}
    cfg = config.TuneConfig(n_trials=1, space=space)
    return study_machinery.open_study(tuning.StudyRef("claims", url, {}, "."), cfg, worker=0)


def _claim_all(url: str, start: float, out) -> None:
    study, storage = _claims_study(url)
    while time.time() < start:  # both processes claim from the same moment on
        pass
    claimed = []
    while (got := study_machinery.claim(study, storage)) is not None:
        claimed.append(got[1])
    out.put(claimed)


@pytest.mark.slow
def test_two_processes_claiming_from_one_sqlite_study_never_take_the_same_trial(tmp_path):
    """SQLite locks nothing on SELECT … FOR UPDATE: without BEGIN IMMEDIATE, 3-10 of these 60 trials
    went to both processes (and in CI a tuning worker died on a trial the other had finished)."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'claims.db'}"
    study, storage = _claims_study(url)
    for _ in range(60):
        study.enqueue_trial({})
    storage._backend.engine.dispose()  # no SQLite connection may cross the fork
    ctx = multiprocessing.get_context("fork")  # forked claimers are ready together, so their claims collide
    out = ctx.Queue()
    start = time.time() + 3  # after both have opened the study
    procs = [ctx.Process(target=_claim_all, args=(url, start, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    first, second = out.get(timeout=120), out.get(timeout=120)
    for proc in procs:
        proc.join()
    assert not set(first) & set(second)
    assert len(first) + len(second) == 60


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_two_workers_finish_exactly_n_trials_each_once(split_project, monkeypatch, storage):
    n_trials = 6
    if storage == "postgresql":
        monkeypatch.setenv("STEELFLOW_OPTUNA_STORAGE", POSTGRES)
    params = _params(  # no significance test: the best is the study's best (best_value below)
        split_project, n_trials=n_trials, max_epochs=2, workers=2, objective="accuracy", significance=None
    )
    if storage == "postgresql":  # a leftover study from an earlier test run would be continued
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=tuning.study_name(params), storage=POSTGRES)
    tracking = f"sqlite:///{split_project / 'tracking.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    out = _cli("tune")  # tune.workers: 2

    trials = _study(params).trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(n_trials))  # none lost, none duplicated
    assert [t.number for t in trials if t.user_attrs.get(BASELINE)] == [0]  # queued once, for both
    assert "baseline" in out
    assert all(t.state in tuning.FINISHED for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both processes took trials

    import mlflow

    client = mlflow.MlflowClient(tracking)
    experiment = client.get_experiment_by_name("steelflow")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("steelflow.step") == "tune"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == list(range(n_trials))
    by_number = {t.number: t for t in trials}
    for child in children:
        trial = by_number[int(child.data.tags["optuna.trial_number"])]
        assert child.data.tags["optuna.state"] == trial.state.name
        assert float(child.data.params["train.lr"]) == pytest.approx(trial.params["train.lr"])
        history = client.get_metric_history(child.info.run_id, "tune/objective")
        assert {m.step: m.value for m in history} == pytest.approx(trial.intermediate_values)
        curve = client.get_metric_history(child.info.run_id, "val/accuracy")
        assert {m.step: m.value for m in curve} == pytest.approx(
            {e: c for e, c, _ in trial.user_attrs["curve"]}
        )
    assert parent.data.metrics["best_value"] == pytest.approx(
        max(t.value for t in trials if t.value is not None)
    )
    best_is_baseline = parent.data.metrics["best_trial"] == 0
    assert parent.data.metrics["best_is_baseline"] == float(best_is_baseline)
    assert parent.data.metrics["baseline_number"] == 0
    if storage == "postgresql":
        optuna.delete_study(study_name=tuning.study_name(params), storage=POSTGRES)


@pytest.mark.slow
def test_a_bad_region_and_a_diverging_trial_are_pruned_without_stopping_the_study(project):
    # Big enough to learn something in 8 epochs (0.02 reaches ~0.4 val accuracy by epoch 5).
    tree = repo_params(
        data={"synthetic": {"per_class": 40, "image_size": 64, "seed": 0}, "cache_size": 32},
        model={"image_size": 32},
        train={"batch_size": 8},
    )
    tree["tune"] |= {
        "n_trials": 6,
        "max_epochs": 8,
        "objective": "accuracy",
        "pruner": {"kind": "median", "startup_trials": 2, "warmup_epochs": 4},
        # 1e-7 learns nothing (pruned once others have learnt), 1e4 diverges to a NaN loss (pruned too)
        "space": {"train.lr": {"kind": "categorical", "choices": [0.02, 1.0e-7, 1.0e4]}},
    }
    write_params(project, tree)
    for step in ("ingest", "validate", "split"):
        _cli(step)
    params = load_params("params.yaml")
    # The order matters to a median pruner (it needs finished trials to compare with), so queue it;
    # `steelflow tune` counts queued trials and adds only the missing ones.
    study = optuna.create_study(
        study_name=tuning.study_name(params),
        storage=study_machinery.storage_url(params.tune),
        direction="maximize",
    )
    for lr in (0.02, 0.02, 1.0e-7, 1.0e4, 1.0e-7):
        study.enqueue_trial({"train.lr": lr})
    result = runner.invoke(app, ["tune", "--no-track"])
    assert result.exit_code == 0, result.output

    trials = _study(params).trials
    assert len(trials) == 6
    states = {t.number: (t.state.name, t.params["train.lr"], t.intermediate_values) for t in trials}
    assert [states[n][0] for n in range(5)] == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "PRUNED"], states
    diverged = trials[3]  # pruned, not failed: TPE models pruned trials as bad, failed ones it ignores
    assert diverged.user_attrs["diverged"].startswith("loss is"), diverged.user_attrs
    assert "error" not in diverged.user_attrs and "diverged" not in trials[2].user_attrs
    # its line says where it diverged, and names no checkpoint: it lived in the trial's deleted temp folder
    shown = [line for line in result.output.splitlines() if "[study trial 3]" in line]
    assert shown[0].startswith("tune: trial 4/6 pruned "), shown
    assert ", diverged: loss is " in shown[0] and "checkpoint" not in shown[0], shown
    assert "checkpoint" not in diverged.user_attrs["diverged"]
    best = yaml.safe_load(Path("reports/tuning/best_params.yaml").read_text())
    assert best["params"]["train.lr"] == 0.02


@pytest.mark.slow
def test_no_completed_trial_is_an_error_and_writes_nothing(split_project):
    tree = repo_params()
    diverges = {"train.lr": {"kind": "categorical", "choices": [1.0e4]}}
    tree["tune"] |= {"n_trials": 2, "max_epochs": 2, "space": diverges}
    write_params(split_project, tree)
    result = runner.invoke(app, ["tune", "--no-track"])
    assert result.exit_code == 6, result.output
    assert "no trial" in result.output and "completed" in result.output
    # each trial's line says it diverged, and names no checkpoint (it was in the trial's deleted temp folder)
    shown = [line for line in result.output.splitlines() if line.startswith("tune: trial 1/2 ")]
    assert shown[1].startswith("tune: trial 1/2 pruned in its first epoch, diverged: loss is nan at epoch 1")
    assert "checkpoint" not in result.output
    assert not Path("reports/tuning/best_params.yaml").exists()


@pytest.mark.slow
def test_timeout_stops_claiming_and_a_rerun_finishes_the_study(split_project):
    params = _params(split_project, n_trials=6, max_epochs=2, timeout=0.01)
    result = runner.invoke(app, ["tune", "--no-track"])
    assert result.exit_code == 0, result.output
    assert "not complete" in " ".join(result.output.split())
    finished = [t for t in _study(params).trials if t.state in tuning.FINISHED]
    assert 1 <= len(finished) < 6  # the trial under way when time ran out still finishes
    assert Path("reports/tuning/best_params.yaml").is_file()

    _cli("tune", "--no-track", "--set", "tune.timeout=null")
    assert sorted(t.number for t in _study(params).trials if t.state in tuning.FINISHED) == list(range(6))
