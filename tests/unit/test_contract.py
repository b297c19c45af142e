"""Each step is declared once (STEP in steelflow/steps/<name>.py): dvc.yaml, the CLI and the Kubeflow
components are made from those declarations and must say the same."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import components
from steelflow import contract, paths, steps
from steelflow.cli import app
from steelflow.step import Produces, Step
from tests.support.helpers import REPO

STEPS = steps.registry()


def _dvc() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_the_committed_dvc_yaml_is_the_one_generated_from_the_contract():
    assert (REPO / "dvc.yaml").read_text() == contract.dvc_yaml(), "run `steelflow dvc-yaml`"
    assert CliRunner().invoke(app, ["dvc-yaml", "--check"]).exit_code == 0


def test_each_stage_is_a_step_with_its_params_inputs_and_outputs():
    stages = _dvc()["stages"]
    assert list(stages) == list(STEPS)
    for name, step in STEPS.items():
        stage = stages[name]
        assert stage["cmd"] == step.command
        assert stage["deps"] == [*contract.code_deps(name), *map(str, step.inputs)], name
        params = [p if isinstance(p, str) else f"{next(iter(p))}:" for p in stage.get("params", [])]
        assert params == list(step.params), name
        uncached = [{str(p): {"cache": False}} for p in step.uncached]  # recorded, not stored
        assert stage.get("outs", []) == [*uncached, *map(str, step.outs)], name
        assert stage.get("metrics", []) == [str(p) for p in step.metrics], name
        assert set(step.plots) <= set(step.outs), name
    declared = {p for p in _dvc()["plots"] if isinstance(p, str)}
    assert declared == {str(p) for s in STEPS.values() for p in s.plots}


def _covered(module: str, deps: list[str]) -> bool:
    rel = contract.module_file(module).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", list(STEPS))
def test_a_stages_code_deps_cover_the_steps_import_chain_inside_the_package(name):
    deps = _dvc()["stages"][name]["deps"]
    chain = {
        m
        for m in contract.import_chain(STEPS[name].modules) - contract.FOUNDATION
        if not m.startswith(contract.FOUNDATION_PACKAGES)
    }
    missing = sorted(m for m in chain if not _covered(m, deps))
    assert not missing, f"{name}: dvc.yaml's deps miss {missing}"


def test_the_drift_the_review_found_is_gone():
    stages = _dvc()["stages"]
    for dep in ("steelflow/inference.py", "steelflow/models", "steelflow/data/cache.py"):
        assert dep in stages["evaluate"]["deps"], dep
    register = [p if isinstance(p, str) else next(iter(p)) for p in stages["register"]["params"]]
    for key in ("registry.name", "corrupt.conditions", "data.cache_size", "train"):
        assert key in register, key  # `train` covers train.use_tuned


def test_dvc_metrics_show_lists_the_headline_summary_and_the_verdict_and_nothing_wider():
    """`dvc metrics show` (and `dvc exp show`) show every declared metrics file: the summary and the
    gate's verdict; the full sets are cached outputs that `dvc metrics show <file>` reads on request."""
    stages = _dvc()["stages"]
    declared = [m for stage in stages.values() for m in stage.get("metrics", [])]
    assert declared == [str(paths.SUMMARY_METRICS), str(paths.GATES_JSON)]
    assert str(paths.EVALUATE_METRICS) in stages["evaluate"]["outs"]
    for name, full in (
        ("validate", paths.VALIDATION_JSON),
        ("split", paths.SPLIT_JSON),
        ("train", paths.TRAIN_METRICS),
    ):
        assert str(full) in stages[name]["outs"], name


def test_the_gate_stage_runs_before_register_and_register_reads_its_verdict():
    stages = _dvc()["stages"]
    names = list(stages)
    assert names.index("evaluate") < names.index("gate") < names.index("register")
    assert str(paths.GATES_JSON) in stages["gate"]["metrics"]
    assert str(paths.GATES_JSON) in stages["register"]["deps"]
    assert f"--gates {paths.GATES_JSON}" in stages["register"]["cmd"]


def _kept(step: Step) -> set[str]:
    """Every project path a step's Kubeflow artifacts carry (pages and metrics aside)."""
    kept: set[str] = set()
    for out in step.produces:
        if out.kind != "Metrics" and out.page is None:
            kept |= {str(p) for p in (out.keep or step.outputs)}
    return kept


def test_each_component_keeps_exactly_its_steps_outputs():
    for name, step in STEPS.items():
        assert _kept(step) == {str(p) for p in contract.outputs(name)}, name


def test_the_drift_check_fails_when_a_component_keeps_a_file_the_step_does_not_list():
    split = STEPS["split"]
    drifted = dataclasses.replace(split, produces=(Produces("splits", "Dataset", keep=(paths.MANIFEST,)),))
    assert _kept(drifted) != {str(p) for p in contract.outputs("split")}


def test_the_components_and_the_cli_are_made_from_the_declarations():
    made = components.make_components("img:cpu", "img:gpu")
    for name, step in STEPS.items():
        for task in components.task_names(step):
            spec = getattr(made, task).component_spec
            if task.endswith(("_start", "_worker", "_plan", "_part")):  # a fan-out's, or a step's parts
                continue
            assert {out.name for out in step.produces} <= set(spec.outputs or {}), task
            assert set(step.consumes) <= set(spec.inputs), task
        help_text = CliRunner().invoke(app, [name, "--help"]).output
        assert "--params" in help_text and all(f"--{o.name}" in help_text for o in step.options), name


def test_a_new_step_touches_its_own_file_and_shows_in_the_cli_dvc_yaml_and_the_components(
    tmp_path, monkeypatch
):
    (tmp_path / "toy.py").write_text(
        "from pathlib import Path\n"
        "from steelflow.step import Produces, Step\n\n"
        "def toy(data):\n"
        '    """Count the classes into reports/toy.txt."""\n'
        "    Path('reports').mkdir(exist_ok=True)\n"
        "    Path('reports/toy.txt').write_text(str(len(data.classes or [])))\n"
        "    return 'ok'\n\n"
        "STEP = Step('toy', run=toy, help='Count.', sections=('data',),\n"
        "            inputs=(Path('data/manifest.csv'),), params=('data.classes',),\n"
        "            outs=(Path('reports/toy.txt'),),\n"
        "            summary=lambda r: [f'toy: {r}'], consumes=('dataset',), produces=(Produces('toy'),))\n"
    )
    monkeypatch.setattr(steps, "__path__", [*steps.__path__, str(tmp_path)])
    steps.registry.cache_clear()
    try:
        assert "toy" in steps.names()
        stage = yaml.safe_load(contract.dvc_yaml())["stages"]["toy"]
        assert stage["cmd"] == "steelflow toy" and stage["outs"] == ["reports/toy.txt"]
        assert stage["params"] == ["data.classes"] and "data/manifest.csv" in stage["deps"]
        spec = components.make_components("img:cpu", "img:gpu").toy.component_spec
        assert set(spec.inputs) == {"params", "dataset"} and "toy" in spec.outputs
        help_text = CliRunner().invoke(app, ["toy", "--help"]).output
        assert "Count." in help_text
    finally:
        steps.registry.cache_clear()
        sys.modules.pop("steelflow.steps.toy", None)


def test_an_import_added_to_a_step_shows_in_its_code_deps(tmp_path: Path):
    pkg = tmp_path / "steelflow"
    (pkg / "steps").mkdir(parents=True)
    for f in ("__init__.py", "steps/__init__.py", "helper.py", "other.py"):
        (pkg / f).write_text("")
    (pkg / "steps" / "x.py").write_text("def run():\n    from steelflow import helper\n")
    (pkg / "runs.py").write_text(
        "from steelflow import paths\n\ndef a():\n    return _b()\n\n"
        "def _b():\n    from steelflow import helper\n\n"
        "def c():\n    from steelflow import other\n"
    )
    assert contract.import_chain(["steelflow.steps.x"], tmp_path) == {
        "steelflow",
        "steelflow.steps.x",
        "steelflow.helper",
    }
    assert "steelflow.other" not in contract.import_chain(["steelflow.runs:a"], tmp_path)
    assert "steelflow.helper" in contract.import_chain(["steelflow.runs:a"], tmp_path)


def test_every_params_key_a_step_reads_is_in_params_yaml():
    """DVC refuses a stage whose params key is missing from params.yaml (a default in config.py is not
    enough)."""
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    for step in STEPS.values():
        for key in step.params:
            if key == paths.TUNED:
                continue
            node = tree
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{step.name}: {key} not in params.yaml"
                node = node[part]
