"""The compiled Kubeflow pipeline, read back from its IR YAML: what a cluster would be asked to run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines import compile_pipeline
from steelflow import steps
from steelflow.cli import app
from steelflow.config import load_params
from tests.support.helpers import REPO, deep_update, repo_params, write_params

STEPS = (
    "ingest-plan",
    "ingest-part",
    "ingest-merge",
    "validate",
    "split",
    "corrupt-plan",
    "corrupt-part",
    "corrupt-merge",
    "tune-start",
    "tune-worker",
    "tune-finish",
    "train",
    "evaluate",
    "gate",
    "register",
)
GPU = ("tune-worker", "train")
SECRET_VALUES = {  # what a user's shell may hold while compiling: none of it may end up in the file
    "MLFLOW_TRACKING_URI": "http://mlflow-user:hunter2hunter2@mlflow.example:5000",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
    "STEELFLOW_OPTUNA_STORAGE": "postgresql://optuna:s3cretpassw0rd@db.example/optuna",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in SECRET_VALUES.items():
            mp.setenv(key, value)
        out = compile_pipeline(tmp_path_factory.mktemp("kfp") / "pipeline.yaml", REPO / "params.yaml")
    text = out.read_text()
    spec, platform = yaml.safe_load_all(text)
    return {"text": text, "spec": spec, "k8s": platform["platforms"]["kubernetes"]["deploymentSpec"]}


def tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, at any depth (inside conditions and the ParallelFor)."""
    found = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def test_every_step_is_a_task_running_its_own_component(compiled):
    all_tasks = tasks(compiled["spec"])
    for step in STEPS:
        assert step in all_tasks, step
        assert all_tasks[step]["componentRef"]["name"] == f"comp-{step}"
        executor = compiled["spec"]["deploymentSpec"]["executors"][f"exec-{step}"]["container"]
        script = executor["args"][-1] if executor.get("args") else ""
        assert "pip install" not in " ".join(executor["command"]) + script  # the image has everything
    params = repo_params()
    images = {compiled["spec"]["deploymentSpec"]["executors"][f"exec-{s}"]["container"]["image"] for s in GPU}
    assert images == {params["kubeflow"]["gpu_image"]}
    cpu_image = compiled["spec"]["deploymentSpec"]["executors"]["exec-split"]["container"]["image"]
    assert cpu_image == params["kubeflow"]["image"]


def test_components_call_the_step_functions_the_cli_calls(compiled):
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    calls = {  # every component is one call of the shared adapter, naming its step
        "ingest-part": "run_component('ingest', locals(), 'part')",
        "ingest-merge": "run_component('ingest', locals(), 'merge')",
        "validate": "run_component('validate', locals(), '')",
        "split": "run_component('split', locals(), '')",
        "corrupt-plan": "run_component('corrupt', locals(), 'plan')",
        "corrupt-merge": "run_component('corrupt', locals(), 'merge')",
        "tune-worker": "run_component('tune', locals(), 'worker')",
        "train": "run_component('train', locals(), '')",
        "evaluate": "run_component('evaluate', locals(), '')",
        "register": "run_component('register', locals(), '')",
    }
    for step, call in calls.items():
        assert call in executors[f"exec-{step}"]["container"]["command"][-1], step


def test_gpu_steps_request_a_gpu_on_tolerated_gpu_nodes_and_cpu_steps_do_not(compiled):
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    gpu_cfg = repo_params()["kubeflow"]["gpu"]
    for step in GPU:
        resources = executors[f"exec-{step}"]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == gpu_cfg["accelerator"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == str(gpu_cfg["count"])
        k8s = compiled["k8s"]["executors"][f"exec-{step}"]
        assert k8s["nodeSelector"]["labels"] == gpu_cfg["node_selector"]
        assert k8s["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    for step in set(STEPS) - set(GPU):
        resources = executors[f"exec-{step}"]["container"]["resources"]
        assert "accelerator" not in resources, step
        assert resources["resourceCpuRequest"] == "1" and resources["resourceMemoryRequest"] == "4Gi"
        # limits as well as requests (the request when no limit is set: Guaranteed QoS)
        assert resources["resourceCpuLimit"] == "1" and resources["resourceMemoryLimit"] == "4Gi"
        assert "tolerations" not in compiled["k8s"]["executors"][f"exec-{step}"], step
    for step in GPU:
        resources = executors[f"exec-{step}"]["container"]["resources"]
        assert resources["resourceCpuLimit"] == gpu_cfg["cpu"] and resources["resourceMemoryLimit"] == "16Gi"


def test_credentials_come_from_kubernetes_secrets_as_env_on_every_step(compiled):
    wanted = {"MLFLOW_TRACKING_URI", "STEELFLOW_OPTUNA_STORAGE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for step in STEPS:
        mounted = {
            pair["envVar"]: secret["secretName"]
            for secret in compiled["k8s"]["executors"][f"exec-{step}"]["secretAsEnv"]
            for pair in secret["keyToEnv"]
        }
        assert wanted <= set(mounted), step
        assert mounted["MLFLOW_TRACKING_URI"] == "steelflow-mlflow"


def test_no_literal_credentials_in_the_compiled_pipeline(compiled):
    text = compiled["text"]
    for value in SECRET_VALUES.values():
        assert value not in text
    for pattern in (
        r"AKIA[0-9A-Z]{16}",
        r"(?i)(aws_secret_access_key|secret_key|password)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{16,}",
        r"(?i)(postgres(ql)?|https?)(\+\w+)?://[^:@/\s]+:[^@/\s]+@",
    ):
        assert not re.search(pattern, text), pattern


def test_caching_is_off_for_tuning_gate_and_register_and_on_for_deterministic_steps(compiled):
    all_tasks = tasks(compiled["spec"])
    cached = {step: all_tasks[step].get("cachingOptions", {}).get("enableCache", False) for step in STEPS}
    assert cached == {
        "ingest-plan": True,  # the CI profile's generated data; a folder or s3:// source is never cached
        "ingest-part": True,
        "ingest-merge": True,
        "validate": True,
        "split": True,
        "corrupt-plan": True,
        "corrupt-part": True,
        "corrupt-merge": True,
        "tune-start": False,
        "tune-worker": False,
        "tune-finish": False,
        "train": True,
        "evaluate": True,
        "gate": False,
        "register": False,
    }


def test_steps_that_talk_to_servers_are_retried(compiled):
    all_tasks = tasks(compiled["spec"])
    retried = {step for step in STEPS if "retryPolicy" in all_tasks[step]}
    assert retried == {
        "ingest-plan",
        "ingest-part",
        "ingest-merge",
        "tune-start",
        "tune-worker",
        "tune-finish",
        "train",
        "evaluate",
        "gate",
        "register",
    }
    assert all_tasks["register"]["retryPolicy"]["maxRetryCount"] == 2


def loops(spec: dict) -> dict[str, tuple[str, dict]]:
    """Every ParallelFor, by its display name: (its task name, its task)."""
    return {t["taskInfo"]["name"]: (n, t) for n, t in tasks(spec).items() if "parameterIterator" in t}


def test_tuning_fans_out_and_registration_waits_on_validation_and_gates(compiled):
    all_tasks = tasks(compiled["spec"])
    name, loop = loops(compiled["spec"])["tune-workers"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--tune-start-Output"
    conditions = {
        name: task["triggerPolicy"]["condition"]
        for name, task in all_tasks.items()
        if "triggerPolicy" in task
    }
    assert sorted(conditions.values()) == [
        "inputs.parameter_values['pipelinechannel--gate-Output'] == true",
        "inputs.parameter_values['pipelinechannel--validate-Output'] == true",
    ]
    assert set(all_tasks["tune-finish"]["dependentTasks"]) >= {name, "tune-start"}


@pytest.mark.parametrize("step", ["ingest", "corrupt"])
def test_the_data_stages_fan_out_over_their_parts_and_fan_in_with_collected(compiled, step):
    """<step>-plan lists the parts (from the run's params), a ParallelFor runs <step>-part on each, and
    <step>-merge takes every part's artifact as one list (dsl.Collected) and makes the step's outputs."""
    spec = compiled["spec"]
    name, loop = loops(spec)[f"{step}-parts"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == f"pipelinechannel--{step}-plan-Output"
    body = spec["components"][loop["componentRef"]["name"]]["dag"]
    assert list(body["tasks"]) == [f"{step}-part"]
    selector = body["outputs"]["artifacts"][f"pipelinechannel--{step}-part-part"]["artifactSelectors"]
    assert selector == [{"outputArtifactKey": "part", "producerSubtask": f"{step}-part"}]
    merge = tasks(spec)[f"{step}-merge"]
    collected = merge["inputs"]["artifacts"]["parts"]["taskOutputArtifact"]
    assert collected == {"outputArtifactKey": f"pipelinechannel--{step}-part-part", "producerTask": name}
    inputs = spec["components"][f"comp-{step}-merge"]["inputDefinitions"]["artifacts"]
    assert inputs["parts"]["isArtifactList"] is True
    outputs = spec["components"][f"comp-{step}-merge"]["outputDefinitions"]["artifacts"]
    assert {out.name for out in steps.get(step).produces} == set(outputs)


def test_run_parameters_are_the_params_file_overrides_and_typed_values(compiled):
    inputs = compiled["spec"]["root"]["inputDefinitions"]["parameters"]
    params = load_params(REPO / "params.yaml")
    assert json.loads(inputs["params"]["defaultValue"]) == params.raw()
    assert inputs["overrides"]["defaultValue"] == []
    # what people change per run, one typed field each in the KFP UI, defaults from params.yaml
    typed = {
        k: (v["parameterType"], v["defaultValue"])
        for k, v in inputs.items()
        if k not in ("params", "overrides")
    }
    assert typed == {
        "data_source": ("STRING", params.data.source),
        "variant": ("STRING", params.model.variant),
        "epochs": ("NUMBER_INTEGER", params.train.epochs),
        "n_trials": ("NUMBER_INTEGER", params.tune.n_trials),
        "image_size": ("NUMBER_INTEGER", params.model.image_size),
    }
    # ...set into the params tree every step gets, by the first task
    assert tasks(compiled["spec"])["ingest-plan"]["inputs"]["parameters"]["params"][
        "taskOutputParameter"
    ] == {
        "outputParameterKey": "Output",
        "producerTask": "settings",
    }


def test_the_settings_step_puts_typed_values_before_the_run_overrides_and_checks_them(tmp_path):
    from components.settings import settings
    from steelflow.config import parse_params
    from steelflow.errors import ConfigError
    from steelflow.workspace import params_json

    text = params_json(load_params(REPO / "params.yaml"))
    merged = settings(text, ["train.epochs=3"], "synthetic", "blfe_mlp", 5, 2, 32)
    applied = parse_params(json.loads(merged))  # the run's own override wins
    assert (applied.model.variant, applied.train.epochs, applied.tune.n_trials) == ("blfe_mlp", 3, 2)
    with pytest.raises(ConfigError, match="train.epochs"):
        settings(text, [], "synthetic", "casinet", 0, 2, 32)


def test_a_typed_run_parameter_is_never_re_read_as_yaml():
    from components.settings import settings
    from steelflow.config import parse_params
    from steelflow.workspace import params_json

    text = params_json(load_params(REPO / "params.yaml"))
    for source in ("synthetic", "on", "null"):
        tree = json.loads(settings(text, [], source, "casinet", 2, 2, 32))
        assert tree["data"]["source"] == source  # text stays text: not True, not None
    assert parse_params(tree).data.source == "null"


def test_image_tag_pins_both_images(tmp_path):
    from pipelines import _version

    out = compile_pipeline(tmp_path / "p.yaml", REPO / "params.yaml", image_tag="git")
    spec, _ = yaml.safe_load_all(out.read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    kf = repo_params()["kubeflow"]
    assert images == {
        kf["image"].rsplit(":", 1)[0] + f":{_version()}",
        kf["gpu_image"].rsplit(":", 1)[0] + f":{_version()}",
    }
    assert _version().count("-") >= 1 and len(_version().rsplit("-", 1)[1]) == 7  # <version>-<sha>


def test_compile_cli_writes_the_ir_and_applies_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, repo_params())
    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(app, ["pipeline", "compile", "-o", str(out), "--set", "tune.workers=3"])
    assert result.exit_code == 0, result.output
    spec, _ = yaml.safe_load_all(out.read_text())
    default = json.loads(spec["root"]["inputDefinitions"]["parameters"]["params"]["defaultValue"])
    assert default["tune"]["workers"] == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kubeflow": None}, "no 'kubeflow' section"),
        ({"kubeflow": {"gpu": {"count": 0}}}, "kubeflow.gpu.count"),
        ({"kubeflow": {"gpu": {"tolerations": [{"key": "x", "effect": "Sometimes"}]}}}, "effect"),
        ({"kubeflow": {"secrets": [{"name": "s", "env": {}}]}}, "kubeflow.secrets.0.env"),
        ({"kubeflow": {"imge": "x"}}, "unknown key 'kubeflow.imge'"),
        (
            {"kubeflow": {"secrets": [{"name": "m", "env": {"MLFLOW_TRACKING_URI": "uri"}}]}},
            "tune.storage is",
        ),
        (
            {"kubeflow": {"secrets": [{"name": "o", "env": {"STEELFLOW_OPTUNA_STORAGE": "url"}}]}},
            "mlflow.tracking",
        ),
        ({"data": {"source": "../shared/datasets/NEU-CLS"}}, "use s3://bucket/prefix"),
    ],
)
def test_bad_kubeflow_params_fail_naming_the_key_and_write_nothing(tmp_path, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    params = repo_params()
    for key, value in change.items():
        params[key] = None if value is None else deep_update(params[key], value)  # lists are replaced
    write_params(tmp_path, params)
    result = CliRunner().invoke(app, ["pipeline", "compile", "-o", "p.yaml"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not Path("p.yaml").exists()


# --- submit: kfp.Client against an unreachable host, and against a stub API server -------------------
# A Kubeflow Pipelines API server needs a Kubernetes cluster, which cannot exist here: the stub below
# answers the REST calls kfp.Client makes (health, experiments, pipelines and their versions, uploads,
# runs), keeps what was uploaded, and can refuse uploads.


class _StubKfpApi:
    def __init__(self, refuse_uploads: bool = False):
        import http.server
        import threading
        import urllib.parse

        self.refuse_uploads = refuse_uploads
        self.uploads: list[tuple[dict, bytes]] = []  # (query, multipart body)
        self.runs: list[dict] = []
        self.versions: list[str] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = urllib.parse.urlparse(self.path).path
                if path == "/apis/v2beta1/healthz":
                    return self._answer(200, {"multi_user": False})
                if path == "/apis/v2beta1/experiments":
                    experiment = {"experiment_id": "exp-1", "display_name": "steelflow"}
                    return self._answer(200, {"experiments": [experiment], "total_size": 1})
                if path == "/apis/v2beta1/pipelines":
                    found = (
                        [{"pipeline_id": "p-1", "display_name": "steel-defect-pipeline"}]
                        if stub.versions
                        else []
                    )
                    return self._answer(200, {"pipelines": found, "total_size": len(found)} if found else {})
                if path == "/apis/v2beta1/pipelines/p-1/versions":
                    latest = {"pipeline_id": "p-1", "pipeline_version_id": stub.versions[-1]}
                    return self._answer(
                        200, {"pipeline_versions": [latest], "total_size": len(stub.versions)}
                    )
                return self._answer(404, {"error_message": f"no {path}", "code": 5})

            def do_POST(self):
                url = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if url.path.startswith("/apis/v2beta1/pipelines/upload"):
                    if stub.refuse_uploads:
                        refusal = {"error_message": "invalid pipeline spec: bad executor", "code": 3}
                        return self._answer(400, refusal)
                    stub.uploads.append((query, body))
                    stub.versions.append(f"v-{len(stub.versions) + 1}")
                    answer = {"pipeline_id": "p-1", "pipeline_version_id": stub.versions[-1]}
                    return self._answer(200, answer | {"display_name": query.get("name")})
                if url.path == "/apis/v2beta1/runs":
                    stub.runs.append(json.loads(body))
                    return self._answer(200, {"run_id": f"run-{len(stub.runs)}"})
                return self._answer(404, {"error_message": f"no {url.path}", "code": 5})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_api():
    stub = _StubKfpApi()
    yield stub
    stub.close()


@pytest.fixture
def project_params(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEELFLOW_GIT_COMMIT", "0123456789abcdef")
    return write_params(tmp_path, repo_params())


def test_submit_to_an_unreachable_host_is_one_clear_error(project_params):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    host = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(app, ["pipeline", "submit", "--host", host])
    assert result.exit_code == 11, result.output
    assert f"Kubeflow Pipelines at {host} is unreachable" in result.output
    assert "Traceback" not in result.output


def test_an_upload_refused_by_a_stub_api_server_is_one_clear_error(project_params):
    stub = _StubKfpApi(refuse_uploads=True)
    try:
        result = CliRunner().invoke(app, ["pipeline", "submit", "--host", stub.url])
    finally:
        stub.close()
    assert result.exit_code == 11, result.output
    assert (
        "refused the pipeline upload: HTTP 400" in result.output and "invalid pipeline spec" in result.output
    )
    assert "Traceback" not in result.output
    assert not stub.runs


def test_submit_uploads_a_pipeline_version_and_runs_it_on_a_stub_api_server(project_params, stub_api):
    args = ["pipeline", "submit", "--host", stub_api.url, "--set", "train.epochs=7"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "run run-1 of pipeline version v-1 in experiment steelflow" in first.output
    assert f"{stub_api.url}/#/runs/details/run-1" in first.output.replace("\n", "")
    query, package = stub_api.uploads[0]
    assert query["name"] == "steel-defect-pipeline"  # the first upload creates the pipeline
    assert b"steel-defect-pipeline" in package and b"nvidia.com/gpu" in package  # the compiled IR, whole
    run = stub_api.runs[0]
    assert run["experiment_id"] == "exp-1"
    assert run["pipeline_version_reference"] == {"pipeline_id": "p-1", "pipeline_version_id": "v-1"}
    assert json.loads(run["runtime_config"]["parameters"]["params"])["train"]["epochs"] == 7

    again = CliRunner().invoke(app, ["pipeline", "submit", "--host", stub_api.url])
    assert again.exit_code == 0, again.output
    query, _ = stub_api.uploads[1]
    assert query["pipelineid"] == "p-1" and query["name"].startswith("0.1.0-0123456")  # version-sha-time
    assert stub_api.runs[1]["pipeline_version_reference"]["pipeline_version_id"] == "v-2"


def test_the_diagram_is_drawn_from_the_compiled_graph(compiled, tmp_path):
    from pipelines.diagram import draw, graph

    ir = tmp_path / "p.yaml"
    ir.write_text(compiled["text"])
    upstream, groups, conditions = graph(ir)
    assert upstream["validate"] == {"ingest-merge"}
    assert upstream["ingest-merge"] == {"ingest-part"}  # after every part of the ParallelFor
    assert upstream["tune-finish"] == {"tune-worker"}  # after every worker of the ParallelFor
    assert upstream["evaluate"] == {"train", "corrupt-merge"}
    assert upstream["register"] == {"gate"}
    assert groups["register"].count("/") == 1  # inside both conditions
    assert sorted(conditions.values()) == ["gate passed", "validate passed"]
    png = draw(ir, tmp_path / "pipeline.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
