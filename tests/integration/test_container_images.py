"""The real images, built here with buildah; every step run in the CPU image as the compiled YAML says.

No Docker engine, no container runtime that can start a container and no registry here, so: the base is the
local Debian Python one (``make base-image``), buildah builds in chroot isolation, and ``buildah run`` runs
each command inside the built image's file system as its unprivileged user. There is no Kubernetes either:
:class:`Kubelet` stands in for the kfp driver and launcher. It walks the compiled pipeline's DAG in order,
writes each task's executor input as the launcher would (``minio://`` artifact URIs, whose local paths under
``/minio`` are a folder of this machine mounted into every container, the way a bucket is staged), fills
each step's environment from the secrets its platform spec names, and runs the exact ``command`` and
``args`` the YAML gives the executor. Tracking goes to the MLflow image's server, also started with
``buildah run``, whose store is a folder outside both images.

What stays unverified: the GPU image (its CUDA base cannot be pulled; its steps run in the CPU image here,
as they are the same recipe), pod scheduling, resource requests, retries, caching and the real launcher.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.support.helpers import LENIENT_GATES, REPO, SMALL, deep_update
from tests.support.servers import AuthServer, as_user, create_user

# The first test's set-up builds the base and the CPU image cold: minutes, past pyproject's 600 s if slow.
pytestmark = [pytest.mark.integration, pytest.mark.images, pytest.mark.timeout(1800)]

CI = os.environ.get("CI") == "true"
BASE_RECIPE = ("docker/base-image.sh", "docker/base.Dockerfile")
# SMALL trains 2 epochs on 16 px images, far below params.yaml's gates: relaxed so that register runs.
PIPELINE_PARAMS = deep_update(
    deep_update(SMALL, LENIENT_GATES),
    {
        "train": {"use_tuned": True},
        "tune": {"workers": 2},  # two worker pods on one study: the ParallelFor runs
        "data": {"parts": 2},  # ingest in two pods, merged (dsl.Collected)
        # The steps reach MLflow (as a user of its basic auth) and the study through these secrets
        # (kubeflow.secrets); no S3 is used.
        "kubeflow": {
            "secrets": [
                {
                    "name": "steelflow-mlflow",
                    "env": {
                        "MLFLOW_TRACKING_URI": "tracking_uri",
                        "MLFLOW_TRACKING_USERNAME": "username",
                        "MLFLOW_TRACKING_PASSWORD": "password",
                    },
                },
                {"name": "steelflow-optuna", "env": {"STEELFLOW_OPTUNA_STORAGE": "storage_url"}},
            ]
        },
    },
)


def _unusable() -> str | None:
    """Why buildah cannot build and run images here, or None when it can."""
    if shutil.which("buildah") is None:
        return "buildah is not installed (apt-get install buildah debootstrap)"
    info = subprocess.run(["buildah", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"buildah info failed: {info.stderr.strip()[:300]}"
    if os.geteuid() != 0:
        return "needs root: buildah's chroot isolation, and volumes handed to the image's user"
    # A container of nothing: proves buildah's storage works, in well under a second.
    scratch = subprocess.run(["buildah", "from", "scratch"], capture_output=True, text=True)
    if scratch.returncode != 0:
        return f"buildah cannot create a container: {scratch.stderr.strip()[:300]}"
    subprocess.run(["buildah", "rm", scratch.stdout.strip()], capture_output=True)
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap), so no local base can be built"
    return None


@pytest.fixture(scope="session")
def buildah() -> None:
    reason = _unusable()
    if reason:
        if CI:  # .ci/run installs both: in CI a missing tool is a failure, not a skip
            pytest.fail(f"the image tests must run in CI: {reason}")
        pytest.skip(reason)


def sh(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def image_exists(tag: str) -> bool:
    return sh("buildah", "inspect", "--type", "image", tag).returncode == 0


def image_config(tag: str) -> dict:
    """The image's Docker config (User, Env, Cmd, Healthcheck, ...)."""
    out = sh("buildah", "inspect", "--type", "image", tag)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["Docker"]["config"]


def build(dockerfile: Path, tag: str, context: Path = REPO, **args: str) -> subprocess.CompletedProcess:
    """``docker/build.sh buildah`` as ``make image`` runs it, with this machine's pip settings (HOST_PIP=1)
    and torch from pip's own indexes (torch's CPU index is not reachable here; the lock's torch==2.13.0 is
    a CPU wheel on this machine's disk)."""
    build_args = [f"--build-arg={k}={v}" for k, v in {"TORCH_INDEX": "", **args}.items()]
    command = ["sh", str(REPO / "docker/build.sh"), "buildah", "-f", str(dockerfile), *build_args]
    return sh(*command, "-t", tag, str(context), timeout=1800, env={"HOST_PIP": "1"})


def built(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]


@pytest.fixture(scope="session")
def base_image(buildah) -> str:
    """The local Debian Python base, built once; reused while its recipe is unchanged."""
    recipe = hashlib.sha256(b"".join((REPO / p).read_bytes() for p in BASE_RECIPE)).hexdigest()[:12]
    tag = f"localhost/steelflow-base:test-{recipe}"
    if not image_exists(tag):
        proc = sh("sh", str(REPO / "docker/base-image.sh"), "buildah", tag, timeout=900)
        built(proc)
    return tag


@pytest.fixture(scope="session")
def git_sha() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def cpu_image(base_image, git_sha) -> str:
    tag = f"localhost/steelflow:test-{git_sha}"
    started = time.perf_counter()
    built(build(REPO / "docker/Dockerfile", tag, BASE=base_image, GIT_SHA=git_sha))
    print(f"\nCPU image built in {time.perf_counter() - started:.0f} s")
    return tag


@pytest.fixture(scope="session")
def mlflow_image(base_image) -> str:
    tag = "localhost/steelflow-mlflow:test"
    built(build(REPO / "docker/mlflow.Dockerfile", tag, REPO / "docker", BASE=base_image))
    return tag


def run_in(
    image: str,
    *command: str,
    volumes: dict[Path, str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """``command`` in a fresh container of ``image``, as a pod gets, as the image's user; then removed."""
    ctr = sh("buildah", "from", "--pull=never", image)
    assert ctr.returncode == 0, ctr.stderr
    name = ctr.stdout.strip()
    flags = [f"--volume={host}:{inside}" for host, inside in (volumes or {}).items()]
    flags += [f"--env={k}={v}" for k, v in (env or {}).items()]
    try:
        return sh("buildah", "run", "--isolation", "chroot", *flags, name, "--", *command, timeout=timeout)
    finally:
        sh("buildah", "rm", name)


def smoke(image: str, project: Path) -> list[str]:
    """What a user first runs in the image, with a project (params.yaml) mounted at its working folder /work;
    returns the commands that failed, with their output."""
    project.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    os.chown(project, *user_of(image))
    checks = [
        (
            "python",
            "-c",
            "import steelflow, torch, mlflow, kfp, components, pipelines; print(torch.__version__)",
        ),
        ("steelflow", "--help"),
        ("steelflow", "pipeline", "compile", "-o", "pipeline.yaml"),
    ]
    failed = []
    for check in checks:
        proc = run_in(image, *check, volumes={project: "/work"})
        if proc.returncode != 0:
            failed.append(f"{' '.join(check)} → {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}")
    return failed


def user_of(image: str) -> tuple[int, int]:
    """The numeric user:group the image runs as (a mounted volume must be theirs, as fsGroup makes it)."""
    user, _, group = image_config(image)["User"].partition(":")
    assert user.isdigit(), f"USER {user!r} is not numeric: Kubernetes' runAsNonRoot cannot check it"
    return int(user), int(group or user)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_cpu_image_runs_as_a_user_with_the_lock_installed(cpu_image, tmp_path, git_sha):
    assert smoke(cpu_image, tmp_path / "project") == []
    spec = next(yaml.safe_load_all((tmp_path / "project/pipeline.yaml").read_text()))
    assert spec["pipelineInfo"]["name"] == "steel-defect-pipeline"
    proc = run_in(
        cpu_image,
        "sh",
        "-c",
        'id -u; python -c "import torch; print(torch.__version__)"; echo "$STEELFLOW_GIT_COMMIT";'
        "for d in /minio /s3 /gcs /oci /work; do test -w $d || echo not writable: $d; done",
    )
    assert proc.returncode == 0, proc.stderr
    uid, torch_version, commit, *unwritable = proc.stdout.split("\n")[:-1]
    assert uid != "0" and unwritable == []  # where Kubeflow's launcher stages artifacts
    assert torch_version == "2.13.0+cpu"  # the lock's torch, CPU build: no CUDA wheels in the image
    assert commit == git_sha


def test_no_build_setting_of_this_machine_stays_in_the_image(cpu_image):
    """The pip settings were mounts: the image keeps no pip.conf, no CA path or wheel folder of this host."""
    env = image_config(cpu_image)["Env"]
    assert not [e for e in env if e.startswith("PIP_")], env
    proc = run_in(
        cpu_image,
        "sh",
        "-c",
        "find /run/host-pip -mindepth 1 2>/dev/null; test ! -e /etc/pip.conf && pip config list",
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


# Each COPY of docker/Dockerfile, removed in turn from a copy of it: the build or the smoke checks must fail.
COPIES = [line for line in (REPO / "docker/Dockerfile").read_text().splitlines() if line.startswith("COPY ")]


@pytest.mark.parametrize("removed", COPIES)
def test_a_dockerfile_missing_a_copy_fails(removed, cpu_image, base_image, tmp_path):
    """Cheap after the real build: the layers above the removed line come from buildah's cache."""
    broken = tmp_path / "Dockerfile"
    broken.write_text((REPO / "docker/Dockerfile").read_text().replace(removed + "\n", ""))
    tag = f"localhost/steelflow-broken:{uuid.uuid4().hex[:8]}"
    proc = build(broken, tag, BASE=base_image)
    try:
        if proc.returncode == 0:
            assert smoke(tag, tmp_path / "project") != [], f"an image without `{removed}` passed every check"
    finally:
        sh("buildah", "rmi", tag)


class Kubelet:
    """Runs a compiled pipeline's tasks in the images, in DAG order, as the kfp driver and launcher would.

    Only what this pipeline uses is implemented (parameter and artifact passing, ``dsl.If`` conditions of the
    form ``inputs.parameter_values['x'] == true``, ParallelFors over a list parameter, and a loop's artifacts
    gathered by ``dsl.Collected``: the loop DAG's output, one artifact per iteration in item order, passed as
    an artifact list); anything else in the YAML fails loudly rather than being run differently.
    """

    def __init__(self, package: Path, images: dict[str, str], secrets: dict, bucket: Path, root: Path):
        self.spec, platform = yaml.safe_load_all(package.read_text())
        self.k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        self.images, self.secrets, self.bucket, self.root = images, secrets, bucket, root
        self.run_id = uuid.uuid4().hex[:12]
        self.ran: list[str] = []  # task names, in the order they ran
        self.outputs: dict[str, dict] = {}  # task name → its executor output (parameters, artifacts)

    def run(self) -> None:
        defaults = {
            k: v.get("defaultValue") for k, v in self.spec["root"]["inputDefinitions"]["parameters"].items()
        }
        self._dag(self.spec["root"], {"parameters": defaults, "artifacts": {}})

    def _dag(self, component: dict, scope: dict) -> dict[str, dict]:
        """Run a DAG's tasks; returns its output artifacts (what its ``artifactSelectors`` pick)."""
        tasks = component["dag"]["tasks"]
        assert not component["dag"].get("outputs", {}).get("parameters"), "DAG output parameters"
        done: dict[str, dict] = {}
        for name in _order(tasks):
            task = tasks[name]
            inputs = self._inputs(task["inputs"], scope, done)
            condition = task.get("triggerPolicy", {}).get("condition")
            if condition and not _condition(condition, inputs["parameters"]):
                continue
            child = self.spec["components"][task["componentRef"]["name"]]
            if "parameterIterator" in task:
                it = task["parameterIterator"]
                items = inputs["parameters"][it["items"]["inputParameter"]]
                scopes = [_with(inputs, it["itemInput"], item) for item in items]
                with concurrent.futures.ThreadPoolExecutor(len(scopes)) as pool:  # pods run side by side
                    each = list(pool.map(lambda s, c=child: self._dag(c, s), scopes))
                collected = {key: [outputs[key] for outputs in each] for key in (each[0] if each else {})}
                done[name] = {"parameters": {}, "artifacts": collected}  # dsl.Collected: one per item
            elif "dag" in child:
                done[name] = {"parameters": {}, "artifacts": self._dag(child, inputs)}
            else:
                done[name] = self._execute(name, child, inputs)
        selected = component["dag"].get("outputs", {}).get("artifacts", {})
        picked = {key: out["artifactSelectors"] for key, out in selected.items()}
        assert all(len(s) == 1 for s in picked.values()), f"one selector per DAG output: {picked}"
        return {
            key: done[s[0]["producerSubtask"]]["artifacts"][s[0]["outputArtifactKey"]]
            for key, s in picked.items()
        }

    def _inputs(self, spec: dict, scope: dict, done: dict) -> dict:
        params, artifacts = {}, {}
        for key, src in spec.get("parameters", {}).items():
            if "componentInputParameter" in src:
                params[key] = scope["parameters"][src["componentInputParameter"]]
            elif "taskOutputParameter" in src:
                ref = src["taskOutputParameter"]
                params[key] = done[ref["producerTask"]]["parameters"][ref["outputParameterKey"]]
            elif "runtimeValue" in src:
                params[key] = src["runtimeValue"]["constant"]
            else:
                raise NotImplementedError(f"parameter source {src}")
        for key, src in spec.get("artifacts", {}).items():
            if "componentInputArtifact" in src:
                artifacts[key] = scope["artifacts"][src["componentInputArtifact"]]
            elif "taskOutputArtifact" in src:
                ref = src["taskOutputArtifact"]
                artifacts[key] = done[ref["producerTask"]]["artifacts"][ref["outputArtifactKey"]]
            else:
                raise NotImplementedError(f"artifact source {src}")
        return {"parameters": params, "artifacts": artifacts}

    def _execute(self, name: str, component: dict, inputs: dict) -> dict:
        """One pod: the launcher's executor input, the executor's exact command, the secrets as env."""
        label = component["executorLabel"]
        container = self.spec["deploymentSpec"]["executors"][label]["container"]
        pod = f"{name}-{uuid.uuid4().hex[:6]}"  # a ParallelFor runs one component several times
        uri = f"minio://mlpipeline/v2/artifacts/steel-defect-pipeline/{self.run_id}/{name}/{pod}"
        outputs = component.get("outputDefinitions", {})
        executor_input = {
            "inputs": {
                "parameterValues": inputs["parameters"],
                "artifacts": {  # a list: the artifacts dsl.Collected gathered from a ParallelFor
                    k: {"artifacts": v if isinstance(v, list) else [v]}
                    for k, v in inputs["artifacts"].items()
                },
            },
            "outputs": {
                "parameters": {
                    k: {"outputFile": f"/tmp/kfp/outputs/{k}"} for k in outputs.get("parameters", {})
                },
                "artifacts": {
                    k: {
                        "artifacts": [
                            {"name": k, "type": v["artifactType"], "uri": f"{uri}/{k}", "metadata": {}}
                        ]
                    }
                    for k, v in outputs.get("artifacts", {}).items()
                },
                "outputFile": "/tmp/kfp_outputs/output_metadata.json",
            },
        }
        command = [*container["command"], *container.get("args", [])]
        for part in command:
            leftover = part.replace("{{$}}", "")
            assert "{{$" not in leftover, f"{label}: a placeholder this stand-in does not fill: {part[:200]}"
        command = [part.replace("{{$}}", json.dumps(executor_input)) for part in command]
        env = {
            pair["envVar"]: self.secrets[secret["secretName"]][pair["secretKey"]]  # a missing one: no pod
            for secret in self.k8s.get(label, {}).get("secretAsEnv", [])
            for pair in secret["keyToEnv"]
        }
        meta = self.root / pod
        meta.mkdir(parents=True)
        os.chown(meta, *user_of(self.images[container["image"]]))
        proc = run_in(
            self.images[container["image"]],
            *command,
            volumes={self.bucket: "/minio", meta: "/tmp/kfp_outputs"},
            env=env,
            timeout=900,
        )
        (self.root / f"{pod}.log").write_text(proc.stdout + proc.stderr)
        assert proc.returncode == 0, (
            f"task {name} failed in its container:\n{(proc.stdout + proc.stderr)[-6000:]}"
        )
        self.ran.append(name)
        written = json.loads((meta / "output_metadata.json").read_text())
        self.outputs[pod] = written
        artifacts = {}
        for key, listed in executor_input["outputs"]["artifacts"].items():
            artifact = dict(listed["artifacts"][0])
            artifact["metadata"] = (
                written.get("artifacts", {}).get(key, {}).get("artifacts", [{}])[0].get("metadata", {})
            )
            artifacts[key] = artifact
        return {"parameters": written.get("parameterValues", {}), "artifacts": artifacts}


def _order(tasks: dict) -> list[str]:
    """Tasks in dependency order (dependentTasks within this DAG), ties by name for a stable order."""
    order, left = [], dict(tasks)
    while left:
        ready = sorted(n for n, t in left.items() if not set(t.get("dependentTasks", [])) - set(order))
        assert ready, f"a cycle among {sorted(left)}"
        order.append(ready[0])
        del left[ready[0]]
    return order


def _condition(expression: str, params: dict) -> bool:
    match = re.fullmatch(r"inputs\.parameter_values\['([^']+)'\] == (true|false)", expression)
    if not match:
        raise NotImplementedError(f"condition {expression!r}")
    return params[match[1]] is (match[2] == "true")


def _with(inputs: dict, name: str, value) -> dict:
    return {"parameters": {**inputs["parameters"], name: value}, "artifacts": inputs["artifacts"]}


@pytest.fixture(scope="module")
def mlflow_server(mlflow_image, tmp_path_factory) -> str:
    """The MLflow image's own CMD, run with ``buildah run`` on a free port; its store a folder here. Its
    admin's password is a file, as a Docker secret would be: buildah's own command line stays without it."""
    store = tmp_path_factory.mktemp("mlflow-store")
    uid_gid = user_of(mlflow_image)
    os.chown(store, *uid_gid)
    admin = ("admin", secrets.token_urlsafe(18))
    password_file = store / "admin-password"
    password_file.write_text(admin[1] + "\n")
    password_file.chmod(0o600)
    os.chown(password_file, *uid_gid)
    port = free_port()
    ctr = sh("buildah", "from", "--pull=never", mlflow_image).stdout.strip()
    env = {
        "MLFLOW_BACKEND_STORE_URI": "sqlite:////mlflow/mlflow.db",
        "MLFLOW_ARTIFACTS_DESTINATION": "/mlflow/artifacts",
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": "/mlflow/admin-password",
        "MLFLOW_HOST": "127.0.0.1",  # chroot isolation shares this machine's network: loopback only
        "MLFLOW_PORT": str(port),
    }
    flags = [f"--env={k}={v}" for k, v in env.items()]
    log = (store / "server.log").open("w")
    server = subprocess.Popen(
        ["buildah", "run", "--isolation", "chroot", f"--volume={store}:/mlflow", *flags, ctr, "--",
         *image_config(mlflow_image)["Cmd"]],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped whole, workers included
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (
                f"mlflow server exited:\n{(store / 'server.log').read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, "mlflow server did not answer /health within 180 s"
            time.sleep(1)
        yield url, ctr, store, flags, admin
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        sh("buildah", "rm", ctr)


def test_the_mlflow_image_serves_health_and_logs_a_run(mlflow_server, mlflow_image):
    from mlflow import MlflowClient

    url, ctr, store, env, admin = mlflow_server
    with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
        assert r.read().decode().strip() == "OK"
    # the basic-auth app: nothing but /health without credentials
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=5)
    assert refused.value.code == 401
    # The image's own HEALTHCHECK, run as Docker would: in the server's container, with its environment.
    check = image_config(mlflow_image)["Healthcheck"]["Test"]
    assert check[0] == "CMD"
    proc = sh("buildah", "run", "--isolation", "chroot", *env, ctr, "--", *check[1:])
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(url)
    with as_user(*admin):
        experiment = client.create_experiment("image-check")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "accuracy", 0.93)
        client.log_text(run.info.run_id, "hello from outside the image", "note.txt")
        client.set_terminated(run.info.run_id)
        assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.93}
    assert (store / "mlflow.db").is_file()  # the store lives outside the image
    assert any(p.name == "note.txt" for p in (store / "artifacts").rglob("*"))


@pytest.fixture(scope="module")
def pipeline_run(cpu_image, mlflow_server, tmp_path_factory, git_sha) -> tuple[Kubelet, str]:
    """Compile inside the image, then run every task of that YAML in the image, in order."""
    url, store, admin = mlflow_server[0], mlflow_server[2], mlflow_server[4]
    # the steps log and register as a user the admin created, not as the admin
    password = create_user(AuthServer(url, admin, store / "server.log"), "pipeline")
    root = tmp_path_factory.mktemp("kubelet")
    uid_gid = user_of(cpu_image)
    bucket, stores, compiled = root / "bucket", root / "stores", root / "compiled"
    for folder in (bucket, stores, compiled):
        folder.mkdir()
        os.chown(folder, *uid_gid)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    gpu_tag = "localhost/steelflow-gpu:unbuilt"
    params = deep_update(params, PIPELINE_PARAMS)
    params["kubeflow"]["image"], params["kubeflow"]["gpu_image"] = cpu_image, gpu_tag
    (compiled / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run_in(
        cpu_image,
        "steelflow", "pipeline", "compile",
        "-o", "/compiled/pipeline.yaml", "--params", "/compiled/params.yaml",
        volumes={compiled: "/compiled"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    secrets = {
        "steelflow-mlflow": {"tracking_uri": url, "username": "pipeline", "password": password},
        # A volume every step mounts, standing in for the study's database server.
        "steelflow-optuna": {"storage_url": "sqlite:////minio/optuna.db"},
    }
    # The GPU steps' image cannot be built here (no CUDA base): they run in the CPU image, the same recipe.
    kubelet = Kubelet(
        compiled / "pipeline.yaml", {cpu_image: cpu_image, gpu_tag: cpu_image}, secrets, bucket, root
    )
    started = time.perf_counter()
    kubelet.run()
    print(
        f"\nthe pipeline's {len(kubelet.ran)} tasks ran in the image in {time.perf_counter() - started:.0f} s"
    )
    return kubelet, url, admin


def test_every_step_runs_in_the_image_and_registers_a_model_outside_it(pipeline_run, git_sha):
    from mlflow import MlflowClient

    kubelet, url, admin = pipeline_run
    # settings turns the run's typed parameters into params overrides before anything else runs
    parts = ["ingest-part"] * PIPELINE_PARAMS["data"]["parts"]
    assert kubelet.ran[: 4 + len(parts)] == ["settings", "ingest-plan", *parts, "ingest-merge", "validate"]
    corrupt = deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), PIPELINE_PARAMS)["corrupt"]
    # a corrupt part per Table 1 or hold-out condition, and one per graded family
    conditions = [c["name"] for c in corrupt["conditions"] + corrupt["holdout"]]
    conditions += [f"graded:{f}" for f in (corrupt.get("graded") or {}).get("families", {})]
    assert kubelet.ran.index("split") < kubelet.ran.index("corrupt-part")
    assert sorted(kubelet.ran) == sorted(
        ["settings", "ingest-plan", *parts, "ingest-merge", "validate", "split", "corrupt-plan",
         *["corrupt-part"] * len(conditions), "corrupt-merge", "tune-start", "tune-worker", "tune-worker",
         "tune-finish", "train", "evaluate", "gate", "register"]
    )  # fmt: skip
    for loop, after in (("corrupt-part", "corrupt-merge"), ("tune-worker", "tune-finish")):
        assert kubelet.ran.index(after) > max(i for i, n in enumerate(kubelet.ran) if n == loop)
    assert kubelet.ran[-3:] == ["evaluate", "gate", "register"]
    registered = next(o for pod, o in kubelet.outputs.items() if pod.startswith("register-"))
    version = registered["parameterValues"]["Output"]
    client = MlflowClient(url)
    with as_user(*admin):
        challenger = client.get_model_version_by_alias("steel-defect-classifier", "challenger")
        assert str(challenger.version) == version == "1"
        assert challenger.tags["git_commit"] == git_sha  # the commit the image was built from
        run = client.get_run(challenger.run_id)
    assert "eval/clean_accuracy" in run.data.metrics


def test_the_steps_artifacts_are_where_a_bucket_would_hold_them(pipeline_run):
    kubelet, _, _ = pipeline_run
    prefix = kubelet.bucket / "mlpipeline/v2/artifacts/steel-defect-pipeline" / kubelet.run_id
    manifests = list(prefix.glob("ingest-merge/*/dataset/data/manifest.csv"))
    assert len(manifests) == 1 and manifests[0].stat().st_uid != 0  # written by the image's user
    assert list(prefix.glob("train/*/model/models/model.pt"))
    assert list(prefix.glob("validate/*/data_docs/index.html"))
    assert "| clean accuracy |" in next(prefix.glob("gate/*/gates")).read_text()
