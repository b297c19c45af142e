"""params.yaml → typed config: bad keys and values fail early, naming the key and what is allowed."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from steelflow import config
from steelflow.config import BlurCondition, load_params, parse_params
from steelflow.errors import ConfigError
from tests.support.helpers import REPO, repo_params, write_params


def test_repo_params_load_into_typed_sections():
    p = load_params(REPO / "params.yaml")
    assert p.data.is_synthetic
    assert p.split.test == pytest.approx(0.3)
    assert p.validate_.duplicates == "drop"
    assert [c.kind for c in p.corrupt.conditions] == ["luminance"] * 2 + ["noise"] * 2 + ["blur"] * 2
    assert isinstance(p.corrupt.conditions[-1], BlurCondition) and p.corrupt.conditions[-1].length == 5


def test_missing_key_is_named(tmp_path):
    tree = repo_params()
    del tree["split"]["test"]
    with pytest.raises(ConfigError, match=r"missing key 'split\.test'"):
        load_params(write_params(tmp_path, tree))


def test_misspelled_key_is_named_with_the_allowed_ones(tmp_path):
    tree = repo_params()
    tree["split"]["tset"] = tree["split"].pop("test")
    with pytest.raises(ConfigError) as e:
        load_params(write_params(tmp_path, tree))
    assert "unknown key 'split.tset'" in str(e.value)
    assert "allowed: seed, test, val" in str(e.value)


def test_negative_ratio_from_set_override_is_rejected():
    with pytest.raises(ConfigError, match=r"'split\.test'.*greater than 0.*-0\.1"):
        load_params(REPO / "params.yaml", ["split.test=-0.1"])


def test_bad_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError, match=r"'validate\.duplicates'.*'drop' or 'fail'"):
        load_params(REPO / "params.yaml", ["validate.duplicates=keep"])


def test_set_overrides_are_parsed_as_yaml_values():
    p = load_params(REPO / "params.yaml", ["data.classes=[a, b]", "corrupt.conditions.0.alpha=0.25"])
    assert p.data.classes == ["a", "b"]
    assert p.corrupt.conditions[0].alpha == 0.25


@pytest.mark.parametrize("item", ["nosuch.key=1", "split", "=3"])
def test_malformed_or_unknown_override_fails(item):
    with pytest.raises(ConfigError, match="--set"):
        load_params(REPO / "params.yaml", [item])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.epochs=true", r"'train\.epochs': expected an integer, not true/false \(got True\)"),
        ("train.lr=false", r"'train\.lr': expected a number, not true/false"),
        ("corrupt.conditions.0.alpha=true", r"'corrupt\.conditions\.0\.alpha': expected a number"),
        ("mlflow.log_checkpoints=1", r"'mlflow\.log_checkpoints': expected true or false \(got 1\)"),
        ("train.use_tuned=0", r"'train\.use_tuned': expected true or false \(got 0\)"),
    ],
)
def test_a_boolean_is_never_read_as_a_number_nor_a_number_as_a_boolean(item, message):
    with pytest.raises(ConfigError, match=message):
        load_params(REPO / "params.yaml", [item])


def test_true_and_false_still_set_switches_and_numbers_still_set_numbers():
    p = load_params(REPO / "params.yaml", ["mlflow.log_checkpoints=true", "train.epochs=3", "train.lr=1"])
    assert p.mlflow.log_checkpoints is True and p.train.epochs == 3 and p.train.lr == 1.0


@pytest.mark.parametrize("item", ["train.epochs=[1", "data.classes={a: [b", "train.lr=@x"])
def test_an_override_that_is_not_yaml_names_the_key_instead_of_a_traceback(item):
    key = item.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"--set {re.escape(key)}: .* is not a YAML value"):
        load_params(REPO / "params.yaml", [item])


def test_unknown_condition_kind_and_repeated_names_fail():
    tree = repo_params()
    tree["corrupt"]["conditions"].append({"name": "fog", "kind": "fog"})
    with pytest.raises(ConfigError, match=r"corrupt\.conditions\.6"):
        parse_params(tree)
    tree = repo_params()
    tree["corrupt"]["conditions"].append(dict(tree["corrupt"]["conditions"][0]))
    with pytest.raises(ConfigError, match="condition names repeat"):
        parse_params(tree)


def test_unknown_key_inside_a_condition_names_its_position():
    tree = repo_params()
    tree["corrupt"]["conditions"][2]["snr"] = 3
    with pytest.raises(ConfigError, match=r"unknown key 'corrupt\.conditions\.2\.snr'.*snr_db"):
        parse_params(tree)


def test_missing_params_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    assert yaml  # the module stays imported for write_params


def test_paper_profile_is_valid_and_paper_faithful():
    p = load_params(REPO / "profiles" / "paper.yaml")
    assert (p.model.variant, p.model.image_size, p.data.cache_size) == ("casinet", 300, 300)
    assert (p.train.batch_size, p.train.momentum, p.train.weight_decay) == (16, 0.9, 0.001)
    assert p.split.test == 0.3 and len(p.data.classes) == 6


def test_quick_profile_is_valid_and_lowers_what_makes_a_real_dataset_slow():
    """profiles/quick.yaml ("my data, ten minutes"): the same pipeline as params.yaml, smaller where the
    time goes (image side, epochs, trials and each trial's epochs), with no rung to scale."""
    quick, default = load_params(REPO / "profiles" / "quick.yaml"), load_params(REPO / "params.yaml")
    assert quick.data.source.endswith("NEU-CLS") and len(quick.data.classes) == 6
    assert quick.model.image_size == quick.data.cache_size <= 48
    assert quick.train.epochs < default.train.epochs and quick.tune.n_trials < default.tune.n_trials
    assert quick.tune.max_epochs < quick.train.epochs
    assert quick.tune.pruner.min_epochs < quick.tune.max_epochs  # rungs as written: no scaling line
    assert quick.model.variant == default.model.variant and quick.corrupt == default.corrupt


def test_robust_training_params_name_the_key_and_the_range():
    p = load_params(REPO / "params.yaml")
    assert p.train.robust.enabled and p.model.input_norm != "none"  # the default profile trains robustly
    assert p.train.robust.illumination.strength[1] > 1.0  # past the test's α = 1
    with pytest.raises(ConfigError, match=r"'train\.robust\.noise'.*low \(40\.0\) > high \(10\.0\)"):
        load_params(REPO / "params.yaml", ["train.robust.noise.snr_db=[40, 10]"])
    with pytest.raises(ConfigError, match=r"unknown key 'train\.robust\.fog'"):
        load_params(REPO / "params.yaml", ["train.robust.fog={p: 1}"])
    with pytest.raises(ConfigError, match=r"'train\.robust\.illumination\.shapes\.0'.*'spot'"):
        load_params(REPO / "params.yaml", ["train.robust.illumination.shapes=[spots]"])
    with pytest.raises(ConfigError, match=r"'model\.input_norm'.*'flatfield'"):
        load_params(REPO / "params.yaml", ["model.input_norm=retinex"])


def test_the_paper_profile_trains_robustly_and_clean_training_is_one_switch_away():
    paper = load_params(REPO / "profiles" / "paper.yaml")
    assert paper.train.robust.enabled
    clean = load_params(REPO / "profiles" / "paper.yaml", ["train.robust.enabled=false"])
    assert not clean.train.robust.enabled and clean.model == paper.model


def test_hold_out_conditions_are_their_own_list_with_names_unique_across_both():
    p = load_params(REPO / "params.yaml")
    kinds = {c.kind for c in p.corrupt.holdout}
    assert kinds and not kinds & {c.kind for c in p.corrupt.conditions}
    with pytest.raises(ConfigError, match=r"condition names repeat.*blur_2px"):
        load_params(REPO / "params.yaml", ["corrupt.holdout=[{name: blur_2px, kind: jpeg, quality: 20}]"])
    with pytest.raises(ConfigError, match=r"'corrupt\.holdout\.0\.quality'.*greater than or equal to 1"):
        load_params(REPO / "params.yaml", ["corrupt.holdout=[{name: q, kind: jpeg, quality: 0}]"])
    with pytest.raises(ConfigError, match=r"min_holdout_accuracy is set but corrupt\.holdout lists no"):
        load_params(REPO / "params.yaml", ["corrupt.holdout=[]", "registry.gates.min_holdout_accuracy=0.5"])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("validate.near_duplicates=keep", r"'validate\.near_duplicates'.*'drop', 'fail' or 'warn'"),
        (
            "validate.near_duplicate_distance=65",
            r"'validate\.near_duplicate_distance'.*less than or equal to 32",
        ),
        ("validate.shortcuts=maybe", r"'validate\.shortcuts'.*'fail', 'warn' or 'off'"),
        ("validate.quality.dark=250", r"'validate\.quality'.*dark \(250\) must be below bright \(240\)"),
        ("validate.quality.colour=1", r"unknown key 'validate\.quality\.colour'"),
        ("data.white_level=0", r"'data\.white_level'.*greater than 0"),
        ("data.reencode=webp", r"'data\.reencode'.*'png'"),
    ],
)
def test_data_trust_params_name_the_key_and_what_is_allowed(item, message):
    with pytest.raises(ConfigError, match=message):
        load_params(REPO / "params.yaml", [item])


def test_data_trust_defaults_keep_the_paper_data_passing():
    for params in (load_params(REPO / "params.yaml"), load_params(REPO / "profiles" / "paper.yaml")):
        v = params.validate_
        assert (v.near_duplicates, v.shortcuts, v.quality.action) == ("warn", "fail", "warn")
        assert params.data.white_level is None and params.data.reencode is None


def test_typed_values_are_set_by_dotted_key_without_a_string_round_trip():
    tree = load_params(REPO / "params.yaml").raw()
    config.set_key(tree, "train.lr", 0.25)
    config.set_key(tree, "tune.space.train.lr.high", 0.5)  # a key that holds dots, matched whole
    config.set_key(tree, "data.classes", ["a", "b"])
    assert tree["train"]["lr"] == 0.25 and tree["data"]["classes"] == ["a", "b"]
    assert tree["tune"]["space"]["train.lr"]["high"] == 0.5
    tuned = config.with_overrides(
        load_params(REPO / "params.yaml"), {"train.lr": 0.125, "model.dropout": 0.1}
    )
    assert tuned.train.lr == 0.125 and tuned.model.dropout == 0.1


def test_environment_overrides_are_resolved_at_load_and_kept_out_of_the_tree(monkeypatch):
    from steelflow import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:pw@mlflow.example:5000")
    monkeypatch.setenv("STEELFLOW_OPTUNA_STORAGE", "postgresql://u:pw@db/optuna")
    params = load_params(REPO / "params.yaml")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # read once, at load: later changes do not reach it
    assert tracking.tracking_uri(params.mlflow) == "http://user:pw@mlflow.example:5000"
    assert params.tune.effective_storage == "postgresql://u:pw@db/optuna"
    assert "pw" not in json.dumps(params.raw())  # a logged or shipped tree carries no password
    sources = params.sources()
    assert sources["mlflow.tracking_uri"][1] == "env MLFLOW_TRACKING_URI"


def test_params_show_prints_each_effective_value_with_where_it_came_from(monkeypatch):
    from typer.testing import CliRunner

    from steelflow.cli import app

    monkeypatch.setenv("STEELFLOW_OPTUNA_STORAGE", "postgresql://u:s3cret@db/optuna")
    args = ["params", "show", "--params", str(REPO / "params.yaml"), "--set", "train.lr=0.3", "--json"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["train.lr"] == {"value": 0.3, "source": "--set"}
    assert shown["train.epochs"]["source"] == "params.yaml"
    assert shown["registry.description"]["source"] == "default"
    assert shown["tune.storage"] == {
        "value": "postgresql://u:***@db/optuna",
        "source": "env STEELFLOW_OPTUNA_STORAGE",
    }
    assert "s3cret" not in out.output


# --- registries: a variant is one config class and one function, registered once --------------------------


def test_a_registered_kind_joins_the_union_and_its_errors_name_it():
    from typing import Literal

    from pydantic import TypeAdapter, ValidationError

    kinds = config.Registry("toy kind")

    @kinds.register()
    class Fog(config.Section):
        kind: Literal["fog"]
        density: float

    @kinds.register("haze")
    class Haze(config.Section):
        kind: Literal["haze"]

    kinds.implements("fog")(lambda: "fog")
    assert (
        kinds.names == ("fog", "haze") and kinds.config("fog") is Fog and kinds.unimplemented() == ("haze",)
    )
    entry = TypeAdapter(kinds.union()).validate_python({"kind": "fog", "density": 0.5})
    assert isinstance(entry, Fog) and entry.density == 0.5
    with pytest.raises(ValidationError, match="'fog', 'haze'"):
        TypeAdapter(kinds.union()).validate_python({"kind": "smoke"})
    assert TypeAdapter(kinds.literal()).validate_python("haze") == "haze"
    with pytest.raises(ValueError, match=r"unknown toy kind 'smoke' \(allowed: fog, haze\)"):
        kinds.function("smoke")
    with pytest.raises(ValueError, match="'haze' has no function"):
        kinds.function("haze")


def test_a_registry_refuses_a_name_twice_and_a_function_for_no_name():
    kinds = config.Registry("toy kind")
    kinds.declare("fog", "a grey veil")
    with pytest.raises(ValueError, match="declared twice"):
        kinds.declare("fog", "again")
    kinds.implements("fog")(print)
    with pytest.raises(ValueError, match="two functions"):
        kinds.implements("fog")(print)
    with pytest.raises(ValueError, match="'smoke', which is not declared"):
        kinds.implements("smoke")(print)


def test_the_schema_takes_its_choices_from_the_registries():
    p = load_params(REPO / "params.yaml")
    assert config.CONDITIONS.names == config.CONDITION_KINDS
    assert {c.kind for c in p.corrupt.all_conditions} <= set(config.CONDITIONS.names)
    assert (
        config.ROBUST_FAMILIES
        == config.FAMILIES.names
        == tuple(p.train.robust.model_dump(exclude={"enabled", "consistency"}))
    )
    assert type(p.train.robust.noise) is config.FAMILIES.config("noise")
    with pytest.raises(ConfigError, match=r"'model\.input_norm': Input should be 'none', 'standardize'"):
        load_params(REPO / "params.yaml", ["model.input_norm=fancy"])


def test_the_config_package_loads_without_torch_kornia_or_scipy():
    import subprocess
    import sys

    code = (
        "import sys, steelflow.config, steelflow.cli\n"
        "heavy = sorted(m for m in ('torch', 'kornia', 'scipy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr


def test_one_flattener_for_dotted_keys():
    tree = {"train": {"lr": 0.1, "robust": {"noise": {"snr_db": [1, 2]}}}, "kubeflow": {"node_selector": {}}}
    flat = config.flatten_tree(tree)
    assert flat == {"train.lr": 0.1, "train.robust.noise.snr_db": [1, 2], "kubeflow.node_selector": {}}
    assert not hasattr(config, "hide_password")  # steelflow.redact has the one
