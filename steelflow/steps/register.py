"""Step 9, register: the evaluated model as a new version of ``registry.name``, alias ``challenger``.

Reads ``models/model.pt``, ``metrics/mlflow_run_id.txt``, ``metrics/evaluate.json``, the gate step's
verdict ``reports/gates.json``, the evaluation caches, and params sections ``registry``, ``data``,
``split``, ``train`` (with tune's values) and ``corrupt`` (the whole tree: the model card and params hash
record it). Writes ``reports/registration.json`` and ``reports/model_card.md``.

What the gate refused is not registered: register says so in one line, writes ``registered: false`` with
every gate, and the DVC stage succeeds, so an experiment keeps its metrics and verdict
(``registry.fail_on_gate: true`` makes the gate step fail the run instead). The version is
models-from-code (:mod:`steelflow.serving.package`) with the network as ONNX (checked against PyTorch on
the test set, int8 when ``registry.quantize`` asks and the int8 gate passes) and the weights as artifacts,
tagged with the git commit, data version, params hash, run id, DVC experiment, evaluation-data hash and the
accuracy per condition. Nothing is half-registered: a version whose tags or alias could not be set is
deleted again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc

from steelflow import atomic, config, paths
from steelflow.config import Params
from steelflow.errors import DataError
from steelflow.gates import GateResult, gate_markdown, gate_table, load_verdict
from steelflow.inference import load_trained
from steelflow.models import ModelMeta
from steelflow.redact import hide_password
from steelflow.registry import CHALLENGER, Registry, _accuracy, _num, candidate_gates, failures
from steelflow.reports import model_card
from steelflow.scoring import CLEAN, data_hash, evaluation_sets
from steelflow.serving.package import pyfunc_model, serving_graph
from steelflow.step import Option, Produces, Step
from steelflow.tracking import identity_tags
from steelflow.tracking.tree import parent_kept


def register(
    params: Params,
    model_path: Path = paths.MODEL,
    run_id_path: Path = paths.MLFLOW_RUN,
    metrics_path: Path = paths.EVALUATE_METRICS,
    cache_dir: Path = paths.CACHE,
    card_path: Path = paths.MODEL_CARD,
    out_path: Path = paths.REGISTRATION,
    best_params_path: Path = paths.BEST_PARAMS,
    gated: bool = True,
    verdict: GateResult | None = None,
    gates: Path | None = None,
) -> dict[str, Any]:
    """Register the trained model as a new version with alias ``challenger``; write ``registration.json``.

    ``verdict`` is the gate step's answer (or ``gates``, the file it wrote: ``reports/gates.json``; both
    orchestrators run that step first and pass it). A refusal registers nothing: ``registration.json``
    says ``registered: false`` with every gate, and nothing is checked twice. Without a verdict, with
    ``registry.challenger: gated`` and ``gated``, the gates are checked here, to the same effect.

    The version is models-from-code (:mod:`steelflow.serving.model`) with the network as ONNX (checked
    against PyTorch on the test set, int8 when ``registry.quantize`` asks and the int8 gate passes) and the
    weights as artifacts. The params recorded (model card, params hash) are the ones training used:
    ``params`` plus tune's best values when ``train.use_tuned`` is on.
    """
    if verdict is None and gates is not None:
        verdict = load_verdict(gates, run_id_path)
    if verdict is not None and not verdict.register:
        return _refused(params, verdict, out_path, card_path)
    gated = gated and verdict is None
    for needed in (model_path, run_id_path, metrics_path):
        if not Path(needed).is_file():
            raise DataError(f"{needed} not found: run `steelflow train` and `steelflow evaluate` first")
    params = config.with_tuned(params, best_params_path)
    reg = Registry(params)
    with reg.own_retries(), failures(reg):
        return _register(
            params, reg, model_path, run_id_path, metrics_path, cache_dir, card_path, out_path, gated
        )


def _register(params, reg, model_path, run_id_path, metrics_path, cache_dir, card_path, out_path, gated):
    run_id = Path(run_id_path).read_text().strip()
    metrics = json.loads(Path(metrics_path).read_text())
    accuracy = _accuracy(metrics)
    sets = evaluation_sets(params.corrupt, cache_dir)
    eval_hash = data_hash(sets)
    model, meta = load_trained(model_path)
    tree = params.raw()
    tags = {
        **identity_tags(tree),
        "run_id": run_id,
        "eval_data_hash": eval_hash,
        **{f"accuracy.{name}": f"{acc:.6f}" for name, acc in accuracy.items()},
        **({"mce": f"{metrics['summary']['mce']:.6f}"} if metrics["summary"].get("mce") is not None else {}),
    }
    atomic.write_text(card_path, model_card(params, meta, metrics, tags))
    if gated and params.registry.challenger == "gated":
        gates = candidate_gates(params, metrics_path, cache_dir)
        if not all(g.passed for g in gates):
            return _not_registered(reg, run_id, accuracy, eval_hash, gates, out_path)
    staging = Path(tempfile.mkdtemp(prefix="steelflow-register-"))
    version = None
    try:
        graph, serving_tags = serving_graph(params, model, sets, cache_dir, staging)
        tags |= serving_tags
        card = model_card(params, meta, metrics, tags)
        atomic.write_text(card_path, card)
        mlflow.set_tracking_uri(reg.uri)
        mlflow.set_registry_uri(reg.uri)
        # The training run, re-opened to hold the pyfunc. Not `with mlflow.start_run(...)`: its exit ends
        # the run with one more request, and when the server is gone that request's error would replace
        # the RegistryError (a traceback instead of exit 7). The run stays as training left it.
        reg.call(mlflow.start_run, run_id=run_id)
        try:
            info = reg.call(
                mlflow.pyfunc.log_model,
                name="classifier",
                **pyfunc_model(params, meta, graph, model_path, sets[CLEAN]),
                registered_model_name=reg.name,
            )
            version = str(info.registered_model_version)
            reg.call(mlflow.log_artifact, str(card_path), "registry")
        finally:
            _leave_run(reg)
        reg.call(reg.client.update_model_version, reg.name, version, description=card)
        for key, value in tags.items():
            if not key.startswith("mlflow."):  # MLflow's own tags belong to runs; a version links its run
                reg.call(reg.client.set_model_version_tag, reg.name, version, key, value)
        _describe_model(reg, meta)
        reg.call(reg.client.set_registered_model_alias, reg.name, CHALLENGER, version)
    except BaseException:
        if version is not None:  # nothing half-registered: a version without its tags and alias goes
            with reg.own_retries(), contextlib.suppress(Exception):  # one try: the error above is the news
                reg.client.delete_model_version(reg.name, version)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = {
        "name": reg.name,
        "registered": True,
        "version": int(version),
        "alias": CHALLENGER,
        "model_uri": f"models:/{reg.name}/{version}",
        "run_id": run_id,
        "tracking_uri": hide_password(reg.uri),
        "eval_data_hash": eval_hash,
        "accuracy": accuracy,
        "serving": serving_tags,
    }
    atomic.write_json(out_path, result)
    return result


def _leave_run(reg: Registry) -> None:
    """Close the re-opened training run as training left it, FINISHED, whether or not the registration
    succeeded (it is the training's record); one try, whose failure is not reported over the error that
    ended the registration. The run is no longer active in this process either way."""
    if mlflow.active_run() is None:
        return
    with reg.own_retries(), contextlib.suppress(Exception), parent_kept():
        mlflow.end_run(status="FINISHED")


def _refused(params: Params, verdict: GateResult, out_path: Path, card_path: Path) -> dict[str, Any]:
    """The gate step refused the model (and tagged its run): no version, @challenger stays; the record and
    the card say why."""
    reg = Registry(params)
    with reg.own_retries(), failures(reg):
        result = _refusal(reg, verdict.run_id, verdict.gates)
    atomic.write_text(
        card_path,
        f"# {reg.name}: not registered\n\nThe model of training run `{verdict.run_id}` failed "
        f"`registry.gates`; no version was made and @challenger stays at "
        f"{result['challenger'] or 'none'}.\n\n{gate_markdown(verdict.gates)}",
    )
    atomic.write_json(out_path, result)
    return result


def _not_registered(reg, run_id, accuracy, eval_hash, gates, out_path) -> dict[str, Any]:
    """A model below the gates (checked here, without a verdict): no version, @challenger stays; the record
    says why, the run too."""
    result = _refusal(reg, run_id, gates) | {"eval_data_hash": eval_hash, "accuracy": accuracy}
    reg.call(reg.client.set_tag, run_id, "steelflow.registered", "no: failed registry.gates")
    atomic.write_json(out_path, result)
    return result


def _refusal(reg: Registry, run_id: str | None, gates: list[Any]) -> dict[str, Any]:
    """``registration.json`` for a model the gates refused."""
    return {
        "name": reg.name,
        "registered": False,
        "version": None,
        "alias": None,
        "challenger": _num(reg.alias(CHALLENGER)),
        "run_id": run_id,
        "tracking_uri": hide_password(reg.uri),
        "gates": [dataclasses.asdict(g) for g in gates],
        "gate_table": gate_table(gates),
    }


def _describe_model(reg: Registry, meta: ModelMeta) -> None:
    """The registered model's description and tags, what its page in the MLflow UI shows first."""
    reg.call(reg.client.update_registered_model, reg.name, description=reg.cfg.description)
    model_tags = {
        "task": "image classification (steel-surface defects)",
        "classes": ", ".join(meta.classes),
        "variant": meta.variant,
        "serving": f"{reg.cfg.serving.engine} (models-from-code pyfunc)",
        "source": "steelflow register",
    }
    for key, value in model_tags.items():
        reg.call(reg.client.set_registered_model_tag, reg.name, key, value)


def summary(result: dict[str, Any]) -> list[str]:
    if not result["registered"]:
        kept = f"version {result['challenger']}" if result["challenger"] else "none"
        return [
            f"register: run {result['run_id']} failed registry.gates; nothing registered, @challenger stays "
            f"at {kept} (registry.challenger=always registers it anyway) → {paths.REGISTRATION}"
        ]
    return [
        f"register: {result['name']} version {result['version']} (@challenger) from run {result['run_id']} "
        f"→ {paths.REGISTRATION}"
    ]


STEP = Step(
    "register",
    run=register,
    help="Register the trained model in the MLflow registry as a new version, alias 'challenger', as "
    "the gate's verdict allows.",
    sections=("params",),  # the whole tree: the model card and the params hash record it
    inputs=(
        paths.MODEL,
        paths.MLFLOW_RUN,
        paths.EVALUATE_METRICS,
        paths.GATES_JSON,
        paths.CACHE_SPLITS,
        paths.CACHE_CORRUPTED,
    ),
    params=(
        "data.source",
        "data.cache_size",
        "data.white_level",
        "split",
        "train",
        "corrupt.conditions",
        "corrupt.holdout",
        paths.TUNED,
        "registry.name",
        "registry.serving",
        "registry.max_parity_diff",
        "registry.min_label_agreement",
        "registry.quantize",
        "registry.max_quantized_drop",
        "registry.calibration_images",
    ),
    outs=(paths.REGISTRATION, paths.MODEL_CARD),
    notes={
        str(paths.GATES_JSON): "the gate step's verdict: register only what it allows",
        "train": "train.use_tuned, and the training values the model card lists",
        paths.TUNED: "the params hash and model card use tune's values",
        str(paths.REGISTRATION): "cached, so an experiment's commit leads to its model version",
    },
    options=(
        Option(
            "gates",
            Path | None,
            None,
            f"the gate step's verdict ({paths.GATES_JSON}): register as it says",
            kfp=paths.GATES_JSON,
        ),
    ),
    dvc_args=f"--gates {paths.GATES_JSON}",
    summary=summary,
    consumes=("manifest", "splits", "corrupted", "tuning", "model", "evaluation", "verdict"),
    produces=(Produces("registration"), Produces("model_card", "Markdown", page=paths.MODEL_CARD)),
    answer=lambda result: str(result["version"]),
    answer_type=str,
    cache=False,  # the registry's state
    retries=True,
)
