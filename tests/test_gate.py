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
from steelflow.registry import GateFailed, register
from steelflow.steps.gate import gate, load_verdict
from tests.helpers import REPO

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
    with pytest.raises(GateFailed, match="refused"):
        register(_params(), verdict=load_verdict())  # before it looks for the model


def test_registry_challenger_always_registers_past_failing_gates(project):
    result = gate(_params("registry.challenger=always"))
    assert not result.passed and result.register
    result.raise_if_refused()


def test_the_cli_prints_the_gate_table_and_exits_8_on_a_refusal(project):
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    out = CliRunner().invoke(app, ["gate", "--set", "registry.gates.min_holdout_accuracy=null"])
    assert out.exit_code == GateFailed.exit_code == 8, out.output
    assert "clean accuracy" in out.output and "FAIL" in out.output
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
