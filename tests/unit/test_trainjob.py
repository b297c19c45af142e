"""The train task as a Kubeflow Trainer TrainJob: the manifest against the vendored CRD, the same torchrun
line as a local `steelflow train --nproc`, submit and wait against a stand-in API server (no cluster exists
here: those tests end in ``_mocked_cluster``), and the pipeline compiled with the switch on and off."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from pipelines import compile_pipeline
from steelflow import config
from steelflow.cli import app
from steelflow.errors import ConfigError, PipelineError
from steelflow.training.torchrun import train_command
from steelflow.trainjob import manifest
from steelflow.trainjob.cluster import Cluster, TimedOut
from tests.support import crds
from tests.support.helpers import REPO, deep_update, repo_params, write_params

CRD = crds.CRDS / "trainer.kubeflow.org_trainjobs.yaml"
WORKDIR = "s3://steelflow/trainjobs"
ON = {"kubeflow": {"trainer": {"enabled": True, "workdir": WORKDIR}}}
RUN = "0d6f3a1e-7c41-4b8e-9a55-2f1c3e5d7b90"  # a Kubeflow Pipelines run id


def _on() -> list[str]:
    return ["kubeflow.trainer.enabled=true", f"kubeflow.trainer.workdir={WORKDIR}"]


def params(**changes: Any) -> config.Params:
    return config.parse_params(deep_update(repo_params(), deep_update(ON, changes)), source="params.yaml")


# --- the manifest against the CRD ---------------------------------------------------------------------


def crd() -> dict:
    return crds.crd(CRD)


def problems(job: dict) -> list[str]:
    return crds.problems(CRD, job)


def test_the_vendored_crd_is_the_trainjob_of_kubeflow_trainer_v2_3_with_its_source_and_licence():
    head = CRD.read_text().split("---", 1)[0]
    assert "kubeflow/trainer" in head and "v2.3.0" in head and "Apache" in head
    assert re.search(r"commit [0-9a-f]{40}", head)
    assert crd()["spec"]["names"]["kind"] == manifest.KIND
    assert crd()["spec"]["group"] == manifest.GROUP
    assert [v["name"] for v in crd()["spec"]["versions"]] == [manifest.VERSION]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"kubeflow": {"trainer": {"num_nodes": 4, "timeout": None}, "gpu": {"count": 8, "cpu_limit": "12"}}},
        {
            "kubeflow": {
                "trainer": {"procs_per_node": 2, "runtime_kind": "TrainingRuntime"},
                "gpu": {"count": 2},
            }
        },
        {"kubeflow": {"secrets": [], "gpu": {"node_selector": {}, "tolerations": []}}},
    ],
    ids=["repo-params", "4-nodes-of-8-gpus", "namespaced-runtime", "no-secrets-no-placement"],
)
def test_the_manifest_validates_against_the_vendored_crd(changes):
    job = manifest.build(params(**changes), manifest.job_name(RUN), pipeline_run=RUN, env={"A": "b"})
    assert problems(job) == []


def test_a_field_the_crd_does_not_declare_is_refused_by_the_check():
    job = manifest.build(params(), manifest.job_name(RUN))
    job["spec"]["podTemplateOverrides"] = []  # the field runtimePatches replaced in Trainer v2.3
    assert any("podTemplateOverrides" in p for p in problems(job))
    job = manifest.build(params(), manifest.job_name(RUN))
    job["spec"]["trainer"]["numNodes"] = "two"
    assert any("numNodes" in p for p in problems(job))


def test_the_job_name_passes_the_crds_name_rule_and_leaves_room_for_the_pod_names():
    rules = {v["message"]: v["rule"] for v in crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "x-kubernetes-validations"]}  # fmt: skip
    pattern = re.search(r"matches\('(.+)'\)", next(r for r in rules.values() if "matches" in r)).group(1)
    for run in (RUN, "", "{{$.pipeline_job_uuid}}", "RUN_ID.with.dots", "9" * 80):
        name = manifest.job_name(run)
        assert re.fullmatch(pattern, name), name
        assert len(f"{name}-{manifest.NODE_JOB}-0-0") <= 63  # JobSet's pod host name, the master's address
    assert manifest.job_name(RUN) == manifest.job_name(RUN)  # a retried launcher finds its job again
    assert manifest.job_name("") != manifest.job_name("")  # no run: never someone else's job


def test_the_job_runs_the_gpu_image_on_the_gpu_nodes_with_the_resources_of_kubeflow_gpu():
    p = params(kubeflow={"trainer": {"num_nodes": 3}, "gpu": {"count": 4, "memory_limit": "20Gi"}})
    job = manifest.build(p, "steelflow-train-x")
    trainer = job["spec"]["trainer"]
    assert trainer["image"] == p.kubeflow.gpu_image
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)  # one process per GPU
    assert trainer["resourcesPerNode"] == {
        "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 4},
        "limits": {"cpu": "4", "memory": "20Gi", "nvidia.com/gpu": 4},
    }
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    assert job["spec"]["activeDeadlineSeconds"] == p.kubeflow.trainer.timeout
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]
    assert node["name"] == "node"  # the torch-distributed runtime's trainer job
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_the_job_and_its_pods_carry_the_pipeline_runs_label():
    job = manifest.build(params(), manifest.job_name(RUN), pipeline_run=RUN)
    labels = job["metadata"]["labels"]
    assert labels[manifest.RUN_LABEL] == RUN  # the label Kubeflow Pipelines puts on the run's own pods
    assert labels["app.kubernetes.io/part-of"] == "steelflow"
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["template"]["spec"]["template"]["metadata"]["labels"] == labels
    unresolved = manifest.build(params(), "steelflow-train-x", pipeline_run="{{$.pipeline_job_uuid}}")
    assert manifest.RUN_LABEL not in unresolved["metadata"]["labels"]


def test_secrets_reach_the_pods_as_secret_references_never_as_values(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2hunter2")
    job = manifest.build(params(), "steelflow-train-x", env={"STEELFLOW_GIT_COMMIT": "1a2b3c4"})
    env = {e["name"]: e for e in job["spec"]["trainer"]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "steelflow-s3", "key": "secret_key"}},
    }
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "steelflow-mlflow"
    assert env["STEELFLOW_GIT_COMMIT"] == {"name": "STEELFLOW_GIT_COMMIT", "value": "1a2b3c4"}
    text = yaml.safe_dump(job)
    assert "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY" not in text and "hunter2hunter2" not in text
    assert not {name for name in env if name.startswith("PET_")}  # the runtime's, refused if we set them


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"kubeflow": {"trainer": {"num_nodes": 0}}}, "'kubeflow.trainer.num_nodes'"),
        ({"kubeflow": {"trainer": {"procs_per_node": 0}}}, "'kubeflow.trainer.procs_per_node'"),
        ({"kubeflow": {"trainer": {"workdir": None}}}, "'kubeflow.trainer.workdir'"),
        ({"kubeflow": {"trainer": {"workdir": "/mnt/shared"}}}, "'kubeflow.trainer.workdir'"),
        ({"kubeflow": {"trainer": {"poll_seconds": 0}}}, "'kubeflow.trainer.poll_seconds'"),
        ({"kubeflow": {"trainer": {"runtime": ""}}}, "'kubeflow.trainer.runtime'"),
        ({"kubeflow": {"trainer": {"nodes": 2}}}, "unknown key 'kubeflow.trainer.nodes'"),
        ({"kubeflow": {"gpu_image": ""}}, "'kubeflow.gpu_image'"),
    ],
)
def test_bad_trainer_settings_are_refused_by_the_config_naming_the_key(changes, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        params(**changes)


def test_a_missing_image_is_refused_naming_the_key():
    tree = deep_update(repo_params(), ON)
    del tree["kubeflow"]["gpu_image"]
    with pytest.raises(ConfigError, match=re.escape("missing key 'kubeflow.gpu_image'")):
        config.parse_params(tree)


def test_more_processes_per_node_than_gpus_is_refused_before_anything_is_sent():
    p = params(kubeflow={"trainer": {"procs_per_node": 4}, "gpu": {"count": 2}})
    with pytest.raises(ConfigError, match=re.escape("kubeflow.trainer.procs_per_node is 4")):
        manifest.build(p, "steelflow-train-x")


def test_the_manifest_command_prints_what_the_launcher_submits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, deep_update(repo_params(), ON))
    result = CliRunner().invoke(app, ["trainjob", "manifest", "--run-id", RUN])
    assert result.exit_code == 0, result.output
    job = yaml.safe_load(result.output)
    assert problems(job) == []
    assert job["metadata"]["name"] == manifest.job_name(RUN)
    no_workdir = CliRunner().invoke(app, ["trainjob", "manifest", "--set", "kubeflow.trainer.enabled=false"])
    assert no_workdir.exit_code == 0  # workdir set: the job can be printed while the switch is off
    off = CliRunner().invoke(
        app,
        [
            "trainjob",
            "manifest",
            "--set",
            "kubeflow.trainer.enabled=false",
            "--set",
            "kubeflow.trainer.workdir=null",
        ],
    )
    assert off.exit_code == 2 and "kubeflow.trainer.workdir" in off.output


# --- the same torchrun line as `steelflow train --nproc` ------------------------------------------------


def _torchrun(argv: list[str]) -> tuple[Any, Any, list[str]]:
    """What torchrun makes of ``argv`` (``python -m torch.distributed.run ...``) in this environment."""
    from torch.distributed.run import config_from_args, get_args_parser

    assert argv[1:3] == ["-m", "torch.distributed.run"], argv
    args = get_args_parser().parse_args(argv[3:])
    launch, cmd, cmd_args = config_from_args(args)
    return args, launch, [cmd, *cmd_args]


def test_the_pods_torchrun_line_under_the_runtimes_pet_variables_is_what_train_nproc_2_runs(monkeypatch):
    from tests.support.servers import free_port

    job = manifest.build(params(kubeflow={"gpu": {"count": 2}}), "steelflow-train-x")
    command = job["spec"]["trainer"]["command"]
    pod = command[command.index("--") + 1 :]
    assert pod == train_command(manifest.PARAMS_FILE, python="python")  # built by the shared function
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun would set it in this process for nproc > 1
    port = free_port()
    local_args, local, local_cmd = _torchrun(train_command(manifest.PARAMS_FILE, nproc=2))
    pet = {
        "PET_NNODES": "1",
        "PET_NPROC_PER_NODE": str(job["spec"]["trainer"]["numProcPerNode"]),
        "PET_NODE_RANK": "0",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(port),
    }
    for name, value in pet.items():  # what the torch-distributed runtime sets in every pod
        monkeypatch.setenv(name, value)
    pod_args, remote, remote_cmd = _torchrun([sys.executable, *pod[1:]])
    assert remote_cmd == local_cmd  # the same interpreter running `-m steelflow train --params params.yaml`
    assert (remote.nproc_per_node, remote.min_nodes, remote.max_nodes) == (2, 1, 1)
    assert (local.nproc_per_node, local.min_nodes, local.max_nodes) == (2, 1, 1)
    assert local_args.standalone and not pod_args.standalone  # one machine: its own rendezvous
    assert remote.rdzv_endpoint == f"127.0.0.1:{port}" and pod_args.node_rank == 0  # from PET_*


def test_train_nproc_launches_the_shared_torchrun_line(tmp_path, monkeypatch):
    """`steelflow train --nproc N` starts :func:`train_command`'s line, with the effective params (params.yaml
    and its --set overrides) in the file it hands the processes."""
    import subprocess

    import yaml

    from steelflow.config import load_params

    started: list[tuple[list[str], dict]] = []

    class Recorder:
        def __init__(self, argv, *args, **kwargs):
            argv = [str(a) for a in argv]
            params_file = argv[argv.index("--params") + 1]
            started.append((argv, yaml.safe_load(Path(params_file).read_text())))
            self.stderr = iter(["rank 0 done\n"])

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    monkeypatch.chdir(tmp_path)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    write_params(tmp_path, repo_params())
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/train.json").write_text(
        '{"best_epoch": 1, "best_val_accuracy": 0.5, "epochs_run": 1,'
        ' "stopped_early": false, "seconds": 1.0, "images_per_s": 2.0, "device": "cpu"}'
    )
    result = CliRunner().invoke(
        app, ["train", "--nproc", "2", "--params", "params.yaml", "--set", "train.lr=0.01"]
    )
    assert result.exit_code == 0, result.output
    assert started, "steelflow train --nproc 2 started nothing"
    argv, tree = started[0]
    expected = train_command("PARAMS", nproc=2)
    at = expected.index("PARAMS")
    assert argv[:at] == expected[:at] and argv[at + 1 : len(expected)] == expected[at + 1 :]
    assert tree["train"]["lr"] == 0.01  # the override travels
    assert tree == load_params(tmp_path / "params.yaml", ["train.lr=0.01"]).raw()
    assert "best val accuracy 0.500" in result.output


# --- submit and wait, against a stand-in for the Kubernetes API ---------------------------------------


class FakeCustomObjects:
    """``CustomObjectsApi``'s create/get/delete for TrainJobs: each ``get`` moves a job one step along its
    script of status conditions (``[]`` is "no condition yet"); ``fail`` makes calls answer an error."""

    def __init__(self, script: list[list[tuple[str, str]]] | None = None, fail: dict[str, int] | None = None):
        self.jobs: dict[str, dict] = {}
        self.script = script or [[], [("Complete", "")]]
        self.fail = fail or {}
        self.calls: list[tuple[str, str, dict]] = []
        self.steps: dict[str, int] = {}

    def _check(self, verb: str, group: str, version: str, plural: str) -> None:
        assert (group, version, plural) == (manifest.GROUP, manifest.VERSION, manifest.PLURAL)
        if verb in self.fail:
            raise ApiException(status=self.fail[verb], reason="Forbidden" if self.fail[verb] == 403 else "x")

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kw):
        self._check("create", group, version, plural)
        self.calls.append(("create", namespace, kw))
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise ApiException(status=409, reason="AlreadyExists")
        self.jobs[name] = copy.deepcopy(body)
        self.steps[name] = 0
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        self._check("get", group, version, plural)
        self.calls.append(("get", namespace, kw))
        if name not in self.jobs:
            raise ApiException(status=404, reason="NotFound")
        step = min(self.steps[name], len(self.script) - 1)
        self.steps[name] += 1
        conditions = [
            {"type": kind, "status": "True", "reason": kind, "message": message}
            for kind, message in self.script[step]
        ]
        return {**self.jobs[name], "status": {"conditions": conditions}}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        self._check("delete", group, version, plural)
        self.calls.append(("delete", namespace, kw))
        if self.jobs.pop(name, None) is None:
            raise ApiException(status=404, reason="NotFound")


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def cluster(api: FakeCustomObjects, said: list[str] | None = None) -> tuple[Cluster, FakeTime]:
    t = FakeTime()
    return Cluster(api, "team-a", t.clock, t.sleep, (said if said is not None else []).append), t


def job(name: str = "steelflow-train-0d6f3a1e7c41") -> dict:
    return manifest.build(params(), name, pipeline_run=RUN)


def test_a_job_is_submitted_strictly_and_followed_until_complete_mocked_cluster():
    api = FakeCustomObjects(
        [[], [("Suspended", "queued by Kueue")], [("Suspended", "queued by Kueue")], [("Complete", "")]]
    )
    said: list[str] = []
    c, t = cluster(api, said)
    assert c.submit(job()) == "submitted"
    assert api.calls[0] == ("create", "team-a", {"field_validation": "Strict"})
    outcome = c.wait("steelflow-train-0d6f3a1e7c41", timeout=600, poll=15)
    assert outcome.condition == "Complete" and outcome.seconds == 45
    assert said == ["train: TrainJob steelflow-train-0d6f3a1e7c41 is suspended: queued by Kueue; waiting"]
    assert "delete" not in [verb for verb, _, _ in api.calls]  # a finished job stays for its logs


def test_a_failed_job_is_an_error_naming_the_job_and_the_conditions_message_mocked_cluster():
    api = FakeCustomObjects([[], [("Failed", "JobSet failed: pod steelflow-train-x-node-0-0 exited 5")]])
    c, _ = cluster(api)
    c.submit(job("steelflow-train-x"))
    with pytest.raises(PipelineError) as e:
        c.wait("steelflow-train-x", timeout=None, poll=1)
    assert "TrainJob steelflow-train-x in team-a failed (Failed)" in str(e.value)
    assert "pod steelflow-train-x-node-0-0 exited 5" in str(e.value)
    assert "kubectl -n team-a logs" in str(e.value)


def test_a_job_that_outlives_the_timeout_is_deleted_and_the_error_says_so_mocked_cluster():
    api = FakeCustomObjects([[]])  # never ends
    c, t = cluster(api)
    c.submit(job("steelflow-train-x"))
    with pytest.raises(TimedOut, match=r"did not finish within kubeflow.trainer.timeout = 100 s.*deleted"):
        c.wait("steelflow-train-x", timeout=100, poll=30)
    assert t.now == 100  # the last wait is cut to the deadline
    assert "steelflow-train-x" not in api.jobs
    assert api.calls[-1] == ("delete", "team-a", {"propagation_policy": "Foreground"})


def test_a_retried_launcher_takes_up_its_running_job_and_resubmits_a_failed_one_mocked_cluster():
    api = FakeCustomObjects([[]])
    c, _ = cluster(api)
    assert c.submit(job()) == "submitted"
    assert c.submit(job()) == "taken up"  # the launcher's pod died; its retry waits for the same job
    failed = FakeCustomObjects([[("Failed", "OOMKilled")]])
    c, _ = cluster(failed)
    c.submit(job())
    assert c.submit(job()) == "resubmitted"  # a retry means try again
    verbs = [verb for verb, _, _ in failed.calls]
    assert verbs[:4] == ["create", "create", "get", "delete"] and verbs[-1] == "create"


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        ({"create": 403}, "service account needs create, get and delete on trainjobs.trainer.kubeflow.org"),
        ({"create": 404}, "is Kubeflow Trainer installed"),
        ({"get": 500}, "could not read TrainJob"),
    ],
)
def test_an_api_server_refusal_is_one_clear_error_mocked_cluster(fail, message):
    c, _ = cluster(FakeCustomObjects(fail=fail))
    with pytest.raises(PipelineError, match=re.escape(message)):
        c.submit(job())
        c.wait(job()["metadata"]["name"], timeout=None, poll=1)


def test_a_job_deleted_under_the_launcher_is_a_clear_error_mocked_cluster():
    api = FakeCustomObjects([[]])
    c, _ = cluster(api)
    c.submit(job("steelflow-train-x"))
    api.jobs.clear()
    with pytest.raises(PipelineError, match="TrainJob steelflow-train-x is gone from team-a"):
        c.wait("steelflow-train-x", timeout=None, poll=1)


def test_without_a_cluster_the_launcher_says_how_to_run_locally(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod
    with pytest.raises(PipelineError, match="no Kubernetes cluster.*set kubeflow.trainer.enabled=false"):
        Cluster.connect()


def test_launch_refuses_when_the_switch_is_off():
    from steelflow.trainjob import launch

    off = config.parse_params(repo_params())
    with pytest.raises(ConfigError, match="kubeflow.trainer.enabled is false"):
        launch(off, RUN, cluster=cluster(FakeCustomObjects())[0])


# --- the pipeline -------------------------------------------------------------------------------------


def _compiled(tmp_path: Path, overrides: list[str], image_tag: str | None = None) -> tuple[dict, dict]:
    out = compile_pipeline(tmp_path / "pipeline.yaml", REPO / "params.yaml", overrides, image_tag)
    spec, platform = yaml.safe_load_all(out.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _tasks(spec: dict) -> dict[str, dict]:
    found = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def test_with_the_switch_on_the_train_task_is_a_cpu_launcher_of_the_trainjob(tmp_path):
    spec, k8s = _compiled(tmp_path, [*_on()], "9.9.9")
    tasks = _tasks(spec)
    assert "train" not in tasks and "train-trainjob" in tasks
    executor = spec["deploymentSpec"]["executors"]["exec-train-trainjob"]["container"]
    assert "run_component('train', locals(), 'trainjob')" in executor["command"][-1]
    assert executor["image"] == "ghcr.io/steelflow/steelflow:9.9.9"  # the CPU image: it only waits
    assert "accelerator" not in executor["resources"]
    assert (
        "nodeSelector" not in k8s["exec-train-trainjob"] and "tolerations" not in k8s["exec-train-trainjob"]
    )
    assert {s["secretName"] for s in k8s["exec-train-trainjob"]["secretAsEnv"]} >= {"steelflow-s3"}
    inputs = tasks["train-trainjob"]["inputs"]["parameters"]
    assert inputs["image"]["runtimeValue"]["constant"] == "ghcr.io/steelflow/steelflow-gpu:9.9.9"
    assert inputs["pipeline_run"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert set(tasks["train-trainjob"]["inputs"]["artifacts"]) == {"manifest", "splits", "tuning"}
    assert tasks["train-trainjob"]["retryPolicy"]["maxRetryCount"] == 2  # a retry takes its job up again
    model = tasks["evaluate"]["inputs"]["artifacts"]["model"]
    assert "train-trainjob" in str(model)  # evaluate reads the launcher's model


def test_with_the_switch_off_the_train_task_trains_in_its_own_gpu_pod(tmp_path):
    spec, k8s = _compiled(tmp_path, [])
    tasks = _tasks(spec)
    assert "train" in tasks and "train-trainjob" not in tasks
    assert "accelerator" in spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert "nodeSelector" in k8s["exec-train"]


def test_pipeline_compile_cli_with_the_switch_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, deep_update(repo_params(), ON))
    result = CliRunner().invoke(app, ["pipeline", "compile", "-o", "p.yaml"])
    assert result.exit_code == 0, result.output
    assert "comp-train-trainjob" in Path("p.yaml").read_text()
    bad = CliRunner().invoke(
        app, ["pipeline", "compile", "-o", "q.yaml", "--set", "kubeflow.trainer.num_nodes=0"]
    )
    assert bad.exit_code == 2 and "kubeflow.trainer.num_nodes" in bad.output
