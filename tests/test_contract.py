"""The step contract (steelflow/contract.py) is the one place a step is declared: dvc.yaml and the Kubeflow
components must say the same."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from steelflow import contract, paths
from steelflow.cli import app
from tests.helpers import REPO

COMPONENT_STEPS = {  # component → the step whose outputs it keeps
    "ingest": "ingest",
    "validate": "validate",
    "split": "split",
    "corrupt": "corrupt",
    "tune_finish": "tune",
    "train": "train",
    "evaluate": "evaluate",
    "gate": "gate",
    "register": "register",
}


def _dvc() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_the_committed_dvc_yaml_is_the_one_generated_from_the_contract():
    assert (REPO / "dvc.yaml").read_text() == contract.dvc_yaml(), "run `steelflow dvc-yaml`"
    assert CliRunner().invoke(app, ["dvc-yaml", "--check"]).exit_code == 0


def test_each_stage_is_a_step_with_its_params_inputs_and_outputs():
    stages = _dvc()["stages"]
    assert list(stages) == list(contract.STEPS)
    for name, step in contract.STEPS.items():
        stage = stages[name]
        assert stage["cmd"] == step.command
        assert stage["deps"] == [*contract.code_deps(name), *map(str, step.inputs)], name
        params = [p if isinstance(p, str) else f"{next(iter(p))}:" for p in stage.get("params", [])]
        assert params == list(step.params), name
        assert stage.get("outs", []) == [str(p) for p in step.outs], name
        assert stage.get("metrics", []) == [str(p) for p in step.metrics], name
        assert set(step.plots) <= set(step.outs), name
    declared = {p for p in _dvc()["plots"] if isinstance(p, str)}
    assert declared == {str(p) for s in contract.STEPS.values() for p in s.plots}


def _covered(module: str, deps: list[str]) -> bool:
    rel = contract.module_file(module).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", list(contract.STEPS))
def test_a_stages_code_deps_cover_the_steps_import_chain_inside_the_package(name):
    deps = _dvc()["stages"][name]["deps"]
    chain = contract.import_chain(contract.STEPS[name].entry) - contract.FOUNDATION
    missing = sorted(m for m in chain if not _covered(m, deps))
    assert not missing, f"{name}: dvc.yaml's deps miss {missing}"


def test_the_drift_the_review_found_is_gone():
    stages = _dvc()["stages"]
    for dep in ("steelflow/inference.py", "steelflow/models", "steelflow/data/cache.py"):
        assert dep in stages["evaluate"]["deps"], dep
    register = [p if isinstance(p, str) else next(iter(p)) for p in stages["register"]["params"]]
    for key in ("registry.name", "corrupt.conditions", "data.cache_size", "train"):
        assert key in register, key  # `train` covers train.use_tuned


def test_the_gate_stage_runs_before_register_and_register_reads_its_verdict():
    stages = _dvc()["stages"]
    names = list(stages)
    assert names.index("evaluate") < names.index("gate") < names.index("register")
    assert str(paths.GATES_JSON) in stages["gate"]["outs"]
    assert str(paths.GATES_JSON) in stages["register"]["deps"]
    assert f"--gates {paths.GATES_JSON}" in stages["register"]["cmd"]


def _kept_paths(fn: ast.FunctionDef) -> set[str]:
    """Every project path a component keeps or copies, its arguments evaluated against the contract."""
    namespace = {"paths": paths, "outputs": contract.outputs}
    kept: set[str] = set()
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "ws"):
            continue
        if node.func.attr == "keep":
            args = node.args[1:]
        elif node.func.attr == "copy":
            args = node.args[:1]
        else:
            continue
        for arg in args:
            if isinstance(arg, ast.Starred):
                kept |= {str(p) for p in eval(ast.unparse(arg.value), namespace)}  # noqa: S307
            else:
                kept.add(str(eval(ast.unparse(arg), namespace)))  # noqa: S307
    return kept


def test_each_component_keeps_exactly_its_steps_outputs():
    tree = ast.parse((REPO / "components" / "steps.py").read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for component, step in COMPONENT_STEPS.items():
        kept = _kept_paths(functions[component])
        assert kept == {str(p) for p in contract.outputs(step)}, component


def test_the_drift_check_fails_when_a_component_keeps_a_file_the_contract_does_not_list():
    source = "def split(ws, splits):\n    ws.keep(splits.path, *outputs('split'), paths.MANIFEST)\n"
    kept = _kept_paths(ast.parse(source).body[0])
    assert kept != {str(p) for p in contract.outputs("split")}


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
    for step in contract.STEPS.values():
        for key in step.params:
            if key == contract.TUNED:
                continue
            node = tree
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{step.name}: {key} not in params.yaml"
                node = node[part]
