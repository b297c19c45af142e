"""The drift watch on Kubeflow: `steelflow pipeline compile` also writes a one-task pipeline whose task runs
`steelflow monitor`'s function on a batch folder, and fails (exit 15) when the batch drifted, so a recurring
run shows the alarm; the task itself is run here in-process, as its container would run it."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from steelflow.cli import app
from steelflow.config import load_params
from steelflow.data import corruptions
from steelflow.errors import DriftDetected
from steelflow.workspace import params_json, run_monitor
from tests.support.helpers import repo_params, write_params
from tests.unit.test_monitor import _write

QUALITY = "monitor.measures=[brightness, sharpness, entropy, size, mode]"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("kfp-monitor")
    write_params(root, repo_params())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = CliRunner().invoke(
            app, ["pipeline", "compile", "-o", "main.yaml", "--monitor-output", "m.yaml"]
        )
    assert result.exit_code == 0, result.output
    assert (root / "main.yaml").is_file()
    spec, platform = yaml.safe_load_all((root / "m.yaml").read_text())
    return {"spec": spec, "k8s": platform["platforms"]["kubernetes"]["deploymentSpec"]}


def test_compile_writes_a_one_task_pipeline_that_runs_the_monitor_function_on_the_cpu_image(compiled):
    spec = compiled["spec"]
    assert spec["pipelineInfo"]["name"] == "steelflow-drift-watch"
    assert list(spec["root"]["dag"]["tasks"]) == ["monitor"]
    container = spec["deploymentSpec"]["executors"]["exec-monitor"]["container"]
    assert container["image"] == repo_params()["kubeflow"]["image"]
    script = container["args"][-1] if container.get("args") else ""
    assert "from steelflow.workspace import run_monitor" in " ".join(container["command"]) + script
    assert "pip install" not in " ".join(container["command"]) + script  # the image has everything


def test_the_batch_and_reference_are_required_run_parameters_and_drift_fails_by_default(compiled):
    inputs = compiled["spec"]["root"]["inputDefinitions"]["parameters"]
    assert not inputs["batch"].get("isOptional") and not inputs["reference"].get("isOptional")
    assert inputs["fail_on_drift"]["defaultValue"] is True
    assert inputs["model"]["defaultValue"] == ""  # the champion
    default = json.loads(inputs["params"]["defaultValue"])
    ours = repo_params()["monitor"]  # the project's params, as the main pipeline carries them
    assert {k: default["monitor"][k] for k in ("measures", "false_alarm_rate")} == {
        k: ours[k] for k in ("measures", "false_alarm_rate")
    }


def test_the_task_is_never_cached_nor_retried_and_gets_the_secrets(compiled):
    task = compiled["spec"]["root"]["dag"]["tasks"]["monitor"]
    assert task["cachingOptions"] == {} or not task["cachingOptions"].get("enableCache")
    assert "retryPolicy" not in task  # a drifted batch would only run again
    secrets = {s["secretName"] for s in compiled["k8s"]["executors"]["exec-monitor"]["secretAsEnv"]}
    assert secrets == {s["name"] for s in repo_params()["kubeflow"]["secrets"]}


class _Metrics:
    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.logged[name] = value


@pytest.fixture
def task(project):
    """The task's arguments as its container gets them: the project's params (quality measures only), a
    reference file on a mounted volume, stand-ins for the output artifacts."""
    _write(project / "good", 0, 120)
    result = CliRunner().invoke(app, ["monitor", "good", "--build-reference", "--no-model", "--set", QUALITY])
    assert result.exit_code == 0, result.output
    volume = project.parent / "volume"
    volume.mkdir()
    reference = (project / "reports" / "monitor_reference.json").rename(volume / "reference.json")
    params = load_params(project / "params.yaml", [QUALITY, "monitor.calibration_batches=500"])
    return {
        "params": params_json(params),
        "overrides": [],
        "reference": str(reference),
        "model": "",
        "fail_on_drift": True,
        "verdict": _Metrics(),
        "report": types.SimpleNamespace(path=str(project.parent / "out" / "report.html")),
    }


def test_a_clean_batch_answers_no_drift_with_the_verdict_and_page_as_artifacts(task, project):
    batch = _write(project.parent / "volume" / "incoming", 1000, 40)

    assert run_monitor({**task, "batch": str(batch)}) is False

    assert task["verdict"].logged["drifted"] == 0.0
    assert set(task["verdict"].logged) >= {"sharpness.statistic", "sharpness.threshold", "mode.drifted"}
    assert "data:image/png;base64," in Path(task["report"].path).read_text()


def test_a_drifted_batch_fails_the_task_with_exit_15_unless_told_to_answer(task, project):
    dark = _write(
        project.parent / "volume" / "dark", 1000, 40, lambda img, rng: corruptions.luminance(img, 1.0, rng)
    )

    with pytest.raises(DriftDetected, match="drifted from the reference on .*entropy") as failed:
        run_monitor({**task, "batch": str(dark)})
    assert failed.value.exit_code == 15

    assert run_monitor({**task, "batch": str(dark), "fail_on_drift": False}) is True
    assert task["verdict"].logged["drifted"] == 1.0 and task["verdict"].logged["entropy.drifted"] == 1.0
