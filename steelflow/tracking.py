"""Run tracking: what every train and evaluate run records, and the MLflow adapter that records it.

The steps talk to a :class:`Tracker`; the CLI hands them an :class:`MlflowTracker` (or
:class:`NullTracker` with ``--no-track``), so training itself never imports MLflow. The tracking URI is
``MLFLOW_TRACKING_URI`` when set, else ``mlflow.tracking_uri`` from params (default: ``mlflow.db``, a SQLite
file at the project root that ``mlflow ui`` opens with no server).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Protocol

from steelflow import paths
from steelflow.config import MlflowConfig


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
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri(cfg))
        mlflow.set_experiment(cfg.experiment)
        self._run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)
        self.run_id = self._run.info.run_id
        if run_id is None:
            mlflow.log_params(flatten(params))

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self._mlflow.end_run(status="FINISHED" if exc_type is None else "FAILED")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({_metric_key(k): float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=folder)

    def log_model(self, model: Any, input_example: Any) -> None:
        import mlflow.pytorch
        import torch

        # Pinning the requirements skips MLflow's slow inference of them (it would import the model again).
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
