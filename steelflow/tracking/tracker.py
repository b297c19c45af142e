"""A step's MLflow run: what every train and evaluate run records, and the adapter that records it.

The steps talk to a :class:`Tracker`; the CLI hands them an :class:`MlflowTracker` (or
:class:`NullTracker` with ``--no-track``), so training itself never imports MLflow: the MLflow imports below
sit inside the functions that call it. Every call to the server goes through the
:class:`~steelflow.tracking.retry.RetryBudget` of ``mlflow.*``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from steelflow import project, redact
from steelflow.config import MlflowConfig, flatten_tree
from steelflow.data import shards
from steelflow.errors import ServerUnreachable, SteelflowError, TrackingError
from steelflow.tracking import tree as run_tree
from steelflow.tracking.retry import RetryBudget

T = TypeVar("T")


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(
        self, metrics: dict[str, float], step: int | None = None, data: tuple[str, Path] | None = None
    ) -> None: ...
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None: ...
    def log_model(self, model: Any, input_example: Any) -> None: ...
    def log_datasets(self, datasets: list[tuple[str, Path, str]]) -> None: ...


class NullTracker:
    """Records nothing: for runs without a tracking server, and for tests of the training loop itself."""

    run_id: str | None = None

    def log_metrics(
        self, metrics: dict[str, float], step: int | None = None, data: tuple[str, Path] | None = None
    ) -> None:
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
                self._run = self._call("opening the run", self._open, client, name, tags)
                self._call("logging the params", mlflow.log_params, redact.tree(run_params(params)))
            self.run_id = self._run.info.run_id
        except BaseException:
            self._end_failed()  # never leave a half-opened run active in this process
            raise

    def _open(self, client: Any, name: str, tags: dict[str, str]) -> Any:
        """A new run: top-level, or under ``MLFLOW_RUN_ID`` (:mod:`steelflow.tracking.tree`). Never a bare
        ``start_run()`` under that variable: MLflow would log into the parent itself."""
        parent = run_tree.parent_id()
        if parent is None:
            return self._mlflow.start_run(run_name=name, tags=tags)
        where = run_tree.place(client, parent)
        if where.adopt:  # the task run Kubeflow's integration made for this step: log into it
            run = self._mlflow.start_run(run_id=where.adopt)
            self._mlflow.set_tags({**tags, "mlflow.runName": name})
            return run
        child = client.create_run(
            where.experiment_id, run_name=name, tags={**tags, run_tree.PARENT_TAG: where.parent}
        )
        return self._mlflow.start_run(run_id=child.info.run_id)

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)`` within the retry budget; MLflow's errors → one clear error naming the server (local
        outputs stay)."""
        kept = (
            "The step's local outputs (models/, metrics/, reports/) are kept; rerun the step (`steelflow "
            "train --resume` continues the same run), or pass --no-track"
        )
        where = redact.redact(self.uri)
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
        with self._budget.requests(), contextlib.suppress(Exception), run_tree.parent_kept():
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
        with self._budget.requests(), contextlib.suppress(Exception), run_tree.parent_kept():
            self._mlflow.end_run(status="FINISHED")  # the status is set; this leaves the run locally
        link = run_link(self.uri, self._run.info.experiment_id, self.run_id)
        if link:  # MLflow's own line is off (steelflow.redact.install): it shows the URI's password
            runs = experiment_link(self.uri, self._run.info.experiment_id)
            print(f"🏃 View run {self._run.info.run_name} at: {link}\n🧪 All runs: {runs}", flush=True)

    def log_metrics(
        self, metrics: dict[str, float], step: int | None = None, data: tuple[str, Path] | None = None
    ) -> None:
        """Metrics of the run; with ``data`` (name, shard set), measured on it by the run's logged model:
        MLflow 3 links them to that model (its ``model_id``) and the dataset, so the model's page shows its
        evaluation dataset by dataset."""
        values = {metric_key(k): float(v) for k, v in metrics.items()}
        link: dict[str, Any] = {}
        if data is not None:
            link = {"dataset": dataset(*data), "model_id": self.model_id()}
        self._call("logging metrics", self._mlflow.log_metrics, values, step=step, **link)

    def model_id(self) -> str | None:
        """The id of the model this run logged (``train``'s ``model``; MLflow 3's LoggedModel), or None."""
        if getattr(self, "_model_id", None) is None:
            found = self._call(
                "finding the run's model",
                self._mlflow.search_logged_models,
                experiment_ids=[self._run.info.experiment_id],
                filter_string=f"source_run_id = '{self.run_id}' AND name = 'model'",
                output_format="list",
            )
            self._model_id = found[0].model_id if found else None
        return self._model_id

    def log_datasets(self, datasets: list[tuple[str, Path, str]]) -> None:
        """``(name, cache shard set, context)`` → MLflow datasets (the run's Datasets panel), each with its
        content hash as the digest (:func:`dataset_digest`), so a run names the exact data it read."""
        self._call(
            "logging the datasets",
            self._mlflow.log_inputs,
            datasets=[dataset(name, path) for name, path, _ in datasets],
            contexts=[context for *_, context in datasets],
            tags_list=[dataset_tags(path) for _, path, _ in datasets],
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
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not run_id:
        return None
    host = parts.netloc.rpartition("@")[2]
    base = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return redact.redact(f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}")


# MLflow 3's UI opens an experiment in its GenAI view (traces, "Detect issues") unless told otherwise. Two
# things tell it: the experiment's kind tag (what the UI's own kind selector sets; the experiments list and
# earlier 3.x read it) and, from 3.17 on, the UI's GenAI / Model training switch, remembered per browser and
# GenAI at first: a link carries it as `workflowType`. The runs table shows no metric column until one is
# chosen; steelflow's choice (the key metrics, best clean accuracy first) is a shared view stored in an
# experiment tag, which the UI applies from a link's `viewStateShareKey`.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
VIEW_KEY = "steelflow"
ML_VIEW = "workflowType=machine_learning"  # the UI's switch between GenAI and model training, in a link
KEY_METRICS = (
    "eval/clean_accuracy",
    "eval/worst_accuracy",
    "eval/mean_corrupted_accuracy",
    "eval/holdout_worst_accuracy",
    "val/best_accuracy",
)


def experiment_tags() -> dict[str, str]:
    """The tags steelflow keeps on its experiments: the classic ML kind and the runs-table view."""
    columns = [f"metrics.`{m}`" for m in KEY_METRICS]
    shown = ["attributes.`Models`", *columns]
    view = {"selectedColumns": shown, "orderByKey": columns[0], "orderByAsc": False}
    return {**EXPERIMENT_KIND, f"mlflow.sharedViewState.{VIEW_KEY}": json.dumps(view)}


def experiment_link(uri: str, experiment_id: str) -> str | None:
    """The experiment's runs table in the UI, in steelflow's view (key metrics as columns); ``None`` for a
    local store."""
    run = run_link(uri, experiment_id, "-")
    return run and run.replace("/runs/-?", f"/runs?viewStateShareKey={VIEW_KEY}&")


def ensure_experiment(client: Any, name: str) -> str:
    """The experiment's id, created when missing, with :func:`experiment_tags` (added to one made before
    them). For a local store its artifacts go to ``mlruns/`` at the project root: MLflow's default,
    ``./mlruns`` of the working folder, is inside the temporary clone under ``dvc exp run --temp``. A
    server decides itself (``mlflow-artifacts:`` with served artifacts)."""
    from mlflow.exceptions import MlflowException, RestException

    found = client.get_experiment_by_name(name)
    if found is not None:
        for key, value in experiment_tags().items():
            if found.tags.get(key) != value:
                # a view, not a record: a server that refuses it (no EDIT on the experiment) stops nothing
                with contextlib.suppress(RestException):
                    client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    location = project.artifact_root() if project.is_local_store(client.tracking_uri) else None
    try:
        return client.create_experiment(name, artifact_location=location, tags=experiment_tags())
    except MlflowException:  # another process created it meanwhile
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


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
                where = redact.redact(self._client.tracking_uri)
                raise TrackingError(f"MLflow at {where} unreachable ({name}): {e}") from None

        return guarded


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
            f"MLflow at {redact.redact(uri)} unreachable while checking the interrupted run {run_id}: {e}. "
            "Rerun when it is back, or pass --no-track"
        ) from None
    except MlflowException:  # deleted, or another store: nothing to end or continue
        return None
    return None


# MLflow stores a dataset's digest in 36 characters (VARCHAR(36): PostgreSQL and MySQL refuse more).
DIGEST_CHARS = 32


def dataset(name: str, path: Path) -> Any:
    """An MLflow dataset for a cache shard set (or a single file): its relative path as the source (valid
    wherever the project is), its content hash as the digest (:func:`dataset_digest`)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    return MetaDataset(LocalArtifactDatasetSource(str(path)), name=name, digest=dataset_digest(path))


def dataset_digest(path: Path) -> str:
    """A shard set's :func:`~steelflow.data.shards.digest` (the sha256 of its index, which holds every
    shard's sha256: read from the index alone, not the images), cut to what MLflow stores; a file's md5."""
    if shards.exists(path):
        return shards.digest(path)[:DIGEST_CHARS]
    return file_md5(path)


def dataset_tags(path: Path) -> dict[str, str]:
    """The tags of a dataset input: a shard set's full sha256, images and shards (from its index); a
    file's DVC md5."""
    if not shards.exists(path):
        return {"dvc.md5": file_md5(path)}
    index = json.loads((Path(path) / shards.INDEX).read_text())
    return {
        "shards.sha256": shards.digest(path),
        "shards.images": str(index["total"]),
        "shards.files": str(len(index["shards"])),
    }


def file_md5(path: Path) -> str:
    """The md5 DVC 3 records for a file (of its bytes)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metric_key(key: str) -> str:
    # MLflow keys allow letters, digits, _ - . / and spaces; condition names already fit.
    return key.replace(":", "_")


def run_params(tree: dict[str, Any]) -> dict[str, Any]:
    """A params tree as MLflow run params: dotted keys (``{"train": {"lr": 0.1}}`` → ``{"train.lr": 0.1}``),
    lists as their JSON text, empty sections left out."""
    return {
        key: json.dumps(value) if isinstance(value, list | tuple) else value
        for key, value in flatten_tree(tree).items()
        if value != {}
    }
