"""The model registry against a real `mlflow server` process: register, gated promotion, forced promotion,
rollback, history, concurrent promotions, serving over HTTP, and `steelflow predict`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from steelflow.config import load_params
from steelflow.registry import GateFailed, RegistryError
from steelflow.steps.register import register
from tests.support.registered_project import NAME, registered_project
from tests.support.registered_project import cli as _cli
from tests.support.servers import VENV_BIN, free_port, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A tracking server, and a project that registered a decent model (v1) then a useless one (v2)."""
    with registered_project(tmp_path_factory.mktemp("registry")) as (uri, project):
        good = project / "good"
        good.mkdir()
        for f in ("models/model.pt", "metrics/evaluate.json", "metrics/mlflow_run_id.txt"):
            shutil.copy(f, good)
        # a deliberately worse model: it learns nothing
        _cli("train", "--set", "train.lr=1e-7", "--set", "train.epochs=1")
        _cli("evaluate")
        _cli("register")
        yield {"uri": uri, "project": project, "good": good, "client": mlflow.MlflowClient(uri, uri)}


def _champion(client) -> str:
    return client.get_model_version_by_alias(NAME, "champion").version


def test_register_tags_each_version_and_attaches_a_model_card(registry):
    client = registry["client"]
    v1, v2 = client.get_model_version(NAME, "1"), client.get_model_version(NAME, "2")
    assert client.get_model_version_by_alias(NAME, "challenger").version == "2"
    for key in ("git_commit", "data_version", "params_hash", "run_id", "eval_data_hash", "accuracy.original"):
        assert v1.tags[key], key
    conditions = {c.name for c in load_params().corrupt.all_conditions}  # the hold-out block too
    assert {k.removeprefix("accuracy.") for k in v1.tags if k.startswith("accuracy.")} == {
        "original",
        *conditions,
    }
    assert v1.tags["eval_data_hash"] == v2.tags["eval_data_hash"]  # same evaluation data
    assert float(v1.tags["accuracy.original"]) > float(v2.tags["accuracy.original"])
    for section in (
        "## Data",
        "## Training",
        "## Metrics",
        "## Intended use",
        "## Limitations",
        "| Original",
    ):
        assert section in v1.description, section
    registration = json.loads(Path("reports/registration.json").read_text())
    assert registration["version"] == 2 and registration["name"] == NAME


def test_gates_force_rollback_and_history(registry):
    client = registry["client"]
    out = _cli("promote", "--version", "1")  # no champion yet: the absolute gates decide
    assert _champion(client) == "1"
    assert "pass" in out

    out = _cli("promote", code=GateFailed.exit_code)  # the challenger, v2, is much worse
    assert "FAIL" in out and "drop vs champion (original)" in out and "clean accuracy" in out
    assert _champion(client) == "1"

    out = _cli("promote", "--force", code=2)
    assert "--reason" in out
    _cli("promote", "--force", "--reason", "testing the override")
    assert _champion(client) == "2"

    _cli("rollback", "--reason", "v2 was a mistake")
    assert _champion(client) == "1"

    records = json.loads(_cli("registry", "history", "--json"))
    assert [(r["action"], r["from_version"], r["to_version"]) for r in records] == [
        ("promote", None, "1"),
        ("rejected", "1", "2"),
        ("force-promote", "1", "2"),
        ("rollback", "2", "1"),
    ]
    assert records[2]["reason"] == "testing the override"
    assert any(not g["passed"] for g in records[2]["gates"])
    table = _cli("registry", "history")
    for action in ("promote", "rejected", "force-promote", "rollback"):
        assert action in table
    # the same history, readable on the registered model's page in the MLflow UI: newest first
    described = client.get_registered_model(NAME).description
    assert described.count("## Promotion history") == 1
    rows = [line for line in described.splitlines() if line.startswith("| 20")]
    assert [row.split(" | ")[1] for row in rows] == ["rollback", "force-promote", "rejected", "promote"]
    assert "v2 was a mistake" in rows[0]


def test_a_candidate_not_yet_registered_is_gated_against_the_champion(registry):
    """What the Kubeflow pipeline's gate step asks before registering: the champion is v1 here."""
    from steelflow.registry import candidate_gates

    assert _champion(registry["client"]) == "1"
    params = load_params("params.yaml")
    worse = candidate_gates(params, Path("metrics/evaluate.json"))  # the useless model's evaluation
    failed = {g.name for g in worse if not g.passed}
    assert "drop vs champion (original)" in failed
    same = candidate_gates(params, registry["good"] / "evaluate.json")  # v1's own evaluation
    assert all(g.passed for g in same), same
    assert any(g.name.startswith("drop vs champion") for g in same)


def _test_images(n: int = 12) -> list[Path]:
    rows = pd.read_csv("data/splits/test.csv")
    return [Path("data") / p for p in rows["path"][:n]], list(rows["label"][:n])


def test_the_served_champion_answers_http_with_the_right_class(registry):
    client = registry["client"]
    if _champion(client) != "1":
        client.set_registered_model_alias(NAME, "champion", "1")
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    files, labels = _test_images()
    local = model.predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}))
    right = [i for i, (p, y) in enumerate(zip(local["label"], labels, strict=True)) if p == y]
    assert right, "the champion got none of the test images right"
    image, label = files[right[0]], labels[right[0]]

    port = free_port()
    args = [
        str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
        "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    path = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}  # the server runs the venv's uvicorn
    with running(args, f"http://127.0.0.1:{port}/ping", registry["project"] / "serve.log", path):
        body = {
            "dataframe_split": {
                "columns": ["image"],
                "data": [[base64.b64encode(image.read_bytes()).decode()]],
            }
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.loads(r.read())
    served = answer["predictions"][0]
    assert served["label"] == label
    assert served[f"p_{label}"] == pytest.approx(local[f"p_{label}"][right[0]], abs=1e-6)


def test_predict_cli_matches_the_pyfunc(registry, tmp_path):
    files, _ = _test_images(6)
    folder = tmp_path / "images"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    out = tmp_path / "predictions.csv"
    table = _cli("predict", str(folder), "--model", f"models:/{NAME}/1", "--out", str(out))
    cli = pd.read_csv(out)
    ordered = sorted(folder.iterdir())
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    direct = model.predict(pd.DataFrame({"image": [f.read_bytes() for f in ordered]}))
    assert list(cli["path"]) == [str(f) for f in ordered]
    assert list(cli["label"]) == list(direct["label"])
    probs = [c for c in direct.columns if c.startswith("p_")]
    assert cli[probs].to_numpy() == pytest.approx(direct[probs].to_numpy(), abs=1e-6)
    assert cli[probs].sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert "6 images" in table


def test_concurrent_promotions_end_with_one_champion_and_every_record(registry):
    client = registry["client"]
    params = load_params()
    good = registry["good"]
    versions = []
    for i in range(2):  # the good model twice more: both pass the gates against the champion (v1)
        result = register(
            params,
            model_path=good / "model.pt",
            run_id_path=good / "mlflow_run_id.txt",
            metrics_path=good / "evaluate.json",
            card_path=good / f"card{i}.md",
            out_path=good / f"registration{i}.json",
        )
        versions.append(str(result["version"]))
    before = len(json.loads(_cli("registry", "history", "--json")))
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry["uri"]}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "steelflow", "promote", "--version", v],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for v in (*versions, "2")  # ...and the useless v2, which must not win
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, GateFailed.exit_code], outputs
    assert _champion(client) in versions
    records = json.loads(_cli("registry", "history", "--json"))[before:]
    assert sorted((r["action"], r["to_version"]) for r in records) == sorted(
        [("promote", versions[0]), ("promote", versions[1]), ("rejected", "2")]
    )


def test_an_unreachable_server_fails_soon_with_its_uri(registry, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    started = time.perf_counter()
    out = _cli(
        "promote",
        "--set",
        "registry.retries=2",
        "--set",
        "registry.backoff_seconds=0.1",
        code=RegistryError.exit_code,
    )
    assert dead in out and "gave up after 2 retries in" in out and "Connection refused" in out
    assert (
        "Traceback" not in out and len([line for line in out.splitlines() if line.startswith("error:")]) == 1
    )
    assert time.perf_counter() - started < 60


def test_export_onnx_matches_pytorch_on_test_images(registry, tmp_path):
    import numpy as np
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    printed = _cli("export-onnx", "--model", f"models:/{NAME}/1", "--out", str(out))
    report = json.loads(Path("reports/onnx.json").read_text())
    assert report["parity"]["max_abs_logit_diff"] < 1e-4
    assert report["parity"]["images"] > 0
    assert set(report["latency_ms_per_image"]) == {"1", "32"}
    assert "ONNX Runtime" in printed

    # the exported graph, fed as the pyfunc feeds the network, gives the pyfunc's classes
    files, _ = _test_images(8)
    from steelflow.inference import as_float, to_tensor
    from steelflow.serving.pyfunc import preprocess

    size = report["input"]["shape"][2]
    x = as_float(to_tensor(preprocess([f.read_bytes() for f in files], report["input"]["shape"][1], size)))
    logits = ort.InferenceSession(str(out)).run(None, {"x": x.numpy()})[0]
    direct = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(
        pd.DataFrame({"image": [f.read_bytes() for f in files]})
    )
    assert [report["classes"][i] for i in np.argmax(logits, 1)] == list(direct["label"])


def test_promotion_rescores_a_version_evaluated_on_other_data(registry):
    """Tags that claim other evaluation data (and absurd accuracies) are not trusted: the version is
    evaluated again on the data here, and then passes, being as good as the champion."""
    client = registry["client"]
    champion = _champion(client)
    result = register(
        load_params(),
        model_path=registry["good"] / "model.pt",
        run_id_path=registry["good"] / "mlflow_run_id.txt",
        metrics_path=registry["good"] / "evaluate.json",
        card_path=registry["good"] / "card-rescore.md",
        out_path=registry["good"] / "registration-rescore.json",
    )
    version = str(result["version"])
    client.set_model_version_tag(NAME, version, "eval_data_hash", "evaluated-elsewhere")
    for key in client.get_model_version(NAME, version).tags:
        if key.startswith("accuracy."):
            client.set_model_version_tag(NAME, version, key, "0.0")
    out = _cli("promote", "--version", version)
    assert _champion(client) == version, out
    last = json.loads(_cli("registry", "history", "--json"))[-1]
    assert (last["action"], last["from_version"], last["to_version"]) == ("promote", champion, version)
    clean = next(g for g in last["gates"] if g["name"] == "clean accuracy")
    assert clean["value"] == pytest.approx(
        float(client.get_model_version(NAME, champion).tags["accuracy.original"])
    )
