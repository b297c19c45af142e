"""A TrainJob's round trip for real, but for the cluster: the launcher uploads its workspace to a real S3
server (SeaweedFS), a stand-in for the Kubernetes API starts the job's pods as processes with the
environment the torch runtime gives them (``PET_*``) and runs each pod's command from the manifest
(``steelflow trainjob run <job> -- <torchrun line>``), rank 0's pod pushes the outputs, and the launcher
downloads them into its workspace. No Kubernetes cluster exists here, hence ``_mocked_cluster``."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from steelflow import config, paths
from steelflow.cli import app
from steelflow.errors import PipelineError
from steelflow.trainjob import launch, manifest
from steelflow.trainjob.cluster import Cluster
from steelflow.trainjob.exchange import outputs
from tests.support.helpers import deep_update, repo_params, write_params
from tests.support.servers import S3_KEYS, VENV_BIN, free_port, s3_client, s3_server

pytestmark = pytest.mark.integration
BUCKET = "steelflow"
RUN = "5b0e2c9d-4f1a-4e7b-8c3d-9a6f1e2d3c4b"

# What the training stands in for, in the fast test: it reads what the launcher sent and writes the train
# step's outputs as rank 0 would (only on node 0); the slow test runs the real torchrun line instead.
STAND_IN = """
import json, os, pathlib, sys
params = pathlib.Path("params.yaml").read_text()
shard = pathlib.Path("data/cache/splits/train/index.json").read_text()
if os.environ["PET_NODE_RANK"] == "0":
    for rel in sys.argv[1:]:
        path = pathlib.Path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"shard": shard, "nodes": os.environ["PET_NNODES"]}))
"""


class PodRunner:
    """``CustomObjectsApi`` for TrainJobs whose ``create`` runs the job: one process per node, each the
    manifest's ``trainer.command`` with ``PET_*`` as the torch runtime sets them and the values the
    secrets would hold; the job is ``Complete`` when every pod exited 0, else ``Failed``."""

    def __init__(self, env: dict[str, str], stand_in: list[str] | None = None):
        self.env, self.stand_in = env, stand_in
        self.jobs: dict[str, dict] = {}
        self.commands: list[list[str]] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kw):
        assert kw == {"field_validation": "Strict"}
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise ApiException(status=409, reason="AlreadyExists")
        trainer = body["spec"]["trainer"]
        command = list(trainer["command"])
        if self.stand_in is not None:
            command = [*command[: command.index("--") + 1], *self.stand_in]
        command[0] = str(VENV_BIN / command[0])  # the image's `steelflow`
        port, pods = free_port(), []
        for rank in range(trainer["numNodes"]):
            pet = {
                "PET_NNODES": str(trainer["numNodes"]),
                "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
                "PET_NODE_RANK": str(rank),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
            literal = {e["name"]: e["value"] for e in trainer["env"] if "value" in e}
            env = {**os.environ, **self.env, **literal, **pet}
            env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # `python` is the image's
            pods.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            self.commands.append(command)
        logs = [pod.communicate(timeout=600)[0].decode() for pod in pods]
        failed = [i for i, pod in enumerate(pods) if pod.returncode != 0]
        kind, message = (
            ("Failed", f"pods {failed} failed:\n" + "\n".join(logs)) if failed else ("Complete", "")
        )
        status = {"conditions": [{"type": kind, "status": "True", "reason": kind, "message": message}]}
        self.jobs[name] = {**copy.deepcopy(body), "status": status}
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        if name not in self.jobs:
            raise ApiException(status=404, reason="NotFound")
        return self.jobs[name]

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        self.jobs.pop(name, None)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3"), BUCKET) as url:
        yield url


@pytest.fixture
def s3_env(s3, monkeypatch) -> dict[str, str]:
    env = {**S3_KEYS, "AWS_ENDPOINT_URL": s3, "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def workspace(root: Path, changes: dict) -> config.Params:
    """A launcher's workspace: the run's params and the inputs the train task gets (a stand-in shard set)."""
    tree = deep_update(repo_params(), changes)
    write_params(root, tree)
    index = root / "data" / "cache" / "splits" / "train" / "index.json"
    index.parent.mkdir(parents=True)
    index.write_text('{"shards": ["train-000000.tar"], "images": 42}')
    (index.parent / "train-000000.tar").write_bytes(os.urandom(2048))
    return config.load_params(root / "params.yaml")


def test_the_launcher_sends_the_workspace_runs_the_pods_and_gets_rank_0s_outputs_mocked_cluster(
    tmp_path, monkeypatch, s3_env
):
    workdir = f"s3://{BUCKET}/trainjobs"
    p = workspace(tmp_path, {"kubeflow": {"trainer": {"enabled": True, "workdir": workdir, "num_nodes": 2}}})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEELFLOW_GIT_COMMIT", "1a2b3c4")
    declared = [str(o) for o in outputs()]
    api = PodRunner(s3_env, stand_in=["python", "-c", STAND_IN, *declared])
    run = launch(p, RUN, cluster=Cluster(api, "team-a", sleep=lambda s: None))
    assert run.name == manifest.job_name(RUN) and run.nodes == 2
    assert api.commands[0][1:5] == ["trainjob", "run", f"{workdir}/{run.name}", "--attempts"]
    for rel in declared:  # back in the workspace, written by node 0 from the shards it pulled
        assert "train-000000.tar" in (tmp_path / rel).read_text(), rel
        assert '"nodes": "2"' in (tmp_path / rel).read_text()
    listed = s3_client(s3_env["AWS_ENDPOINT_URL"]).list_objects_v2(Bucket=BUCKET)["Contents"]
    keys = {o["Key"] for o in listed}
    prefix = f"trainjobs/{run.name}"
    assert f"{prefix}/inputs/params.yaml" in keys
    assert f"{prefix}/inputs/data/cache/splits/train/train-000000.tar" in keys
    assert {f"{prefix}/outputs/{rel}" for rel in declared} <= keys
    assert run.lines()[0].startswith(f"train: TrainJob {run.name} in team-a complete")


def test_a_training_that_fails_in_its_pod_fails_the_launcher_naming_the_job_mocked_cluster(
    tmp_path, monkeypatch, s3_env
):
    p = workspace(tmp_path, {"kubeflow": {"trainer": {"enabled": True, "workdir": f"s3://{BUCKET}/failing"}}})
    monkeypatch.chdir(tmp_path)
    api = PodRunner(s3_env, stand_in=["python", "-c", "import sys; print('loss is nan'); sys.exit(5)"])
    with pytest.raises(PipelineError, match=r"TrainJob steelflow-train-\w+ in team-a failed") as e:
        launch(p, RUN, cluster=Cluster(api, "team-a", sleep=lambda s: None))
    assert "loss is nan" in str(e.value)
    assert not (tmp_path / paths.MODEL).exists()


def test_a_complete_job_that_pushed_nothing_is_a_clear_error_mocked_cluster(tmp_path, monkeypatch, s3_env):
    p = workspace(tmp_path, {"kubeflow": {"trainer": {"enabled": True, "workdir": f"s3://{BUCKET}/silent"}}})
    monkeypatch.chdir(tmp_path)
    api = PodRunner(s3_env, stand_in=["python", "-c", "pass"])  # exits 0, writes no model
    with pytest.raises(PipelineError, match=r"completed, but its outputs could not be fetched: .*silent/"):
        launch(p, RUN, cluster=Cluster(api, "team-a", sleep=lambda s: None))


@pytest.mark.slow
@pytest.mark.parametrize("procs", [1, 2])
def test_the_manifests_own_command_trains_one_epoch_under_torchrun_mocked_cluster(
    procs, tmp_path, monkeypatch, s3_env
):
    """The real pod command, unchanged: pull, `python -m torch.distributed.run -m steelflow train` on one
    or two processes (gloo on CPU) from the PET_* variables, push; the launcher gets a model that loads."""
    if procs > 1 and "--nproc" not in CliRunner().invoke(app, ["train", "--help"]).output:
        pytest.skip("distributed `steelflow train` (--nproc) is not there yet")
    from steelflow.inference import load_trained

    monkeypatch.chdir(tmp_path)
    tree = deep_update(
        repo_params(),
        {
            "train": {"epochs": 1, "device": "cpu"},
            "kubeflow": {
                "trainer": {"enabled": True, "workdir": f"s3://{BUCKET}/real", "procs_per_node": procs},
                "gpu": {"count": procs},
            },
        },
    )
    write_params(tmp_path, tree)
    for step in ("ingest", "validate", "split"):  # the inputs the train task gets: the split's shard sets
        result = CliRunner().invoke(app, [step])
        assert result.exit_code == 0, result.output
    p = config.load_params(tmp_path / "params.yaml")
    api = PodRunner(s3_env)  # the manifest's command as it is
    run = launch(p, RUN, cluster=Cluster(api, "team-a", sleep=lambda s: None))
    assert api.commands[0][api.commands[0].index("--") + 1 :] == manifest.torchrun_line()
    model, _ = load_trained(tmp_path / paths.MODEL)
    assert model is not None and run.procs_per_node == procs
