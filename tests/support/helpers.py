"""Helpers the tests share: small params, image writers, where the shared datasets are."""

from __future__ import annotations

import contextlib
import copy
import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
NEU_CLS = SHARED / "datasets" / "NEU-CLS"


class Replace(dict):
    """A value :func:`deep_update` puts in place of the old one instead of merging into it."""


yaml.SafeDumper.add_representer(Replace, yaml.SafeDumper.represent_dict)


_REPO_GRADED = yaml.safe_load((REPO / "params.yaml").read_text())["corrupt"]["graded"]["families"]

# Small enough for seconds, large enough to stratify 70/30 and hold out a validation split. Two graded
# families of the ten (a Table 1 one and a hold-out one): every graded code path, a fifth of the sets.
SMALL = {
    "data": {"synthetic": {"per_class": 12, "image_size": 64, "seed": 0}, "cache_size": 16},
    "validate": {"min_per_class": 5, "min_width": 16},
    "model": {"image_size": 16},
    "train": {"epochs": 2, "use_tuned": False},
    "tune": {"n_trials": 2, "max_epochs": 2, "pruner": {"kind": "successive_halving", "min_epochs": 1}},
    "corrupt": {
        "graded": {
            "families": Replace(
                {f: _REPO_GRADED[f] for f in ("noise", "posterize")}  # params.yaml's own ladders
            )
        }
    },
}


# SMALL trains 2 epochs on 16 px images, far below params.yaml's gates: relaxed so that it registers.
LENIENT_GATES = {
    "registry": {
        "gates": {
            "min_clean_accuracy": 0.0,
            "min_worst_accuracy": 0.0,
            "min_holdout_accuracy": 0.0,
            "max_drop": 1.0,
        }
    }
}


def deep_update(tree: dict, changes: dict) -> dict:
    out = copy.deepcopy(tree)
    for key, value in changes.items():
        if isinstance(value, Replace):
            out[key] = copy.deepcopy(dict(value))
        elif isinstance(value, dict):
            out[key] = deep_update(out.get(key, {}), value)
        else:
            out[key] = value
    return out


def repo_params(**changes: dict) -> dict:
    return deep_update(deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), SMALL), changes)


def write_params(folder: Path, tree: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def write_image(path: Path, seed: int, size: int = 40, mode: str = "L") -> Path:
    """A unique random image (different seed → different bytes)."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


GIT_ENV = {
    "GIT_AUTHOR_NAME": "steelflow-test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "steelflow-test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command of this venv (dvc, steelflow) in ``cwd``, whose own package it imports; must succeed."""
    proc = run(*args, cwd=cwd, env=env)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def run(*args: str, cwd: Path, env: dict[str, str] | None = None):
    """:func:`sh` that may fail: the finished process (``returncode``, ``stdout``, ``stderr``)."""
    import os
    import subprocess
    import sys

    full = {
        **os.environ,
        **GIT_ENV,
        "PYTHONPATH": str(cwd),  # the copy's package, not the installed one
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


def clone_repo(dest: Path, params_changes: dict) -> Path:
    """The repository's files (tracked, and untracked but not ignored) in a fresh git repo at ``dest``."""
    import shutil
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in listed:
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    params = deep_update(yaml.safe_load((dest / "params.yaml").read_text()), params_changes)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "clone", cwd=dest)
    return dest


def mark_validated(dropped: list[str] | None = None, manifest_path: Path = Path("data/manifest.csv")) -> None:
    """A passing reports/validation.json for the manifest as it is now (what `steelflow validate` writes)."""
    import json

    from steelflow.data import manifest

    Path("reports").mkdir(exist_ok=True)
    report = {"success": True, "dropped": dropped or [], "manifest_sha256": manifest.sha256(manifest_path)}
    Path("reports/validation.json").write_text(json.dumps(report))


# Where MLflow keeps its process-wide tracking URI, registry URI and active experiment (private: no public
# way to read them back), and the variables it exports them to for subprocesses.
_MLFLOW_GLOBALS = {
    "mlflow.tracking._tracking_service.utils": "_tracking_uri",
    "mlflow.tracking._model_registry.utils": "_registry_uri",
    "mlflow.tracking.fluent": "_active_experiment_id",
}
_MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")


@contextlib.contextmanager
def mlflow_state_kept() -> Iterator[None]:
    """MLflow's process-wide URIs and active experiment, and the variables carrying them, as they were
    before the block: ``mlflow.set_tracking_uri`` and ``mlflow.set_experiment`` export them to the
    environment, so a fixture that calls them would point every later test of the worker at its store."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:  # each value set to itself: put back as it was on exit
        for name in _MLFLOW_VARIABLES:
            absent = name not in os.environ
            mp.setenv(name, os.environ.get(name, ""))  # remembers it unset, if it was
            if absent:
                mp.delenv(name)
        for name, attr in _MLFLOW_GLOBALS.items():
            module = importlib.import_module(name)
            mp.setattr(module, attr, getattr(module, attr))
        yield
