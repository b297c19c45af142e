"""The registered model as code on ONNX Runtime: saved and loaded through MLflow for real (no tracking server
needed for ``save_model``), checked against PyTorch, quantized to int8 with ONNX Runtime."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from steelflow.config import parse_params
from steelflow.data import cache
from steelflow.errors import DataError
from steelflow.gates import GateFailed, gate_table, quantization_gates
from steelflow.inference import save_trained
from steelflow.models import ModelMeta, create_model
from steelflow.serving import build as serving_build
from steelflow.serving.onnx_export import ParityFailed
from steelflow.serving.package import pyfunc_model, requirements
from steelflow.serving.pyfunc import classify
from tests.support.helpers import repo_params

CLASSES = ["crazing", "inclusion", "patches"]
SIZE = 16


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _meta() -> ModelMeta:
    return ModelMeta.from_dict(
        {
            "variant": "casinet",
            "image_size": SIZE,
            "dropout": 0.0,
            "input_norm": "local",
            "input_norm_sigma": 0.1,
            "robust": True,
            "classes": CLASSES,
            "in_chans": 1,
        }
    )


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("casinet", len(CLASSES), SIZE, input_norm="local").eval()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """An untrained network (weights do not matter for what is tested here), its test set, its ONNX
    export and the pyfunc saved from code."""
    root = tmp_path_factory.mktemp("serving")
    model = _model()
    weights = root / "model.pt"
    save_trained(model, _meta(), weights)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, SIZE, SIZE, 1), dtype=np.uint8)
    test_set = root / "test"
    labels = [CLASSES[i % 3] for i in range(len(images))]
    ids = [f"{i:064x}" for i in range(len(images))]  # the source files' sha256
    cache.save(cache.resized_set(list(images[..., 0]), labels, ids, CLASSES, SIZE), test_set)
    graph = root / "model.onnx"
    parity = serving_build.export_checked(model, images, graph, max_diff=1e-4, min_agreement=1.0)
    params = parse_params(repo_params(data={"cache_size": SIZE}))
    saved = root / "pyfunc"
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(str(saved), **pyfunc_model(params, _meta(), graph, weights, test_set))
    return {
        "root": root,
        "model": model,
        "weights": weights,
        "images": images,
        "graph": graph,
        "parity": parity,
        "saved": saved,
        "params": params,
        "test_set": test_set,
    }


def test_the_model_is_saved_as_code_with_no_pickle_anywhere(built):
    saved = built["saved"]
    assert not list(saved.rglob("*.pkl")), list(saved.rglob("*.pkl"))
    mlmodel = (saved / "MLmodel").read_text()
    assert "model_code_path" in mlmodel and "model.py" in mlmodel
    assert "python_model.pkl" not in mlmodel
    assert {p.name for p in (saved / "artifacts").iterdir()} == {"model.onnx", "model.pt"}


def test_models_from_code_round_trip_gives_pytorchs_probabilities(built):
    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model(str(built["saved"]))
    cells = [_png(img[..., 0]) for img in built["images"][:8]]
    served = loaded.predict(pd.DataFrame({"image": cells}))
    direct = classify(built["model"], _meta(), SIZE, cells)
    assert list(served["label"]) == list(direct["label"])
    probs = [f"p_{c}" for c in CLASSES]
    assert served[probs].to_numpy() == pytest.approx(direct[probs].to_numpy(), abs=1e-5)


def test_parity_figures_are_measured_on_every_test_image(built):
    parity = built["parity"]
    assert parity.images == len(built["images"])
    assert parity.max_abs_prob_diff < 1e-5 and parity.label_agreement == 1.0
    assert parity.tags()["parity.label_agreement"] == "1.000000"


@pytest.mark.slow
def test_an_export_that_differs_from_pytorch_is_refused(built, monkeypatch, tmp_path):
    """A planted mismatch: the graph written is another network's, not the one checked."""
    real_export = serving_build.export_network
    other = _model(seed=1)
    monkeypatch.setattr(serving_build, "export_network", lambda model, x, path: real_export(other, x, path))
    with pytest.raises(ParityFailed, match="max |Δp|") as e:
        serving_build.export_checked(built["model"], built["images"], tmp_path / "m.onnx", 1e-4, 1.0)
    assert e.value.exit_code == 9


@pytest.mark.slow
def test_the_onnx_engine_serves_without_importing_torch(built):
    """What the requirements promise: the served model runs in an environment without PyTorch."""
    script = (
        "import sys, base64, pandas as pd, mlflow.pyfunc\n"
        f"m = mlflow.pyfunc.load_model({str(built['saved'])!r})\n"
        f"png = open({str(built['root'] / 'one.png')!r}, 'rb').read()\n"
        "print(m.predict(pd.DataFrame({'image': [png]}))['label'][0])\n"
        "print('torch' in sys.modules)\n"
    )
    (built["root"] / "one.png").write_bytes(_png(built["images"][0][..., 0]))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    label, torch_loaded = out.stdout.split()[-2:]
    assert label in CLASSES and torch_loaded == "False"
    listed = (built["saved"] / "requirements.txt").read_text()
    assert "onnxruntime==" in listed and "torch" not in listed
    assert any(r.startswith("torch==") for r in requirements("pytorch"))


def test_the_pytorch_fallback_is_one_config_key_away(built, tmp_path):
    import mlflow.pyfunc

    params = parse_params(repo_params(data={"cache_size": SIZE}, registry={"serving": {"engine": "pytorch"}}))
    spec = pyfunc_model(params, _meta(), built["graph"], built["weights"], built["test_set"])
    mlflow.pyfunc.save_model(str(tmp_path / "torch"), **spec)
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "torch"))
    cells = [_png(img[..., 0]) for img in built["images"][:4]]
    onnx = mlflow.pyfunc.load_model(str(built["saved"])).predict(pd.DataFrame({"image": cells}))
    fallback = loaded.predict(pd.DataFrame({"image": cells}))
    assert list(fallback["label"]) == list(onnx["label"])
    assert "torch==" in (tmp_path / "torch" / "requirements.txt").read_text()


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_graphs_are_quantized_and_run(built, tmp_path, mode):
    import onnx

    calibration = built["images"][:8] if mode == "static" else None
    out = serving_build.quantize(built["graph"], tmp_path / f"{mode}.onnx", mode, calibration)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    int8_ops = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}
    assert ops & int8_ops, ops
    assert out.stat().st_size < 0.5 * built["graph"].stat().st_size  # weights stored as int8
    logits = serving_build.engine.run_batches(
        serving_build.engine.onnx_logits(serving_build.engine.onnx_session(out)), built["images"]
    )
    assert logits.shape == (len(built["images"]), len(CLASSES)) and np.isfinite(logits).all()
    assert not list(tmp_path.glob("*.pre.onnx"))  # the pre-processed copy is cleaned up


def test_static_int8_keeps_the_input_stage_fp32_and_the_backbone_int8_from_conv_to_conv(built, tmp_path):
    """The input stage stays fp32 (it divides by a local spread, which int8 would flatten), and no
    ReLU or pool of the backbone sits between a DequantizeLinear and a QuantizeLinear: that pattern made
    int8 slower than fp32 (``benchmarks/bench_serving.py``)."""
    import onnx

    stage = set(serving_build.input_stage_nodes(built["graph"]))
    fp32_ops = {n.op_type for n in onnx.load(str(built["graph"])).graph.node if n.name in stage}
    assert {"MatMul", "Div", "Sqrt"} <= fp32_ops  # the local-contrast stage was found
    out = serving_build.quantize(built["graph"], tmp_path / "static.onnx", "static", built["images"][:8])
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.name in stage:
            inputs = [producer[i].op_type for i in node.input if i in producer]
            assert "DequantizeLinear" not in inputs, node.name
        if node.op_type in ("Relu", "MaxPool"):  # quantized: ONNX Runtime fuses them into the int8 ops
            assert producer[node.input[0]].op_type == "DequantizeLinear", node.name
            consumers = [n for n in graph.node if node.output[0] in n.input]
            assert consumers and all(c.op_type == "QuantizeLinear" for c in consumers), node.name


def test_static_quantization_without_calibration_images_says_so(built, tmp_path):
    with pytest.raises(DataError, match="calibration images"):
        serving_build.quantize(built["graph"], tmp_path / "s.onnx", "static", np.zeros((0, SIZE, SIZE, 1)))
    with pytest.raises(DataError, match="train not found"):
        serving_build.calibration_images(cache.split_path(tmp_path, "train"), 8)


def test_the_int8_gate_fails_any_condition_past_the_drop_and_shows_both_accuracies():
    fp32 = {"original": 0.95, "noise_20db": 0.90, "jpeg_q10": 0.80}
    int8 = {"original": 0.948, "noise_20db": 0.90, "jpeg_q10": 0.70}  # the hold-out set drops 10 points
    gates = quantization_gates(fp32, int8, max_drop=0.005)
    assert [g.passed for g in gates] == [True, True, False]
    table = gate_table(gates)
    assert "0.800 → 0.700" in table and "FAIL" in table
    assert GateFailed.exit_code == 8


def test_the_saved_model_refuses_an_image_far_below_its_training_side_naming_the_row(built):
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    loaded = mlflow.pyfunc.load_model(str(built["saved"]))
    cells = [_png(built["images"][0][..., 0]), _png(np.zeros((4, 30), np.uint8))]  # SIZE 16: at least 8 px
    with pytest.raises(MlflowException) as e:
        loaded.predict(pd.DataFrame({"image": cells}))
    assert e.value.message.startswith("row 1: image of 30x4 px is smaller than the model was trained for")
    assert "at least 8 px" in e.value.message


def test_with_small_images_flag_predict_classifies_them_and_says_so_in_a_warning_column(built, tmp_path):
    from steelflow.serving.predict import predict

    params = parse_params(
        repo_params(data={"cache_size": SIZE}, registry={"serving": {"small_images": "flag"}})
    )
    spec = pyfunc_model(params, _meta(), built["graph"], built["weights"], built["test_set"])
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(str(tmp_path / "flag"), **spec)
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a_fine.png").write_bytes(_png(built["images"][0][..., 0]))
    (folder / "b_tiny.png").write_bytes(_png(np.zeros((5, 5), np.uint8)))
    result = predict(params, [folder], str(tmp_path / "flag"), tmp_path / "rows.csv")
    rows = pd.read_csv(tmp_path / "rows.csv", keep_default_na=False)
    assert list(rows["label"] != "") == [True, True] and list(rows["error"]) == ["", ""]
    assert rows["warning"][0] == "" and rows["warning"][1].startswith("image of 5x5 px is smaller")
    assert len(result.failed) == 0


# --- `steelflow serve`: MLflow's scoring app with a body limit and quiet errors (driven in process) -----


def _asgi(app, body: bytes, pieces: int = 1, declared: bool = True) -> tuple[int, bytes, int]:
    """POST ``body`` to /invocations in ``pieces`` (with a Content-Length when ``declared``, else as a
    chunked upload would arrive); returns the status, the answer and how many body bytes the app read."""
    import asyncio

    step = max(1, -(-len(body) // pieces))
    chunks = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    read, sent = 0, []

    async def receive():
        nonlocal read
        if not messages:
            return {"type": "http.disconnect"}
        message = messages.pop(0)
        read += len(message["body"])
        return message

    async def send(message):
        sent.append(message)

    headers = [(b"content-type", b"application/json")]
    if declared:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/invocations", "raw_path": b"/invocations", "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 5001),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, answer, read


@pytest.fixture(scope="module")
def scoring_app(built):
    import mlflow.pyfunc

    from steelflow.serving.http import build_app

    return build_app(mlflow.pyfunc.load_model(str(built["saved"])), max_request_bytes=100_000)


def _request(cells: list) -> bytes:
    import json

    return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[c] for c in cells]}}).encode()


def test_a_body_over_the_limit_gets_413_unread_whether_its_length_is_declared_or_streamed(scoring_app):
    import json

    status, answer, read = _asgi(scoring_app, b"x" * 300_000)
    assert status == 413 and read == 0
    message = json.loads(answer)["message"]
    assert "larger than the 100,000 bytes" in message and "registry.serving.max_request_bytes" in message
    status, answer, read = _asgi(scoring_app, b"x" * 300_000, pieces=30, declared=False)
    assert status == 413 and read <= 110_000  # stopped at the first piece past the limit


def test_an_error_answer_never_quotes_the_request(scoring_app):
    import base64
    import json

    malformed = b'{"dataframe_split": ' + b"Q" * 90_000
    status, answer, _ = _asgi(scoring_app, malformed)
    assert status == 400 and len(answer) < 1024 and b"QQQQ" not in answer
    assert json.loads(answer)["message"].startswith("the request body is not valid JSON (Expecting value")
    status, answer, _ = _asgi(scoring_app, b"\xff" * 50_000)
    assert status == 400 and len(answer) < 1024 and "not UTF-8" in json.loads(answer)["message"]
    status, answer, _ = _asgi(scoring_app, json.dumps({"columns": ["image"], "rows": ["Z" * 5000]}).encode())
    assert status == 400 and len(answer) < 1024 and b"ZZZZ" not in answer
    tiny = base64.b64encode(_png(np.zeros((3, 3), np.uint8))).decode()
    status, answer, _ = _asgi(scoring_app, _request([tiny]))
    assert status == 400 and json.loads(answer)["message"].startswith("row 0: image of 3x3 px is smaller")


def test_a_short_error_line_passes_and_a_stack_trace_never_does():
    import asyncio
    import json

    from steelflow.serving.http import QuietErrors

    async def failing(scope, receive, send):
        body = {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "row 0: bad",
            "stack_trace": "Traceback ...",
        }
        await send({"type": "http.response.start", "status": 400, "headers": [(b"content-length", b"99")]})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(QuietErrors(failing, 1000)({"type": "http"}, None, send))
    answer = json.loads(sent[1]["body"])
    assert answer == {"error_code": "INVALID_PARAMETER_VALUE", "message": "row 0: bad"}
    assert (b"content-length", str(len(sent[1]["body"])).encode()) in sent[0]["headers"]
