"""The gate step: the verdict both orchestrators act on before register (registry.challenger gated or
always)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steelflow import paths
from steelflow.cli import app
from steelflow.config import load_params
from steelflow.errors import DataError
from steelflow.gates import GateFailed, load_verdict
from steelflow.steps.gate import gate
from steelflow.steps.register import register
from tests.support.helpers import REPO

ACC = {"original": 0.5, "luminance_1.0": 0.4, "blur_5px": 0.45}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An evaluated model's metrics in an empty project with an empty registry (no champion)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    metrics = {"conditions": {name: {"accuracy": acc} for name, acc in ACC.items()}}
    paths.EVALUATE_METRICS.parent.mkdir(parents=True)
    paths.EVALUATE_METRICS.write_text(json.dumps(metrics))
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    return tmp_path


def _params(*overrides: str):
    return load_params("params.yaml", ["registry.gates.min_holdout_accuracy=null", *overrides])


def test_a_model_below_the_gates_gets_a_refusal_that_register_obeys(project):
    result = gate(_params())
    assert not result.passed and not result.register
    verdict = json.loads(paths.GATES_JSON.read_text())
    assert verdict["register"] is False and any(not g["passed"] for g in verdict["gates"])
    assert "| clean accuracy |" in paths.GATES_MD.read_text()
    with pytest.raises(GateFailed):
        result.raise_if_refused()
    # the refusal is a verdict: register registers nothing and says so, before it looks for the model
    record = register(_params(), verdict=load_verdict())
    assert record["registered"] is False and record["version"] is None
    assert json.loads(paths.REGISTRATION.read_text())["registered"] is False


@pytest.mark.parametrize(("mce", "passed"), [(0.7, True), (0.9, False)])
def test_the_mce_gate_reads_the_evaluated_mce(project, mce, passed):
    metrics = json.loads(paths.EVALUATE_METRICS.read_text())
    paths.EVALUATE_METRICS.write_text(json.dumps({**metrics, "summary": {"mce": mce}}))
    lenient = [f"registry.gates.{k}=0.0" for k in ("min_clean_accuracy", "min_worst_accuracy")]
    result = gate(_params(*lenient, "registry.gates.max_mce=0.8", "evaluate.mce_baseline=base.json"))
    gate_ = next(g for g in result.gates if g.name.startswith("mCE"))
    assert gate_.value == mce and result.passed is passed
    assert "| mCE (graded, vs evaluate.mce_baseline) |" in paths.GATES_MD.read_text()


def test_registry_fail_on_gate_makes_a_refusal_fail_the_step(project):
    with pytest.raises(GateFailed):
        gate(_params("registry.fail_on_gate=true"))
    assert json.loads(paths.GATES_JSON.read_text())["register"] is False  # the verdict is written first


def test_registry_challenger_always_registers_past_failing_gates(project):
    result = gate(_params("registry.challenger=always"))
    assert not result.passed and result.register
    result.raise_if_refused()


def test_the_cli_prints_the_gate_table_and_exits_0_on_a_refusal_or_8_with_fail_on_gate(project):
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    out = CliRunner().invoke(app, ["gate", "--set", "registry.gates.min_holdout_accuracy=null"])
    assert out.exit_code == 0, out.output  # an experiment that tried a worse setting keeps its metrics
    assert "clean accuracy" in out.output and "FAIL" in out.output
    assert "register will register nothing" in out.output
    failing = ["--set", "registry.gates.min_holdout_accuracy=null", "--set", "registry.fail_on_gate=true"]
    out = CliRunner().invoke(app, ["gate", *failing])
    assert out.exit_code == GateFailed.exit_code == 8, out.output
    opened = ["registry.gates.min_clean_accuracy=0", "registry.gates.min_worst_accuracy=0"]
    sets = [a for o in ["registry.gates.min_holdout_accuracy=null", *opened] for a in ("--set", o)]
    passed = CliRunner().invoke(app, ["gate", *sets])
    assert passed.exit_code == 0, passed.output
    assert "every gate passed" in passed.output


def test_a_verdict_for_another_training_run_is_refused(project):
    paths.MLFLOW_RUN.parent.mkdir(parents=True, exist_ok=True)
    paths.MLFLOW_RUN.write_text("run-a\n")
    gate(_params("registry.gates.min_clean_accuracy=0", "registry.gates.min_worst_accuracy=0"))
    paths.MLFLOW_RUN.write_text("run-b\n")
    with pytest.raises(DataError, match="run-a"):
        load_verdict()
    Path(paths.GATES_JSON).unlink()
    with pytest.raises(DataError, match="steelflow gate"):
        load_verdict()
