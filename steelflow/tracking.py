"""Run tracking: what every train and evaluate run records, and the MLflow adapter that records it.

The steps talk to a :class:`Tracker`; the CLI hands them an :class:`MlflowTracker` (or
:class:`NullTracker` with ``--no-track``), so training itself never imports MLflow. The tracking URI is
``MLFLOW_TRACKING_URI`` when set, else ``mlflow.tracking_uri`` from params (default: ``mlflow.db``, a SQLite
file at the project root that ``mlflow ui`` opens with no server). A relative SQLite URI is anchored at the
project root (:mod:`steelflow.project`), so ``dvc exp run --temp`` / ``--queue`` log into the project's
store, not into the temporary clone DVC deletes.

Lineage: a training run and the model version made from it carry the same ``params_hash``, of the
effective params training used (tune's values applied), see :func:`lineage_params`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from steelflow import paths, project, redact
from steelflow.config import MlflowConfig, hide_password
from steelflow.errors import SteelflowError, TrackingError

T = TypeVar("T")


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None: ...
    def log_model(self, model: Any, input_example: Any) -> None: ...
    def log_datasets(self, datasets: list[tuple[str, Path, str]]) -> None: ...


class NullTracker:
    """Records nothing: for runs without a tracking server, and for tests of the training loop itself."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        pass

    def log_model(self, model: Any, input_example: Any) -> None:
        pass

    def log_datasets(self, datasets: list[tuple[str, Path, str]]) -> None:
        pass


class MlflowTracker:
    """One MLflow run: opened with params and tags, closed FINISHED (or FAILED on an exception).

    ``params`` are logged as run params (keep them to what shapes the model: the UI lists every one);
    ``params_document``, when given, is the whole effective params tree, logged as ``params.yaml`` when the
    run closes. Re-opening a run (``run_id``) logs into it without touching its params or identity tags:
    evaluation adds to the training run, it does not rename it, and ``train --resume`` continues the run
    its checkpoint's epochs were logged to.

    Every call goes through :class:`RetryBudget` (``mlflow.retries``, ``mlflow.backoff_factor``,
    ``mlflow.timeout_seconds``); a server that stays away fails the step with one :class:`TrackingError`,
    and the run is ended FAILED with one more try, never retried, whose own failure is not reported over
    the step's.
    """

    def __init__(
        self,
        cfg: MlflowConfig,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        run_id: str | None = None,
        params_document: dict[str, Any] | None = None,
    ):
        import mlflow

        self._mlflow = mlflow
        self.uri = tracking_uri(cfg)
        self._budget = RetryBudget.of(cfg)
        # The params document is an artifact: uploaded when the run closes, so an artifact store that is
        # down fails the step after its local outputs are written, not before it starts.
        self._params_document = redact.tree(params_document)  # the whole tree: no password in the artifact
        self.run_id: str | None = None
        try:
            mlflow.set_tracking_uri(self.uri)
            client = mlflow.MlflowClient(self.uri)
            experiment = self._call("opening the run", ensure_experiment, client, cfg.experiment)
            self._call("opening the run", mlflow.set_experiment, experiment_id=experiment)
            if run_id is not None:
                self._run = self._call("opening the run", mlflow.start_run, run_id=run_id)
            else:
                name, tags = redact.redact(run_name), redact.tree(tags)
                self._run = self._call("opening the run", mlflow.start_run, run_name=name, tags=tags)
                self._call("logging the params", mlflow.log_params, redact.tree(flatten(params)))
            self.run_id = self._run.info.run_id
        except BaseException:
            self._end_failed()  # never leave a half-opened run active in this process
            raise

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)`` within the retry budget; MLflow's errors → one clear error naming the server (local
        outputs stay)."""
        kept = (
            "The step's local outputs (models/, metrics/, reports/) are kept; rerun the step (`steelflow "
            "train --resume` continues the same run), or pass --no-track"
        )
        where = hide_password(self.uri)
        try:
            return self._budget.call(fn, *args, **kwargs)
        except SteelflowError:
            raise
        except ServerUnreachable as e:
            raise TrackingError(f"MLflow at {where} unreachable while {what}: {e}. {kept}") from None
        except Exception as e:
            raise TrackingError(f"MLflow at {where} failed while {what}: {str(e)[:500]}. {kept}") from None

    def _end_failed(self) -> None:
        """End this process's active run FAILED with one try and no retries (bounded by the request
        timeout): the error that ended the step is the one to report, not this one."""
        if self._mlflow.active_run() is None:
            return
        with self._budget.requests(), contextlib.suppress(Exception):
            self._mlflow.end_run(status="FAILED")  # pops the run first: not active here even if this fails

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self._end_failed()
            return
        try:
            if self._params_document is not None:
                document = self._params_document
                self._call("uploading params.yaml", self._mlflow.log_dict, document, "params.yaml")
            client = self._mlflow.MlflowClient(self.uri)
            self._call("closing the run", client.set_terminated, self.run_id, "FINISHED")
        except BaseException:
            self._end_failed()
            raise
        with self._budget.requests(), contextlib.suppress(Exception):
            self._mlflow.end_run(status="FINISHED")  # the status is set; this leaves the run locally
        link = run_link(self.uri, self._run.info.experiment_id, self.run_id)
        if link:  # MLflow's own line is off (steelflow.redact.install): it shows the URI's password
            print(f"🏃 View run {self._run.info.run_name} at: {link}", flush=True)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = {_metric_key(k): float(v) for k, v in metrics.items()}
        self._call("logging metrics", self._mlflow.log_metrics, values, step=step)

    def log_datasets(self, datasets: list[tuple[str, Path, str]]) -> None:
        """``(name, cache file, context)`` → MLflow datasets (the run's Datasets panel), each with the md5
        DVC computes for the file as its digest, so a run names the exact data it read."""
        self._call(
            "logging the datasets",
            self._mlflow.log_inputs,
            datasets=[dataset(name, path) for name, path, _ in datasets],
            contexts=[context for *_, context in datasets],
            tags_list=[{"dvc.md5": file_md5(path)} for _, path, _ in datasets],
        )

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self._call(f"uploading {path}", self._mlflow.log_artifact, str(path), artifact_path=folder)

    def log_model(self, model: Any, input_example: Any) -> None:
        import mlflow.pytorch
        import torch

        # Pinning the requirements skips MLflow's slow inference of them (it would import the model again).
        self._call(
            "uploading the model",
            mlflow.pytorch.log_model,
            model,
            name="model",
            input_example=input_example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
        )


def tracking_uri(cfg: MlflowConfig) -> str:
    """``MLFLOW_TRACKING_URI`` or ``mlflow.tracking_uri`` (resolved when params were loaded); a relative
    SQLite path is taken from the project root, so a DVC experiment in a temporary clone still logs into
    the project's ``mlflow.db``."""
    return project.anchored(cfg.effective_uri)


def run_link(uri: str, experiment_id: str, run_id: str | None) -> str | None:
    """The run's page in a tracking server's UI (``None`` for a local store), without the user and password
    the tracking URI may carry: a link to open, not to log in with."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not run_id:
        return None
    host = parts.netloc.rpartition("@")[2]
    base = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return redact.redact(f"{base}/#/experiments/{experiment_id}/runs/{run_id}")


def ensure_experiment(client: Any, name: str) -> str:
    """The experiment's id, created when missing. For a local store its artifacts go to ``mlruns/`` at
    the project root: MLflow's default, ``./mlruns`` of the working folder, is inside the temporary clone
    under ``dvc exp run --temp``. A server decides itself (``mlflow-artifacts:`` with served artifacts)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = project.artifact_root() if project.is_local_store(client.tracking_uri) else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another process created it meanwhile
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class ServerUnreachable(Exception):  # noqa: N818 (what the caller reports: the server is not there)
    """The tracking server stayed unreachable for a whole :class:`RetryBudget`; the text says how long."""


@dataclasses.dataclass(frozen=True)
class RetryBudget:
    """How long steelflow keeps calling a tracking server that does not answer: the one retry scheme of its
    MLflow clients (a step's run, :class:`steelflow.registry.Registry`, tune's study run).

    A call is tried, and while the server is unreachable (:func:`unreachable`) tried again after
    ``backoff_seconds``, doubling, ``retries`` times; every request inside waits ``timeout_seconds`` at
    most for an answer, so a server that hangs is bounded as one that is gone. MLflow's own HTTP retries
    (7 by default, about four minutes) are off inside, so this is the whole wait:
    :attr:`worst_case_seconds`, 47 s with the defaults (a refused connection fails at once: 7 s).
    """

    retries: int
    backoff_seconds: float
    timeout_seconds: int

    @classmethod
    def of(cls, cfg: MlflowConfig, retries: int | None = None, backoff: float | None = None) -> RetryBudget:
        """``mlflow.*``'s budget (the registry passes its own ``retries`` and ``backoff_seconds``)."""
        return cls(
            retries=cfg.retries if retries is None else retries,
            backoff_seconds=cfg.backoff_factor if backoff is None else backoff,
            timeout_seconds=cfg.timeout_seconds,
        )

    @property
    def worst_case_seconds(self) -> float:
        return (self.retries + 1) * self.timeout_seconds + self.backoff_seconds * (2**self.retries - 1)

    def requests(self) -> contextlib.AbstractContextManager[None]:
        """MLflow's HTTP settings for one try: no retries of its own, ``timeout_seconds`` per request."""
        return mlflow_http(retries=0, backoff_factor=0, timeout=self.timeout_seconds)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)``, retried while the server is unreachable; an answer from the server (no such
        version, a refused request) passes through at once. :class:`ServerUnreachable` when it stays away."""
        started = time.monotonic()
        wait = self.backoff_seconds
        for attempt in range(self.retries + 1):
            try:
                with self.requests():
                    return fn(*args, **kwargs)
            except Exception as e:
                if not unreachable(e):
                    raise
                error: Exception = e
            if attempt < self.retries:
                time.sleep(wait)
                wait *= 2
        raise ServerUnreachable(
            f"gave up after {self.retries} retries in {time.monotonic() - started:.0f} s "
            f"({_reason(error, self.timeout_seconds)})"
        ) from None


@contextlib.contextmanager
def mlflow_http(retries: int, backoff_factor: float, timeout: int) -> Iterator[None]:
    """MLflow's own HTTP settings (retries, backoff, request timeout) for the calls inside, restored after.

    Scoped rather than set process-wide: :class:`RetryBudget` turns MLflow's retries off only around the
    calls it retries itself."""
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(int(backoff_factor)),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout),
    }
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _connection_errors() -> tuple[type[BaseException], ...]:
    import requests

    return (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unreachable(e: BaseException) -> bool:
    """A connection failure or time-out anywhere in the error's chain. MLflow wraps requests' errors in
    an ``MlflowException`` (``raise ... from`` or implicitly while handling), so the cause is what tells
    "the server is not there" from "the server said no"."""
    return any(isinstance(c, _connection_errors()) for c in _chain(e))


def _reason(e: BaseException, timeout: int) -> str:
    """Why the last try failed, in a few words: the socket's own error, or the time-out."""
    import requests

    for c in _chain(e):
        if isinstance(c, requests.exceptions.Timeout | TimeoutError):
            return f"no answer within {timeout} s"
        if isinstance(c, OSError) and c.strerror:
            return c.strerror
    return type(e).__name__


class GuardedClient:
    """An ``MlflowClient`` whose every call runs within the :class:`RetryBudget` of ``mlflow.*``: a server
    that stays away is one :class:`TrackingError` (exit 10); its answers (no such run) pass through. For
    code that talks to the client directly (tune's study run and trial runs)."""

    def __init__(self, cfg: MlflowConfig):
        from mlflow import MlflowClient

        self._client = MlflowClient(tracking_uri(cfg))
        self._budget = RetryBudget.of(cfg)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return self._budget.call(attr, *args, **kwargs)
            except ServerUnreachable as e:
                where = hide_password(self._client.tracking_uri)
                raise TrackingError(f"MLflow at {where} unreachable ({name}): {e}") from None

        return guarded


def bound_mlflow_requests() -> None:
    """Bound MLflow's own HTTP retries and request time-out process-wide to the defaults of ``mlflow.*``
    (unless the environment sets them): for the calls no :class:`RetryBudget` wraps, such as loading a
    model in ``predict``. MLflow's defaults (7 retries, 120 s a request) wait for minutes."""
    fields = MlflowConfig.model_fields
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(fields["retries"].default))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(int(fields["backoff_factor"].default)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(fields["timeout_seconds"].default))


def end_interrupted(cfg: MlflowConfig, run_id: str, resume: bool) -> str | None:
    """The training run ``run_id`` that a killed or failed ``train`` left: with ``resume``, its id when it
    did not finish, so training continues in it; otherwise, if it is still RUNNING, it is ended KILLED
    with a ``steelflow.ended`` tag saying why, so no run stays RUNNING forever. None when it is gone."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    budget = RetryBudget.of(cfg)
    uri = tracking_uri(cfg)
    client = MlflowClient(uri)
    try:
        run = budget.call(client.get_run, run_id)
        if resume and run.info.status != "FINISHED":
            return run_id
        if run.info.status == "RUNNING":
            why = "killed or cut off from the tracking server; ended by a later `steelflow train`"
            budget.call(client.set_tag, run_id, "steelflow.ended", why)
            budget.call(client.set_terminated, run_id, "KILLED")
    except ServerUnreachable as e:
        raise TrackingError(
            f"MLflow at {hide_password(uri)} unreachable while checking the interrupted run {run_id}: {e}. "
            "Rerun when it is back, or pass --no-track"
        ) from None
    except MlflowException:  # deleted, or another store: nothing to end or continue
        return None
    return None


def dataset(name: str, path: Path) -> Any:
    """An MLflow dataset for a cache file: its relative path as the source (valid wherever the project
    is), its DVC md5 as the digest."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    return MetaDataset(LocalArtifactDatasetSource(str(path)), name=name, digest=file_md5(path))


def file_md5(path: Path) -> str:
    """The md5 DVC 3 records for a file (of its bytes)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` → ``{"train.lr": 0.1}``; lists become their JSON text."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple) else value
    return flat


def _metric_key(key: str) -> str:
    # MLflow keys allow letters, digits, _ - . / and spaces; condition names already fit.
    return key.replace(":", "_")


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Where the model comes from: what a run logs as params, and what its params_hash covers. The rest of the
# tree (evaluation, registry, tuning, Kubeflow...) goes into the run's params.yaml artifact.
LINEAGE_SECTIONS = ("data", "split", "model", "train")
# ...without the keys that choose where or how fast training runs, or whether tune's values were applied
# (the values themselves are in the tree by then).
_NOT_LINEAGE = {"train": ("device", "threads", "use_tuned")}


def lineage_params(tree: dict[str, Any]) -> dict[str, Any]:
    """The sections of an (effective) params tree that shape the model: what a run logs as params."""
    return {section: tree[section] for section in LINEAGE_SECTIONS if section in tree}


def lineage_hash(tree: dict[str, Any]) -> str:
    """The ``params_hash`` a training run and its model version share."""
    sections = lineage_params(tree)
    return params_hash(
        {
            name: {k: v for k, v in section.items() if k not in _NOT_LINEAGE.get(name, ())}
            for name, section in sections.items()
        }
    )


def data_version(manifest: Path = paths.MANIFEST) -> str:
    """The md5 DVC 3 records for the manifest in dvc.lock (computed the same way when there is no lock)."""
    return hashlib.md5(manifest.read_bytes()).hexdigest() if manifest.is_file() else "unknown"


def git_state(cwd: Path | None = None) -> dict[str, str]:
    """The commit that runs, and whether tracked files differ from it. A container image or a Kubeflow step
    runs outside the checkout: there ``STEELFLOW_GIT_COMMIT`` (and ``STEELFLOW_GIT_DIRTY``) say it."""
    if os.environ.get("STEELFLOW_GIT_COMMIT"):
        return {
            "git_commit": os.environ["STEELFLOW_GIT_COMMIT"],
            "git_dirty": os.environ.get("STEELFLOW_GIT_DIRTY", "unknown"),
        }

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        commit = git("rev-parse", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


def device_name(device: Any) -> str:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def identity_tags(tree: dict[str, Any]) -> dict[str, str]:
    """What a run and its model version both say about where they come from: commit (also as
    ``mlflow.source.git.commit``, the tag the MLflow UI shows), data version, params hash and the DVC
    experiment that made them."""
    git = git_state()
    tags = {**git, "data_version": data_version(), "params_hash": lineage_hash(tree)}
    if git["git_commit"] != "unknown":
        tags["mlflow.source.git.commit"] = git["git_commit"]
    return tags | project.experiment_tags()


def run_tags(params: dict[str, Any], device: Any, step: str) -> dict[str, str]:
    return {**identity_tags(params), "device": device_name(device), "steelflow.step": step}


def run_name(tree: dict[str, Any], step: str) -> str:
    """``train casinet lr=0.05 1a2b3c4``: two runs told apart in the MLflow UI by more than their time."""
    sha = git_state()["git_commit"]
    short = "" if sha == "unknown" else f" {sha[:7]}"
    return f"{step} {tree['model']['variant']} lr={tree['train']['lr']:g}{short}"


# (table, column) of a SQLite store that hold artifact locations (MLflow 3's schema). Each holds an
# absolute path (``file:///…/mlruns/…`` or a bare ``/…/mlruns/…``), which MLflow resolves at read time.
_ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)


def relocate_artifacts(cfg: MlflowConfig, old_root: Path | None = None) -> tuple[Path, Path, int]:
    """After the project folder moved: point the local store's artifact locations at ``mlruns/`` of the
    project root here. MLflow records absolute artifact paths with a SQLite store, so a moved project's
    runs, logged models and versions otherwise link to the folder they came from. ``old_root`` defaults to
    where the experiment's artifacts were put (``<old root>/mlruns``). Returns (from, to, rows changed)."""
    import sqlite3
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from steelflow.errors import ConfigError

    uri = tracking_uri(cfg)
    if not uri.startswith(project.SQLITE):
        raise ConfigError(
            f"mlflow.tracking_uri is {uri}: only a local SQLite store records absolute artifact paths "
            "(a tracking server serves its artifacts wherever the project is)"
        )
    db = Path(uri[len(project.SQLITE) :].partition("?")[0])
    if not db.is_file():
        raise ConfigError(f"{db} not found: nothing to relocate")
    new = project.root() / "mlruns"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        if old_root is None:
            row = conn.execute(
                "select artifact_location from experiments where name = ?", (cfg.experiment,)
            ).fetchone()
            if row is None:
                raise ConfigError(f"{db} has no experiment {cfg.experiment!r} (mlflow.experiment)")
            location = row[0]
            path = (
                Path(url2pathname(urlparse(location).path))
                if location.startswith("file:")
                else Path(location)
            )
            old = next((p for p in (path, *path.parents) if p.name == "mlruns"), None)
            if old is None:
                raise ConfigError(
                    f"experiment {cfg.experiment!r} keeps its artifacts at {location}, not in mlruns/"
                )
        else:
            old = Path(old_root) / "mlruns"
        if old == new:
            return old, new, 0
        changed = 0
        for table, column in _ARTIFACT_COLUMNS:
            for prefix in (old.as_uri(), str(old)):
                cur = conn.execute(
                    f"update {table} set {column} = ? || substr({column}, ?) "  # noqa: S608 (fixed names)
                    f"where {column} = ? or {column} like ? escape '\\'",
                    (_new_prefix(prefix, old, new), len(prefix) + 1, prefix, _like(prefix) + "/%"),
                )
                changed += cur.rowcount
    return old, new, changed


def _new_prefix(prefix: str, old: Path, new: Path) -> str:
    return new.as_uri() if prefix == old.as_uri() else str(new)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
