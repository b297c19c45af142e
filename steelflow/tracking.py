"""Run tracking: what every train and evaluate run records, and the MLflow adapter that records it.

The steps talk to a :class:`Tracker`; the CLI hands them an :class:`MlflowTracker` (or
:class:`NullTracker` with ``--no-track``), so training itself never imports MLflow. The tracking URI is
``MLFLOW_TRACKING_URI`` when set, else ``mlflow.tracking_uri`` from params (default: ``mlflow.db``, a SQLite
file at the project root that ``mlflow ui`` opens with no server).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from steelflow import paths
from steelflow.config import MlflowConfig
from steelflow.errors import SteelflowError, TrackingError


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None: ...
    def log_model(self, model: Any, input_example: Any) -> None: ...


class NullTracker:
    """Records nothing: for runs without a tracking server, and for tests of the training loop itself."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        pass

    def log_model(self, model: Any, input_example: Any) -> None:
        pass


class MlflowTracker:
    """One MLflow run: opened with params and tags, closed FINISHED (or FAILED on an exception)."""

    def __init__(
        self,
        cfg: MlflowConfig,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        run_id: str | None = None,
    ):
        # MLflow's HTTP client retries with exponential backoff; mlflow.retries / backoff_factor bound it.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(cfg.retries)
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(cfg.backoff_factor)
        import mlflow

        self._mlflow = mlflow
        self.uri = tracking_uri(cfg)
        with self._failing("opening the run"):
            mlflow.set_tracking_uri(self.uri)
            mlflow.set_experiment(cfg.experiment)
            self._run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)
            self.run_id = self._run.info.run_id
            if run_id is None:
                mlflow.log_params(flatten(params))

    @contextlib.contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """MLflow's errors (after its retries) → one clear error naming the server; local outputs stay."""
        try:
            yield
        except SteelflowError:
            raise
        except Exception as e:
            raise TrackingError(
                f"MLflow at {self.uri} failed while {what}: {str(e)[:500]}. The step's local outputs "
                "(models/, metrics/, reports/) are kept; rerun the step, or pass --no-track"
            ) from None

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            with self._failing("closing the run"):
                self._mlflow.end_run(status="FINISHED")
        else:
            with contextlib.suppress(Exception):  # the step's own error is the one to report
                self._mlflow.end_run(status="FAILED")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        with self._failing("logging metrics"):
            self._mlflow.log_metrics({_metric_key(k): float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        with self._failing(f"uploading {path}"):
            self._mlflow.log_artifact(str(path), artifact_path=folder)

    def log_model(self, model: Any, input_example: Any) -> None:
        import mlflow.pytorch
        import torch

        # Pinning the requirements skips MLflow's slow inference of them (it would import the model again).
        with self._failing("uploading the model"):
            mlflow.pytorch.log_model(
                model,
                name="model",
                input_example=input_example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
            )


def tracking_uri(cfg: MlflowConfig) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri


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


def run_tags(params: dict[str, Any], device: Any, step: str) -> dict[str, str]:
    return {
        **git_state(),
        "data_version": data_version(),
        "params_hash": params_hash(params),
        "device": device_name(device),
        "steelflow.step": step,
    }
