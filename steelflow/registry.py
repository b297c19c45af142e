"""The MLflow Model Registry side: register a challenger, promote it through gates, roll back, keep history.

- :func:`candidate_gates` checks a model not registered yet against ``registry.gates`` and the current
  champion: what the ``gate`` step (:mod:`steelflow.steps.gate`) runs before ``register`` under both
  orchestrators. The gates themselves and their tables are :mod:`steelflow.gates`; the model card is
  :func:`steelflow.reports.model_card`.
- :func:`register` (the ``register`` stage) registers what the gate step's verdict allows (called without
  one, it checks the gates itself with ``registry.challenger: gated``, the default), then logs it as a
  pyfunc (raw images in, class and probabilities out; :mod:`steelflow.serving.pyfunc`) into the training run,
  registers it as a new version of ``registry.name``, tags it (git commit, data version, params hash, run
  id, DVC experiment, evaluation-data hash, accuracy per condition), attaches a model card, and gives it
  the alias ``challenger``.
- :func:`promote` compares a version with the current ``champion`` on the same evaluation data and moves
  ``champion`` only when every gate in ``registry.gates`` passes (or when forced, with a reason).
- :func:`rollback` moves ``champion`` back to the version it replaced.
- Every promotion, rejected promotion, forced promotion and rollback appends a record to the registered
  model's tags (``steelflow.history.<time>.<id>``): MLflow keeps no alias history, so this is ours.
  Records live in the registry itself, so everyone sharing the tracking server sees the same history.

Every call to the tracking server is retried with exponential backoff (``registry.retries``,
``registry.backoff_seconds``, each request waiting ``mlflow.timeout_seconds`` at most) while the server is
unreachable (told by the error's type, a connection failure or a time-out) and then fails (exit 7) with an
error naming the URI and how long it tried: :class:`steelflow.tracking.RetryBudget`, the scheme every
steelflow MLflow client shares, with MLflow's own HTTP retries off inside.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from steelflow import atomic, config, paths
from steelflow.config import Params, RegistryConfig, hide_password
from steelflow.errors import ConfigError, DataError, SteelflowError
from steelflow.gates import Gate, GateFailed, check_gates, gate_table, quantization_gates  # noqa: F401 (re-exported)
from steelflow.reports import model_card
from steelflow.scoring import CLEAN, accuracy_of, data_hash, evaluation_sets
from steelflow.tracking import (  # noqa: F401 (unreachable re-exported)
    RetryBudget,
    ServerUnreachable,
    identity_tags,
    tracking_uri,
    unreachable,
)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_PREFIX = "steelflow.history."
T = TypeVar("T")


class RegistryError(SteelflowError):
    """The tracking server is unreachable, or the registry lacks what a command needs."""

    exit_code = 7


@dataclasses.dataclass
class PromotionResult:
    version: str
    previous: str | None
    forced: bool
    gates: list[Gate]
    accuracy: dict[str, float]
    champion_accuracy: dict[str, float] | None


# --- talking to the server --------------------------------------------------------------------------


class Registry:
    """A thin, retrying wrapper over ``MlflowClient`` for one registered model."""

    def __init__(self, params: Params):
        if params.registry is None:
            raise ConfigError("params has no 'registry' section: add one (see params.yaml)")
        self.cfg: RegistryConfig = params.registry
        self.name = self.cfg.name
        self.uri = tracking_uri(params.mlflow)
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.budget = RetryBudget.of(params.mlflow, self.cfg.retries, self.cfg.backoff_seconds)

    def own_retries(self) -> contextlib.AbstractContextManager[None]:
        """MLflow's HTTP retries off (its default would retry for minutes) and its requests bounded by
        ``mlflow.timeout_seconds``: :meth:`call` retries instead, and says soon and clearly that the
        server is unreachable."""
        return self.budget.requests()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)``, retried with backoff while the server is unreachable; MLflow's own answers (no
        such version, a refused request) pass through at once."""
        try:
            return self.budget.call(fn, *args, **kwargs)
        except ServerUnreachable as e:
            raise RegistryError(f"tracking server {hide_password(self.uri)} unreachable: {e}") from None

    def version(self, ref: str | int | None = None) -> Any:
        """A model version by number, or by alias (default: the challenger)."""
        from mlflow.exceptions import MlflowException

        ref = CHALLENGER if ref is None else str(ref)
        try:
            if ref.isdigit():
                return self.call(self.client.get_model_version, self.name, ref)
            return self.call(self.client.get_model_version_by_alias, self.name, ref)
        except MlflowException as e:
            raise RegistryError(
                f"{self.name}: no version {ref!r} in the registry at {self.uri} ({e})"
            ) from None

    def alias(self, alias: str) -> Any | None:
        """The version an alias points at, or None when nothing has it."""
        from mlflow.exceptions import MlflowException

        try:
            return self.call(self.client.get_model_version_by_alias, self.name, alias)
        except MlflowException:
            return None

    def champion(self) -> Any | None:
        return self.alias(CHAMPION)

    def history(self) -> list[dict[str, Any]]:
        model = self.call(self.client.get_registered_model, self.name)
        records = [json.loads(v) for k, v in model.tags.items() if k.startswith(HISTORY_PREFIX)]
        return sorted(records, key=lambda r: (r["time"], r["id"]))

    def record(self, **fields: Any) -> dict[str, Any]:
        """Append a history record (time, id and user are added) to the registered model's tags."""
        now = dt.datetime.now(dt.UTC)
        record = {
            "time": now.isoformat(timespec="microseconds"),
            "id": uuid.uuid4().hex[:8],
            **fields,
            "user": _user(),
        }
        key = f"{HISTORY_PREFIX}{now.strftime('%Y%m%dT%H%M%S%f')}.{record['id']}"
        self.call(self.client.set_registered_model_tag, self.name, key, json.dumps(record))
        return record


# --- register ---------------------------------------------------------------------------------------


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
    verdict: Any = None,
) -> dict[str, Any]:
    """Register the trained model as a new version with alias ``challenger``; write ``registration.json``.

    ``verdict`` is the gate step's answer (:func:`steelflow.steps.gate.load_verdict`; both orchestrators
    run that step first and pass it): a refusal fails here (exit 8) and nothing is checked twice. Without
    one, with ``registry.challenger: gated`` and ``gated``, the gates are checked here: a model that fails
    ``registry.gates`` against the current champion is not registered and nothing moves;
    ``registration.json`` says ``registered: false`` with every gate, and the model card is still written.

    The version is models-from-code (:mod:`steelflow.serving.model`) with the network as ONNX (checked
    against PyTorch on the test set, int8 when ``registry.quantize`` asks and the int8 gate passes) and the
    weights as artifacts. The params recorded (model card, params hash) are the ones training used:
    ``params`` plus tune's best values when ``train.use_tuned`` is on.
    """
    if verdict is not None:
        if not verdict.register:
            raise GateFailed(f"the gate step refused this model; nothing was registered:\n{verdict.table}")
        gated = False
    for needed in (model_path, run_id_path, metrics_path):
        if not Path(needed).is_file():
            raise DataError(f"{needed} not found: run `steelflow train` and `steelflow evaluate` first")
    params = config.with_tuned(params, best_params_path)
    reg = Registry(params)
    with reg.own_retries(), _failures(reg):
        return _register(
            params, reg, model_path, run_id_path, metrics_path, cache_dir, card_path, out_path, gated
        )


def _register(params, reg, model_path, run_id_path, metrics_path, cache_dir, card_path, out_path, gated):
    import mlflow
    import mlflow.pyfunc

    from steelflow.inference import load_trained

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
    }
    atomic.write_text(card_path, model_card(params, meta, metrics, tags))
    if gated and params.registry.challenger == "gated":
        gates = candidate_gates(params, metrics_path, cache_dir)
        if not all(g.passed for g in gates):
            return _not_registered(reg, run_id, accuracy, eval_hash, gates, out_path)
    staging = Path(tempfile.mkdtemp(prefix="steelflow-register-"))
    version = None
    try:
        graph, serving_tags = _serving_graph(params, model, sets, cache_dir, staging)
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


@contextlib.contextmanager
def _failures(reg: Registry) -> Iterator[None]:
    """What the server answered with an error no command expects (or a request that broke off) → one line
    and exit 7, not MLflow's traceback; an unreachable server is already a RegistryError (:meth:`call`)."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, requests.exceptions.RequestException) as e:
        text = " ".join(str(e).split())[:500]
        raise RegistryError(f"the registry at {hide_password(reg.uri)} failed: {text}") from None


def _leave_run(reg: Registry) -> None:
    """Close the re-opened training run as training left it, FINISHED, whether or not the registration
    succeeded (it is the training's record); one try, whose failure is not reported over the error that
    ended the registration. The run is no longer active in this process either way."""
    import mlflow

    if mlflow.active_run() is None:
        return
    with reg.own_retries(), contextlib.suppress(Exception):
        mlflow.end_run(status="FINISHED")


def _not_registered(reg, run_id, accuracy, eval_hash, gates, out_path) -> dict[str, Any]:
    """A model below the gates: no version, @challenger stays; the record says why, the run too."""
    challenger = reg.alias(CHALLENGER)
    result = {
        "name": reg.name,
        "registered": False,
        "version": None,
        "alias": None,
        "challenger": _num(challenger),
        "run_id": run_id,
        "tracking_uri": hide_password(reg.uri),
        "eval_data_hash": eval_hash,
        "accuracy": accuracy,
        "gates": [dataclasses.asdict(g) for g in gates],
        "gate_table": gate_table(gates),
    }
    reg.call(reg.client.set_tag, run_id, "steelflow.registered", "no: failed registry.gates")
    atomic.write_json(out_path, result)
    return result


def _describe_model(reg: Registry, meta: dict[str, Any]) -> None:
    """The registered model's description and tags, what its page in the MLflow UI shows first."""
    reg.call(reg.client.update_registered_model, reg.name, description=reg.cfg.description)
    model_tags = {
        "task": "image classification (steel-surface defects)",
        "classes": ", ".join(meta["classes"]),
        "variant": meta["variant"],
        "serving": f"{reg.cfg.serving.engine} (models-from-code pyfunc)",
        "source": "steelflow register",
    }
    for key, value in model_tags.items():
        reg.call(reg.client.set_registered_model_tag, reg.name, key, value)


def pyfunc_model(
    params: Params, meta: dict[str, Any], graph: Path, weights: Path, test_set: Path
) -> dict[str, Any]:
    """What ``mlflow.pyfunc.log_model`` (or ``save_model``) gets: the model as code (no pickle), its ONNX
    graph and weights as artifacts, its ``model_config``, signature, input example and requirements."""
    from steelflow.serving import model as serving_model
    from steelflow.serving import pyfunc

    serving = params.registry.serving
    return {
        "python_model": serving_model.__file__,
        "artifacts": {"onnx": str(graph), "model": str(weights)},
        "model_config": {
            "cache_size": params.data.cache_size,
            "white_level": params.data.white_level,
            "classes": list(meta["classes"]),
            "data_channels": pyfunc.data_channels(meta),
            **serving.model_dump(),
            "quantize": params.registry.quantize,
        },
        "signature": pyfunc.signature(meta["classes"]),
        # a small real input example: one test image as base64 PNG text, what an HTTP client sends
        "input_example": _example(test_set),
        "code_paths": [str(Path(pyfunc.__file__).parents[1])],
        "pip_requirements": requirements(serving.engine),
    }


def _serving_graph(
    params: Params, model: Any, sets: dict[str, Path], cache_dir: Path, staging: Path
) -> tuple[Path, dict[str, str]]:
    """The ONNX graph the version serves, checked: fp32 against PyTorch (exit 9 on a mismatch), and int8
    against fp32 on every evaluation condition when ``registry.quantize`` asks (exit 8 past the drop)."""
    from steelflow.data import cache
    from steelflow.serving import build as serving_build

    cfg = params.registry
    fp32 = staging / "model.onnx"
    parity = serving_build.export_checked(
        model, cache.load(sets[CLEAN]).images, fp32, cfg.max_parity_diff, cfg.min_label_agreement
    )
    tags = {"engine": cfg.serving.engine, "quantize": cfg.quantize, **parity.tags()}
    if cfg.quantize == "none":
        return fp32, tags
    calibration = None
    if cfg.quantize == "static":
        train = Path(cache_dir) / "splits" / "train.npz"
        calibration = serving_build.calibration_images(train, cfg.calibration_images)
    int8 = serving_build.quantize(fp32, staging / "model.int8.onnx", cfg.quantize, calibration)
    threads = cfg.serving.intra_op_threads
    before = serving_build.accuracies(fp32, sets, threads)
    after = serving_build.accuracies(int8, sets, threads)
    gates = quantization_gates(before, after, cfg.max_quantized_drop)
    if not all(g.passed for g in gates):
        raise GateFailed(
            f"the {cfg.quantize} int8 model loses more than registry.max_quantized_drop "
            f"({cfg.max_quantized_drop}) against fp32; nothing was registered:\n{gate_table(gates)}\n"
            "set registry.quantize=none to register fp32, or try the other mode"
        )
    tags.update({f"fp32_accuracy.{k}": f"{v:.6f}" for k, v in before.items()})
    tags.update({f"int8_accuracy.{k}": f"{v:.6f}" for k, v in after.items()})
    return int8, tags


def _example(path: Path) -> Any:
    import io

    import pandas as pd

    from steelflow.data import cache
    from steelflow.data.images import save_png
    from steelflow.serving.pyfunc import decode

    image = cache.load(path).images[0]
    buf = io.BytesIO()
    save_png(decode(image, channels=image.shape[-1]), buf)
    return pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode("ascii")]})


def requirements(engine: str) -> list[str]:
    """What the served model imports: ONNX Runtime's path needs no torch (nor pydantic or PyYAML)."""
    from importlib.metadata import version

    names = ["mlflow", "numpy", "pandas", "pillow", "onnxruntime"]
    if engine == "pytorch":
        names.append("torch")
    return [f"{n}=={version(n).split('+')[0]}" for n in names]


# --- promote, rollback, history ---------------------------------------------------------------------


def promote(
    params: Params,
    version: str | int | None = None,
    force: bool = False,
    reason: str = "",
    cache_dir: Path = paths.CACHE,
) -> PromotionResult:
    """Make ``version`` (default: the challenger) the champion if it passes every gate, or ``force``."""
    if force and not reason.strip():
        raise ConfigError("--force needs --reason: say why the gates are overridden (it is recorded)")
    reg = Registry(params)
    with _failures(reg):
        return _promote(reg, params, version, force, reason, cache_dir)


def _promote(reg, params, version, force, reason, cache_dir) -> PromotionResult:
    candidate = reg.version(version)
    local = None  # the evaluation data here, used when the two versions were scored on different data
    for _ in range(3):  # if another promotion moves the champion meanwhile, compare again
        champion = reg.champion()
        if champion is not None and _num(champion) == _num(candidate):
            raise RegistryError(f"{reg.name} version {_num(candidate)} is already the champion")
        scores, local = _comparable(reg, params, candidate, champion, cache_dir, local)
        gates = check_gates(params.registry.gates, scores[0], scores[1], params.corrupt.holdout_names)
        passed = all(g.passed for g in gates)
        move = {
            "from_version": _num(champion),
            "to_version": _num(candidate),
            "gates": [dataclasses.asdict(g) for g in gates],
            "reason": reason,
        }
        if not passed and not force:
            reg.record(action="rejected", **move)
            raise GateFailed(
                "gates failed for version "
                f"{_num(candidate)}:\n{gate_table(gates)}\nuse --force --reason TEXT to override"
            )
        if _num(reg.champion()) == _num(champion):
            break
    else:
        raise RegistryError("the champion kept changing during promotion; try again")
    reg.call(reg.client.set_registered_model_alias, reg.name, CHAMPION, _num(candidate))
    reg.record(action="force-promote" if (force and not passed) else "promote", **move)
    return PromotionResult(
        version=_num(candidate),
        previous=_num(champion),
        forced=force and not passed,
        gates=gates,
        accuracy=scores[0],
        champion_accuracy=scores[1],
    )


def rollback(params: Params, reason: str = "") -> tuple[str, str]:
    """Point ``champion`` back at the version the current champion replaced; returns (from, to)."""
    reg = Registry(params)
    with _failures(reg):
        return _rollback(reg, reason)


def _rollback(reg: Registry, reason: str) -> tuple[str, str]:
    champion = reg.champion()
    if champion is None:
        raise RegistryError(f"{reg.name} has no champion to roll back")
    # the promotion that made the current champion, and the champion it replaced
    moves = [
        r
        for r in reg.history()
        if r["action"] in ("promote", "force-promote") and r.get("to_version") == _num(champion)
    ]
    if not moves or not moves[-1].get("from_version"):
        raise RegistryError(f"no earlier champion of {reg.name} in the history: nothing to roll back to")
    previous = moves[-1]["from_version"]
    reg.call(reg.client.set_registered_model_alias, reg.name, CHAMPION, previous)
    reg.record(action="rollback", from_version=_num(champion), to_version=previous, gates=[], reason=reason)
    return _num(champion), previous


def history(params: Params) -> list[dict[str, Any]]:
    reg = Registry(params)
    with _failures(reg):
        return reg.history()


def candidate_gates(
    params: Params, metrics_path: Path = paths.EVALUATE_METRICS, cache_dir: Path = paths.CACHE
) -> list[Gate]:
    """The promotion gates for a model that is not registered yet (the Kubeflow pipeline registers only
    when all pass): its evaluation against ``registry.gates`` and, when there is a champion, against the
    champion on this evaluation data (re-scored when the champion was scored on other data)."""
    if not Path(metrics_path).is_file():
        raise DataError(f"{metrics_path} not found: run `steelflow evaluate` first")
    reg = Registry(params)
    candidate = _accuracy(json.loads(Path(metrics_path).read_text()))
    with _failures(reg):
        champion = reg.champion()
        scores = None
        if champion is not None:
            sets = evaluation_sets(params.corrupt, cache_dir)
            scores = _scored_on(reg, champion, sets, data_hash(sets), params.evaluate.batch_size)
    return check_gates(params.registry.gates, candidate, scores, params.corrupt.holdout_names)


def _comparable(reg, params, candidate, champion, cache_dir, local):
    """Both versions' accuracies on the same evaluation data; re-scores a version evaluated elsewhere."""
    cand_hash = candidate.tags.get("eval_data_hash")
    champ_hash = champion.tags.get("eval_data_hash") if champion is not None else cand_hash
    if champion is None or cand_hash == champ_hash:
        return (_tagged(candidate), _tagged(champion) if champion is not None else None), local
    sets = evaluation_sets(params.corrupt, cache_dir)
    local = local or data_hash(sets)
    scores = [_scored_on(reg, v, sets, local, params.evaluate.batch_size) for v in (candidate, champion)]
    return (scores[0], scores[1]), local


def _scored_on(reg: Registry, v: Any, sets: dict[str, Path], local: str, batch_size: int) -> dict[str, float]:
    """A version's accuracies on ``sets`` (hash ``local``): its tags if scored there, else re-scored."""
    return _tagged(v) if v.tags.get("eval_data_hash") == local else _rescore(reg, v, sets, batch_size)


def _accuracy(metrics: dict[str, Any]) -> dict[str, float]:
    """Accuracy per condition from ``metrics/evaluate.json``."""
    return {name: m["accuracy"] for name, m in metrics["conditions"].items()}


def _num(v: Any) -> str | None:
    """A version's number as text (the REST API gives text, the SQL store an int)."""
    return None if v is None else str(v.version)


def _tagged(v: Any) -> dict[str, float]:
    return {k.removeprefix("accuracy."): float(x) for k, x in v.tags.items() if k.startswith("accuracy.")}


def _rescore(reg: Registry, v: Any, sets: dict[str, Path], batch_size: int) -> dict[str, float]:
    """Download a version's weights and evaluate them on the local evaluation sets."""
    import mlflow.artifacts

    from steelflow.serving import pyfunc

    with tempfile.TemporaryDirectory(prefix="steelflow-rescore-") as tmp:
        local = reg.call(
            mlflow.artifacts.download_artifacts,
            artifact_uri=f"models:/{reg.name}/{v.version}",
            dst_path=tmp,
            tracking_uri=reg.uri,
        )
        weights, _ = pyfunc.weights_in(Path(local), f"models:/{reg.name}/{v.version}")
        return accuracy_of(weights, sets, batch_size, device="cpu")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
