"""Where the project's record stores live, and which DVC experiment (if any) is running.

``dvc exp run --temp`` and ``dvc exp run --queue`` run the stages in a fresh clone under
``.dvc/tmp/exps/`` that DVC deletes afterwards. A relative ``sqlite:///mlflow.db`` would resolve there and
take the experiment's MLflow runs, model versions and Optuna trials with it. DVC tells a stage where the
project is: it sets ``DVC_ROOT`` for every stage, and for experiments overrides it with the root of the
*original* repository (dvc/repo/experiments/queue/base.py), together with ``DVC_EXP_NAME`` and
``DVC_EXP_BASELINE_REV``. So relative SQLite URIs are anchored at ``DVC_ROOT`` when DVC runs us, and at the
folder we run in otherwise (where every other path of the project is relative to, see :mod:`paths`).
"""

from __future__ import annotations

import os
from pathlib import Path

SQLITE = "sqlite:///"
DVC_ROOT, DVC_EXP_NAME, DVC_EXP_BASELINE = "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"


def root() -> Path:
    """The project root the record stores belong to: DVC's (the original repository's during an
    experiment), else the working folder."""
    dvc_root = os.environ.get(DVC_ROOT)
    if dvc_root and Path(dvc_root).is_dir():
        return Path(dvc_root).resolve()
    return Path.cwd().resolve()


def anchored(url: str) -> str:
    """``sqlite:///mlflow.db`` → ``sqlite:////<project root>/mlflow.db``; absolute SQLite paths, in-memory
    databases and every other URL (a server, PostgreSQL) are returned as they are."""
    if not url.startswith(SQLITE):
        return url
    rest = url[len(SQLITE) :]
    path, sep, query = rest.partition("?")
    if not path or path == ":memory:" or path.startswith("/"):
        return url
    return f"{SQLITE}{root() / path}{sep}{query}"


def is_local_store(url: str) -> bool:
    """A tracking URI MLflow serves from files here (SQLite, ``file:``, a bare path), not a server."""
    return not url.startswith(("http://", "https://", "databricks", "postgresql", "mysql", "mssql"))


def artifact_root() -> str:
    """Where MLflow puts a new experiment's artifacts for a local store: ``mlruns/`` at the project root.
    (MLflow's own default is ``./mlruns`` of the working folder, i.e. the folder DVC deletes after an
    experiment.)"""
    return (root() / "mlruns").as_uri()


def experiment_tags() -> dict[str, str]:
    """The DVC experiment that runs this step, for MLflow tags: its name and the commit it starts from
    (the experiment's own commit is made after its stages finish, so the baseline is the one known)."""
    tags = {}
    if os.environ.get(DVC_EXP_NAME):
        tags["dvc.exp_name"] = os.environ[DVC_EXP_NAME]
    if os.environ.get(DVC_EXP_BASELINE):
        tags["dvc.exp_baseline_rev"] = os.environ[DVC_EXP_BASELINE]
    return tags


def data_label(source: str) -> str:
    """A short readable name of ``data.source`` for study names: ``synthetic``, a folder's or a bucket
    prefix's last part (``NEU-CLS``), reduced to letters, digits, ``-`` and ``_``."""
    import re

    last = source.rstrip("/").rsplit("/", 1)[-1] or source
    return re.sub(r"[^A-Za-z0-9_-]+", "_", last).strip("_")[:32] or "data"
