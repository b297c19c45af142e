"""The TrainJob object the launcher submits, built from params: plain data, no cluster needed.

``trainer.kubeflow.org/v1alpha1`` as Kubeflow Trainer v2.3 defines it (the CRD vendored in
``pipelines/crds/``; the tests validate every manifest against its schema):

- ``runtimeRef``: ``kubeflow.trainer.runtime`` (``torch-distributed``: its torch plugin sets
  ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``, ``PET_MASTER_PORT`` in
  every pod, which torchrun reads as its arguments' defaults);
- ``trainer``: ``kubeflow.gpu_image``, the pod command (:func:`pod_command`), ``numNodes``,
  ``numProcPerNode``, ``resourcesPerNode`` from ``kubeflow.gpu`` (requests and limits, the accelerator in
  both), ``env`` from ``kubeflow.secrets`` as ``secretKeyRef`` (never a literal credential) plus the git
  commit the launcher runs, so the MLflow run is tagged as under ``dvc repro``;
- ``runtimePatches`` (the field that replaced ``podTemplateOverrides`` in v2.3): the GPU nodes' selector
  and tolerations, and the run's labels on the pods;
- ``activeDeadlineSeconds``: ``kubeflow.trainer.timeout``, so the cluster stops the job even when no
  launcher is left to wait for it;
- labels ``pipeline/runid`` (the label Kubeflow Pipelines puts on its own pods: one selector finds the
  run's step pods and its training pods), ``app.kubernetes.io/part-of: steelflow``,
  ``app.kubernetes.io/component: train``.
"""

from __future__ import annotations

import re
import secrets as _random
from collections.abc import Mapping
from typing import Any

from steelflow.config import DEFAULT_PARAMS, KubeflowConfig, Params
from steelflow.errors import ConfigError
from steelflow.training.torchrun import train_command

LAUNCHED_STEP = "train"  # the step whose task can be a TrainJob launcher (components: <step>_trainjob)
GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
MANAGER = "steelflow.io/launcher"  # our entry of runtimePatches (each patch is owned by one manager)
NODE_JOB = "node"  # the torch runtime's replicated job whose pods train
RUN_LABEL = "pipeline/runid"
PARAMS_FILE = str(DEFAULT_PARAMS)  # the params file in the pods' folder: the launcher's workspace's
# literal values the launcher passes on; MLFLOW_RUN_ID: the training run nests under the task's parent run
FORWARDED = ("STEELFLOW_GIT_COMMIT", "STEELFLOW_GIT_DIRTY", "MLFLOW_RUN_ID")
# JobSet names the pods <job>-node-<i>-<j> and their service <job>; the master's host name must stay a
# 63-character DNS label, so the job's name stays well below that.
_NAME_PREFIX, _NAME_TOKEN = "steelflow-train-", 12


def job_name(pipeline_run: str = "") -> str:
    """``steelflow-train-<12 letters or digits of the pipeline run's id>``: a retry of the launcher task
    (same run) finds its job again. Without a run id (a run outside Kubeflow Pipelines), a random one."""
    token = re.sub(r"[^a-z0-9]", "", pipeline_run.lower())[:_NAME_TOKEN]
    return _NAME_PREFIX + (token if len(token) == _NAME_TOKEN else _random.token_hex(_NAME_TOKEN // 2))


def job_url(workdir: str, name: str) -> str:
    """Where the job ``name`` exchanges files: ``<workdir>/<name>`` (``inputs/``, ``outputs/`` below it)."""
    return f"{workdir.rstrip('/')}/{name}"


def procs_per_node(kf: KubeflowConfig) -> int:
    """``kubeflow.trainer.procs_per_node``, or one process per GPU a node gets (``kubeflow.gpu.count``).

    Not ``train.distributed.nproc``: that counts the devices of the machine ``steelflow train --nproc``
    runs on; a TrainJob's node is the pod ``kubeflow.gpu`` describes. More processes than GPUs would put
    two NCCL ranks on one device, which NCCL refuses, so that is refused here, before anything is sent.
    """
    n = kf.trainer.procs_per_node or kf.gpu.count
    if n > kf.gpu.count:
        raise ConfigError(
            f"kubeflow.trainer.procs_per_node is {n} but each node gets kubeflow.gpu.count = {kf.gpu.count} "
            "GPU(s): one training process per GPU (lower it, or raise kubeflow.gpu.count)"
        )
    return n


def pod_command(url: str, attempts: int) -> list[str]:
    """What each pod runs: pull the inputs from ``url``, then the torchrun line ``steelflow train --nproc``
    runs locally (:func:`~steelflow.training.torchrun.train_command`; ``PET_*`` say where), then rank 0's
    pod pushes the outputs (:func:`steelflow.trainjob.exchange.run_in_pod`)."""
    return [
        "steelflow",
        "trainjob",
        "run",
        url,
        "--attempts",
        str(attempts),
        "--",
        *torchrun_line(),
    ]


def torchrun_line() -> list[str]:
    """The training command inside a pod: the image's ``python``, arguments from ``PET_*``."""
    return train_command(PARAMS_FILE, python="python")


def build(
    p: Params,
    name: str,
    image: str | None = None,
    pipeline_run: str = "",
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The TrainJob ``name`` for params ``p``: on ``image`` (default ``kubeflow.gpu_image``), labelled with
    ``pipeline_run``, with ``env`` as literal variables beside the secrets (the launcher passes
    :data:`FORWARDED`)."""
    kf = p.kubeflow
    if kf is None:
        raise ConfigError("params has no 'kubeflow' section: add one (see params.yaml)")
    t = kf.trainer
    if t.workdir is None:
        raise ConfigError("kubeflow.trainer.workdir is not set: an s3://bucket/prefix the pods can reach")
    labels = _labels(pipeline_run)
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": GROUP, "kind": t.runtime_kind, "name": t.runtime},
        "trainer": {
            "image": image or kf.gpu_image,
            "command": pod_command(job_url(t.workdir, name), p.data.s3_retries),
            "numNodes": t.num_nodes,
            "numProcPerNode": procs_per_node(kf),
            "resourcesPerNode": _resources(kf),
            "env": _env(kf, env or {}),
        },
        "runtimePatches": [{"manager": MANAGER, "trainingRuntimeSpec": _placement(kf, labels)}],
    }
    if t.timeout is not None:
        spec["activeDeadlineSeconds"] = t.timeout
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"steelflow.io/workdir": job_url(t.workdir, name)},
        },
        "spec": spec,
    }


def _labels(pipeline_run: str) -> dict[str, str]:
    labels = {"app.kubernetes.io/part-of": "steelflow", "app.kubernetes.io/component": "train"}
    value = re.sub(r"[^A-Za-z0-9._-]", "-", pipeline_run)[:63].strip("-._")
    if value and "{{" not in pipeline_run:  # an unresolved placeholder is no run id
        labels[RUN_LABEL] = value
    return labels


def _resources(kf: KubeflowConfig) -> dict[str, dict[str, Any]]:
    gpu = kf.gpu
    return {
        "requests": {"cpu": gpu.cpu, "memory": gpu.memory, gpu.accelerator: gpu.count},
        "limits": {
            "cpu": gpu.cpu_limit or gpu.cpu,
            "memory": gpu.memory_limit or gpu.memory,
            gpu.accelerator: gpu.count,
        },
    }


def _env(kf: KubeflowConfig, literal: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every variable of ``kubeflow.secrets`` as a reference to its secret's key, then ``literal`` ones."""
    env = [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}}
        for secret in kf.secrets
        for variable, key in secret.env.items()
    ]
    taken = {e["name"] for e in env}
    env += [{"name": k, "value": v} for k, v in literal.items() if k not in taken]
    names = [e["name"] for e in env]
    if len(set(names)) != len(names):  # the API keys env by name: a second entry would be refused
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"kubeflow.secrets maps {', '.join(twice)} more than once")
    return env


def _placement(kf: KubeflowConfig, labels: Mapping[str, str]) -> dict[str, Any]:
    """The runtime's ``node`` pods on the GPU nodes (selector, tolerations), labelled with the run."""
    pod_spec: dict[str, Any] = {}
    if kf.gpu.node_selector:
        pod_spec["nodeSelector"] = dict(kf.gpu.node_selector)
    if kf.gpu.tolerations:
        pod_spec["tolerations"] = [t.model_dump(exclude_none=True) for t in kf.gpu.tolerations]
    pod = {"metadata": {"labels": dict(labels)}, "spec": pod_spec}
    node = {"name": NODE_JOB, "template": {"spec": {"template": pod}}}
    return {"template": {"spec": {"replicatedJobs": [node]}}}
