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
  Records live in the registry itself, so everyone sharing the tracking server sees the same history. The
  registered model's description ends with the same history as a table (:func:`history_rows`), so the
  MLflow UI's model page shows it readably; text above it is the user's and is kept.

Every call to the tracking server is retried with exponential backoff (``registry.retries``,
``registry.backoff_seconds``, each request waiting ``mlflow.timeout_seconds`` at most) while the server is
unreachable (told by the error's type, a connection failure or a time-out) and then fails (exit 7) with an
error naming the URI and how long it tried: :class:`steelflow.tracking.RetryBudget`, the scheme every
steelflow MLflow client shares, with MLflow's own HTTP retries off inside.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from steelflow import paths
from steelflow.config import Params, RegistryConfig
from steelflow.errors import ConfigError, DataError, RegistryError
from steelflow.gates import Gate, GateFailed, check_gates, gate_table, quantization_gates  # noqa: F401 (re-exported)
from steelflow.redact import hide_password
from steelflow.scoring import accuracy_of, data_hash, evaluation_sets
from steelflow.serving import pyfunc
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
        model = self.call(self.client.get_registered_model, self.name)
        described = with_history(model.description or "", self.history())
        self.call(self.client.update_registered_model, self.name, description=described)
        return record


@contextlib.contextmanager
def failures(reg: Registry) -> Iterator[None]:
    """What the server answered with an error no command expects (or a request that broke off) → one line
    and exit 7, not MLflow's traceback; an unreachable server is already a RegistryError (:meth:`call`)."""
    import requests

    try:
        yield
    except (MlflowException, requests.exceptions.RequestException) as e:
        text = " ".join(str(e).split())[:500]
        raise RegistryError(f"the registry at {hide_password(reg.uri)} failed: {text}") from None


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
    with failures(reg):
        return _promote(reg, params, version, force, reason, cache_dir)


def _promote(reg, params, version, force, reason, cache_dir) -> PromotionResult:
    candidate = reg.version(version)
    local = None  # the evaluation data here, used when the two versions were scored on different data
    for _ in range(3):  # if another promotion moves the champion meanwhile, compare again
        champion = reg.champion()
        if champion is not None and _num(champion) == _num(candidate):
            raise RegistryError(f"{reg.name} version {_num(candidate)} is already the champion")
        scores, local = _comparable(reg, params, candidate, champion, cache_dir, local)
        mce = float(candidate.tags["mce"]) if "mce" in candidate.tags else None  # register tags it
        gates = check_gates(params.registry.gates, scores[0], scores[1], params.corrupt.holdout_names, mce)
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
    with failures(reg):
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
    with failures(reg):
        return reg.history()


HISTORY_COLUMNS = ("time (UTC)", "action", "from", "to", "gates", "reason", "user")
HISTORY_HEADING = "## Promotion history (steelflow)"
HISTORY_CELL = 120  # characters of a cell in the description's table (a long reason is cut)
DESCRIPTION_CHARS = 5000  # what MLflow stores of a registered model's description


def history_rows(records: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """History records as rows of :data:`HISTORY_COLUMNS`, for `steelflow registry history` and the
    registered model's description."""
    rows = []
    for r in records:
        checked = r.get("gates", [])
        failed = sum(not g["passed"] for g in checked)
        gates = (f"{failed}/{len(checked)} failed" if failed else "passed") if checked else "-"
        when = r["time"][:19].replace("T", " ")
        moved = (str(r.get("from_version") or "-"), str(r["to_version"]))
        rows.append((when, r["action"], *moved, gates, r.get("reason", ""), r.get("user", "")))
    return rows


def with_history(description: str, records: list[dict[str, Any]]) -> str:
    """``description`` with its steelflow history table (newest first) replaced by one of ``records``.

    MLflow stores at most 5,000 characters of a description (a column of that size in PostgreSQL): the
    table keeps the newest rows that fit beside the user's text, then says how many older ones
    `steelflow registry history` lists."""
    kept = description.split(HISTORY_HEADING)[0].rstrip()

    def cell(text: str) -> str:
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= HISTORY_CELL else text[: HISTORY_CELL - 1] + "…"

    lines = [HISTORY_HEADING, "", "| " + " | ".join(HISTORY_COLUMNS) + " |"]
    lines.append("|" + " --- |" * len(HISTORY_COLUMNS))
    rows = ["| " + " | ".join(cell(c) for c in row) + " |" for row in reversed(history_rows(records))]
    room = DESCRIPTION_CHARS - len(kept) - sum(len(line) + 1 for line in lines) - 100
    shown = 0
    while shown < len(rows) and len(rows[shown]) + 1 <= room:
        room -= len(rows[shown]) + 1
        shown += 1
    lines += rows[:shown]
    if shown < len(rows):
        lines += ["", f"{len(rows) - shown} older record(s): `steelflow registry history`"]
    return "\n\n".join(part for part in (kept, "\n".join(lines)) if part) + "\n"


def candidate_gates(
    params: Params, metrics_path: Path = paths.EVALUATE_METRICS, cache_dir: Path = paths.CACHE
) -> list[Gate]:
    """The promotion gates for a model that is not registered yet (the Kubeflow pipeline registers only
    when all pass): its evaluation against ``registry.gates`` and, when there is a champion, against the
    champion on this evaluation data (re-scored when the champion was scored on other data)."""
    if not Path(metrics_path).is_file():
        raise DataError(f"{metrics_path} not found: run `steelflow evaluate` first")
    reg = Registry(params)
    metrics = json.loads(Path(metrics_path).read_text())
    candidate = _accuracy(metrics)
    with failures(reg):
        champion = reg.champion()
        scores = None
        if champion is not None:
            sets = evaluation_sets(params.corrupt, cache_dir)
            scores = _scored_on(reg, champion, sets, data_hash(sets), params.evaluate.batch_size)
    mce = metrics.get("summary", {}).get("mce")
    return check_gates(params.registry.gates, candidate, scores, params.corrupt.holdout_names, mce)


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
