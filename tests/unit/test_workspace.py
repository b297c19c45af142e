"""The project-shaped workspace a Kubeflow component runs its step in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from steelflow import paths
from steelflow.config import load_params
from steelflow.errors import ConfigError, DataError
from steelflow.workspace import absolute_sqlite, params_json, scalar_metrics, workspace
from tests.support.helpers import repo_params, write_params


@pytest.fixture
def text(tmp_path: Path) -> str:
    return params_json(load_params(write_params(tmp_path, repo_params())))


def test_input_artifacts_merge_into_one_project_root(tmp_path, text, monkeypatch):
    monkeypatch.chdir(tmp_path)
    splits, corrupted = tmp_path / "splits", tmp_path / "corrupted"
    (splits / "data/cache/splits").mkdir(parents=True)
    (splits / "data/cache/splits/test.npz").write_bytes(b"split cache")
    (corrupted / "data/cache/corrupted").mkdir(parents=True)
    (corrupted / "data/cache/corrupted/blur_2px.npz").write_bytes(b"corrupted cache")
    with workspace(text, [], [str(splits), str(corrupted)]) as ws:
        assert Path.cwd() == ws.root
        assert Path("data/cache/splits/test.npz").read_bytes() == b"split cache"
        assert Path("data/cache/corrupted/blur_2px.npz").read_bytes() == b"corrupted cache"
        assert not Path("data/cache/splits/test.npz").is_symlink()  # plain files, as MLflow wants them
    assert Path.cwd() == tmp_path
    assert not ws.root.exists()  # nothing left behind


def test_keep_copies_outputs_into_the_artifact_at_their_project_paths(tmp_path, text):
    artifact = tmp_path / "artifact"
    with workspace(text) as ws:
        paths.SPLITS.mkdir(parents=True)
        (paths.SPLITS / "test.csv").write_text("path,label\n")
        paths.SPLIT_JSON.parent.mkdir(parents=True)
        paths.SPLIT_JSON.write_text("{}")
        ws.keep(artifact, paths.SPLITS, paths.SPLIT_JSON)
        with pytest.raises(DataError, match="wrote no data/cache/splits"):
            ws.keep(artifact, paths.CACHE / "splits")
    assert (artifact / "data/splits/test.csv").read_text() == "path,label\n"
    assert (artifact / "reports/split.json").read_text() == "{}"


def test_relative_sqlite_stores_stay_in_the_launch_folder(tmp_path, text, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(paths.OPTUNA_STORAGE_ENV, raising=False)
    with workspace(text):
        assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
        assert os.environ[paths.OPTUNA_STORAGE_ENV] == f"sqlite:///{tmp_path / 'optuna.db'}"
    assert "MLFLOW_TRACKING_URI" not in os.environ  # restored
    assert absolute_sqlite("postgresql://db/x", tmp_path) == "postgresql://db/x"
    assert absolute_sqlite("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"


def test_bad_params_or_overrides_fail_naming_the_key(text):
    with pytest.raises(ConfigError, match="split.tset"), workspace(text, ["split.tset=0.2"]):
        pass
    with pytest.raises(ConfigError, match="'split.test'"), workspace(text, ["split.test=2"]):
        pass


def test_an_input_that_is_not_an_artifact_folder_is_named(tmp_path, text):
    missing = str(tmp_path / "nothing-here")
    with pytest.raises(DataError, match="nothing-here"), workspace(text, [], [missing]):
        pass


def test_scalar_metrics_flatten_numbers_and_skip_the_rest(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"success": True, "n": 3, "per_class": {"a": 1.5}, "items": [1], "name": "x"}))
    assert scalar_metrics(path) == {"success": 1.0, "n": 3.0, "per_class.a": 1.5}
    path.write_text("{not json")
    with pytest.raises(DataError, match="m.json"):
        scalar_metrics(path)
