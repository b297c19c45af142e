"""What identifies a run and the model made from it: the params hash, the data version, the commit, the
DVC experiment, and the run's name and tags.

A training run and the model version made from it carry the same ``params_hash``, of the effective params
training used (tune's values applied), see :func:`lineage_params`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from steelflow import paths, project


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
    import torch  # only here: the names and tags above are read by light commands that never load torch

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
