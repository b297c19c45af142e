"""Moving a project with its local tracking store: :func:`relocate_artifacts`."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from steelflow import project
from steelflow.config import MlflowConfig
from steelflow.errors import ConfigError
from steelflow.tracking.tracker import tracking_uri

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
