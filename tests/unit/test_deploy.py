"""`steelflow deploy`: the KServe InferenceService of a registry alias, checked against KServe's vendored CRD
schema (no cluster exists here: those tests end in ``_no_cluster_schema_only``), from a local sqlite
registry holding a tiny models-from-code pyfunc; and `steelflow rollback` rewriting it."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest
import yaml

from steelflow import config
from steelflow import deploy as deploy_module
from steelflow.errors import ConfigError
from steelflow.registry import Registry
from tests.support import crds
from tests.support.helpers import deep_update, mlflow_state_kept, repo_params, write_params
from tests.support.registered_project import cli

CRD = crds.CRDS / "serving.kserve.io_inferenceservices.yaml"
MANIFEST = Path("deploy/inferenceservice.yaml")
TINY_MODEL = """
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class Echo(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


set_model(Echo())
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A sqlite registry and one tiny pyfunc logged into it (MLflow 3: a logged model, ``models:/m-…``);
    each test registers its own versions of it under its own name. Yields (tracking URI, model URI)."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / "echo.py").write_text(TINY_MODEL)
    with pytest.MonkeyPatch.context() as mp, mlflow_state_kept():  # not the later tests' store
        mp.chdir(root)  # the default artifact root, ./mlruns, goes here
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("deploy")
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(root / "echo.py"), pip_requirements=["mlflow"]
            )
    return uri, info.model_uri


@pytest.fixture
def project(store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> Path:
    """A project folder (the cwd) whose params track into the store, with its own registered model (named
    after the test): versions 1 and 2, version 2 the champion (promoted from 1), version 1 the challenger."""
    uri, model_uri = store
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:60]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, repo_params(mlflow={"tracking_uri": uri}, registry={"name": name}))
    mlflow.set_tracking_uri(uri)  # where models:/m-… is found; undone after the test (tests/conftest.py)
    mlflow.set_registry_uri(uri)
    for _ in range(2):
        mlflow.register_model(model_uri, name)
    reg = Registry(params())
    reg.client.set_registered_model_alias(name, "champion", "2")
    reg.client.set_registered_model_alias(name, "challenger", "1")
    reg.record(action="promote", from_version="1", to_version="2", gates=[], reason="")
    return tmp_path


def params(*overrides: str) -> config.Params:
    return config.load_params("params.yaml", list(overrides))


def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def located(version: str) -> str:
    reg = Registry(params())
    return reg.client.get_model_version_download_uri(reg.name, version)


def container(isvc: dict) -> dict:
    (only,) = isvc["spec"]["predictor"]["containers"]
    return only


def storage_uri(isvc: dict) -> str:
    return next(e["value"] for e in container(isvc)["env"] if e["name"] == "STORAGE_URI")


# --- the vendored schema ------------------------------------------------------------------------------


def test_the_vendored_crd_is_kserves_inferenceservice_v1beta1_with_its_source_and_licence():
    head = CRD.read_text().split("---", 1)[0]
    assert "kserve/kserve" in head and "v0.20.0" in head and "Apache-2.0" in head
    assert re.search(r"commit [0-9a-f]{40}", head)
    crd = crds.crd(CRD)
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (deploy_module.GROUP, deploy_module.KIND)
    assert [v["name"] for v in crd["spec"]["versions"]] == [deploy_module.VERSION]


def test_a_field_or_value_the_crd_does_not_allow_is_refused_by_the_check_no_cluster_schema_only():
    cfg = config.DeployConfig()
    isvc = deploy_module.build(cfg, "s3://b/m", "m", "champion", "1")
    assert crds.problems(CRD, isvc) == []
    isvc["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    isvc["spec"]["predictor"]["sklearn"] = {"storageUri": "s3://b/m"}  # a runtime the vendored copy cut
    found = crds.problems(CRD, isvc)
    assert any("canaryTrafficPercent" in p for p in found) and any("sklearn" in p for p in found)


# --- deploy -------------------------------------------------------------------------------------------


def test_the_champion_manifest_validates_and_serves_its_versions_artifacts_no_cluster_schema_only(project):
    said = cli("deploy")
    isvc = manifest()
    assert crds.problems(CRD, isvc) == []
    reg = Registry(params())
    assert reg.client.get_model_version(reg.name, "2").source.startswith("models:/")  # MLflow 3's pointer
    assert storage_uri(isvc) == located("2") and not located("2").startswith("models:/")  # resolved
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    annotations = isvc["metadata"]["annotations"]
    assert (annotations["steelflow.io/alias"], annotations["steelflow.io/version"]) == ("champion", "2")
    assert container(isvc)["name"] == "kserve-container"  # the one the storage initializer serves
    assert container(isvc)["image"] == params().deploy.image
    assert "/mnt/models" in container(isvc)["command"]
    assert f"kubectl apply -f {MANIFEST}" in said
    assert "cannot download from" in said  # a local file store: told, not hidden


def test_a_challenger_is_a_canary_with_the_share_params_give_no_cluster_schema_only(project):
    cli(
        "deploy",
        "--alias",
        "challenger",
        "--set",
        "deploy.canary_traffic_percent=25",
        "--set",
        "deploy.namespace=inspection",
        "--set",
        "deploy.service_account=steelflow-models",
        "--set",
        "deploy.memory_limit=3Gi",
    )
    isvc = manifest()
    assert crds.problems(CRD, isvc) == []
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 25
    assert predictor["serviceAccountName"] == "steelflow-models"
    assert isvc["metadata"]["namespace"] == "inspection"
    assert isvc["metadata"]["name"] == params().deploy.name  # the champion's service: a canary of it
    assert storage_uri(isvc) == located("1")
    assert container(isvc)["resources"]["limits"]["memory"] == "3Gi"


def test_an_unknown_alias_is_named_and_nothing_is_written(project):
    said = cli("deploy", "--alias", "staging", code=2)
    assert "'staging'" in said and "champion or challenger" in said
    Registry(params()).client.delete_registered_model_alias(params().registry.name, "challenger")
    said = cli("deploy", "--alias", "challenger", code=7)
    assert "'challenger'" in said
    assert not MANIFEST.exists() and not MANIFEST.parent.exists()


def test_a_manifest_outside_the_project_is_refused(project):
    said = cli("deploy", "--set", "deploy.output=../elsewhere/isvc.yaml", code=2)
    assert "deploy.output" in said and "outside the project" in said
    assert not (project.parent / "elsewhere").exists()


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"canary_traffic_percent": 150}, "deploy.canary_traffic_percent"),
        ({"memory": "2 GB"}, "deploy.memory"),
        ({"name": "Steel_Model"}, "deploy.name"),
        ({"output": "deploy/isvc.json"}, "deploy.output"),
        ({"replicas": 2}, "deploy.replicas"),
    ],
)
def test_a_bad_deploy_param_is_one_line_naming_its_key(changes, key):
    with pytest.raises(ConfigError) as e:
        config.parse_params(deep_update(repo_params(), {"deploy": changes}))
    assert f"'{key}'" in str(e.value) and "\n" not in str(e.value)


def test_a_location_the_tracking_server_proxies_is_mapped_onto_its_artifacts_destination():
    proxied = "mlflow-artifacts:/3/models/m-abc/artifacts"
    cfg = config.DeployConfig(artifacts_destination="s3://steelflow/mlflow/")
    assert deploy_module.storage_uri(proxied, cfg) == "s3://steelflow/mlflow/3/models/m-abc/artifacts"
    hosted = "mlflow-artifacts://mlflow.example:5000/3/models/m-abc/artifacts"
    assert deploy_module.storage_uri(hosted, cfg) == "s3://steelflow/mlflow/3/models/m-abc/artifacts"
    assert deploy_module.storage_uri("s3://other/x", cfg) == "s3://other/x"
    with pytest.raises(ConfigError, match="deploy.artifacts_destination"):
        deploy_module.storage_uri(proxied, config.DeployConfig())


# --- rollback -----------------------------------------------------------------------------------------


def test_rollback_rewrites_the_manifest_for_the_champion_it_leaves(project):
    cli("deploy", "--alias", "challenger")
    assert storage_uri(manifest()) == located("1")
    assert "canaryTrafficPercent" in manifest()["spec"]["predictor"]
    cli("deploy")
    assert storage_uri(manifest()) == located("2")
    said = cli("rollback", "--reason", "canary errors")
    assert "champion 2 → 1" in said and f"kubectl apply -f {MANIFEST}" in said
    isvc = manifest()
    assert storage_uri(isvc) == located("1")
    assert isvc["metadata"]["annotations"]["steelflow.io/version"] == "1"
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]  # all traffic back to the champion
    assert crds.problems(CRD, isvc) == []


def test_rollback_without_a_manifest_writes_none(project):
    said = cli("rollback")
    assert "champion 2 → 1" in said and "deploy:" not in said
    assert not MANIFEST.exists()
