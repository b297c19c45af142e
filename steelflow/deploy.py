"""``steelflow deploy``: a KServe InferenceService for the version a registry alias points at.

Reads ``deploy`` (the service), ``registry`` (the model's name) and ``mlflow`` (the registry); writes
``deploy.output`` (``deploy/inferenceservice.yaml``), which ``kubectl apply -f`` sends to a cluster with
KServe. No cluster is needed to write it: the tests validate it against KServe's CRD schema (vendored in
``pipelines/crds/``).

``serving.kserve.io/v1beta1`` as KServe v0.20 defines it:

- ``metadata``: ``deploy.name`` (and ``deploy.namespace``), labels ``app.kubernetes.io/part-of:
  steelflow``, ``app.kubernetes.io/component: serve``, and annotations saying which alias, version and
  registered model it serves (:data:`ANNOTATIONS`), so a manifest tells what it deploys;
- ``spec.predictor``: a *custom container* (``kserve-container``) on ``deploy.image``, the CPU image, running
  ``mlflow models serve`` on the version KServe's storage initializer downloaded to ``/mnt/models``
  (``STORAGE_URI``: the version's artifact location as the registry resolves it, :func:`storage_uri`), with
  the requests and limits of ``deploy`` and its service account (the storage credentials);
- ``--alias challenger`` adds ``canaryTrafficPercent: deploy.canary_traffic_percent``: applied over the
  running champion (same name), KServe sends that share to the new revision and the rest to the last one
  that was rolled out (serverless mode; docs/deploy.md).

Why a custom container, not KServe's MLflow runtime (``modelFormat: {name: mlflow}``, protocol v2 on
MLServer): a version is a models-from-code pyfunc (:mod:`steelflow.serving.model`) that imports steelflow's
serving code and runs ONNX Runtime on Pillow-decoded images; MLServer's MLflow runtime loads a model into
its own environment (which has neither, and lists MLflow model formats 1 and 2, not MLflow 3's) and speaks
the V2 protocol, not the ``/invocations`` requests ``steelflow serve`` and ``mlflow models serve`` answer
here. The CPU image holds the very packages the version was registered with (requirements.lock), so the
pod serves what ``steelflow serve`` serves, with the same request body.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from steelflow.atomic import write_text
from steelflow.config import DeployConfig, Params
from steelflow.errors import ConfigError
from steelflow.registry import CHALLENGER, CHAMPION, Registry, failures

GROUP, VERSION, KIND = "serving.kserve.io", "v1beta1", "InferenceService"
ALIASES = (CHAMPION, CHALLENGER)  # the champion serves; the challenger is its canary
CONTAINER = "kserve-container"  # the container KServe's storage initializer fills /mnt/models for
MODEL_DIR = "/mnt/models"
PORT = 8080  # the port Knative routes to
ANNOTATIONS = ("steelflow.io/registered-model", "steelflow.io/alias", "steelflow.io/version")
PROXIED = "mlflow-artifacts:"  # served by the tracking server (steelflow server --artifacts-destination)
# what KServe's storage initializer downloads from (its ClusterStorageContainer's URI formats, and PVCs)
FETCHABLE = ("s3://", "gs://", "hdfs://", "webhdfs://", "https://", "http://", "pvc://", "hf://", "oci://")


@dataclasses.dataclass(frozen=True)
class Deployment:
    """What ``steelflow deploy`` wrote: the manifest, for which alias and version, and from where."""

    path: Path
    alias: str
    version: str
    storage_uri: str
    canary_percent: int | None
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        canary = f" as a {self.canary_percent}% canary" if self.canary_percent is not None else ""
        return [
            f"deploy: @{self.alias} (version {self.version}){canary} from {self.storage_uri} → {self.path}",
            f"deploy: kubectl apply -f {self.path}",
        ]


def deploy(p: Params, alias: str = CHAMPION, root: Path | None = None) -> Deployment:
    """Write the InferenceService for the version ``alias`` points at to ``deploy.output`` (inside ``root``,
    the project: the current folder). An unknown alias, or one that points at no version, writes nothing."""
    if alias not in ALIASES:
        raise ConfigError(f"unknown alias {alias!r}: deploy serves {' or '.join(ALIASES)}")
    target = inside(p.deploy.output, root or Path.cwd())
    reg = Registry(p)
    with failures(reg):
        version = reg.version(alias)  # RegistryError naming the alias when nothing has it
        located = reg.call(reg.client.get_model_version_download_uri, reg.name, version.version)
    uri = storage_uri(located, p.deploy)
    canary = p.deploy.canary_traffic_percent if alias == CHALLENGER else None
    isvc = build(p.deploy, uri, reg.name, alias, str(version.version), canary)
    write_text(target, yaml.safe_dump(isvc, sort_keys=False))
    warnings = () if uri.startswith(FETCHABLE) else (unreachable(uri),)
    return Deployment(p.deploy.output, alias, str(version.version), uri, canary, warnings)


def after_rollback(p: Params, root: Path | None = None) -> Deployment | None:
    """The manifest rewritten for the champion a rollback left, when one was written before (else None):
    applying it sends all traffic back to that version, canary or not."""
    if not (Path(root or Path.cwd()) / p.deploy.output).is_file():
        return None
    return deploy(p, CHAMPION, root)


def build(
    cfg: DeployConfig, uri: str, model: str, alias: str, version: str, canary: int | None = None
) -> dict[str, Any]:
    """The InferenceService serving ``uri`` (version ``version`` of ``model``, as ``alias``); with
    ``canary``, the share of traffic it takes from the revision rolled out before it."""
    metadata: dict[str, Any] = {"name": cfg.name}
    if cfg.namespace:
        metadata["namespace"] = cfg.namespace
    metadata["labels"] = {"app.kubernetes.io/part-of": "steelflow", "app.kubernetes.io/component": "serve"}
    metadata["annotations"] = dict(zip(ANNOTATIONS, (model, alias, version), strict=True))
    predictor: dict[str, Any] = {"minReplicas": cfg.min_replicas}
    if cfg.max_replicas is not None:
        predictor["maxReplicas"] = cfg.max_replicas
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    if cfg.service_account:
        predictor["serviceAccountName"] = cfg.service_account
    predictor["containers"] = [
        {
            "name": CONTAINER,
            "image": cfg.image,
            "command": serve_command(),
            "env": [{"name": "STORAGE_URI", "value": uri}],
            "ports": [{"containerPort": PORT, "protocol": "TCP"}],
            "resources": {
                "requests": {"cpu": cfg.cpu, "memory": cfg.memory},
                "limits": {"cpu": cfg.cpu_limit or cfg.cpu, "memory": cfg.memory_limit or cfg.memory},
            },
        }
    ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }


def serve_command() -> list[str]:
    """The version KServe downloaded, served as ``mlflow models serve`` serves it here (``/invocations``,
    ``/ping``), in the image's own environment (no conda or virtualenv built in the pod)."""
    listen = ["-h", "0.0.0.0", "-p", str(PORT)]  # in the pod: Knative's proxy beside it faces the world
    return ["mlflow", "models", "serve", "-m", MODEL_DIR, "--env-manager", "local", *listen]


def storage_uri(located: str, cfg: DeployConfig) -> str:
    """Where KServe downloads the version from: its artifact location as the registry resolves it
    (``models:/`` URIs already resolved by MLflow), with a location the tracking server proxies
    (``mlflow-artifacts:/<path>``) mapped onto ``deploy.artifacts_destination``, where it really is."""
    if not located.startswith(PROXIED):
        return located
    if cfg.artifacts_destination is None:
        raise ConfigError(
            f"deploy.artifacts_destination is not set, and the version's artifacts are at {located} (served "
            "through the tracking server): set it to the server's --artifacts-destination (s3://...)"
        )
    path = urlparse(located).path  # mlflow-artifacts:/<path>, or mlflow-artifacts://<host>/<path>
    return f"{cfg.artifacts_destination.rstrip('/')}/{path.lstrip('/')}"


def inside(output: Path, root: Path) -> Path:
    """``output`` under the project ``root``; a path that leaves it (absolute, ``..``, a link) is refused."""
    base = Path(root).resolve()
    target = (base / output).resolve()
    if target == base or not target.is_relative_to(base):
        raise ConfigError(f"deploy.output: {output} is outside the project ({base}); give a path inside it")
    return target


def unreachable(uri: str) -> str:
    return (
        f"the version's artifacts are at {uri}, which a cluster cannot download from (KServe reads "
        f"{', '.join(s.removesuffix('://') for s in FETCHABLE)}): register into a team server with an S3 "
        "artifact store (docs/team.md) before applying it"
    )
