"""The project-shaped workspace a Kubeflow component runs its step in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from steelflow import paths
from steelflow.config import load_params
from steelflow.data import cache, shards
from steelflow.errors import ConfigError, DataError
from steelflow.workspace import absolute_sqlite, params_json, scalar_metrics, workspace
from tests.support.helpers import repo_params, write_params


@pytest.fixture
def text(tmp_path: Path) -> str:
    return params_json(load_params(write_params(tmp_path, repo_params())))


def _shard_set(path: Path, seed: int = 0, n: int = 5) -> None:
    """A small cache shard set at ``path``: ``n`` random 8 × 8 images, two per shard."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(n) % 2
    sha = np.array([f"{seed:032x}{i:032x}" for i in range(n)])
    cache.save(cache.CachedSet(images, labels, ["a", "b"], sha), path, shard_size=2)


def test_input_artifacts_merge_into_one_project_root(tmp_path, text, monkeypatch):
    monkeypatch.chdir(tmp_path)
    splits, corrupted = tmp_path / "splits", tmp_path / "corrupted"
    _shard_set(cache.split_path(splits / "data/cache", "test"), seed=1)
    _shard_set(cache.condition_path(corrupted / "data/cache", "blur_2px"), seed=2)
    with workspace(text, [], [str(splits), str(corrupted)]) as ws:
        assert Path.cwd() == ws.root
        test, blur = cache.split_path(paths.CACHE, "test"), cache.condition_path(paths.CACHE, "blur_2px")
        assert test == paths.TEST_CACHE
        for linked, original in ((test, splits / test), (blur, corrupted / blur)):
            assert sorted(p.name for p in linked.iterdir()) == sorted(p.name for p in original.iterdir())
            assert shards.digest(linked) == shards.digest(original)
            assert len(cache.open(linked).counts) == 3  # 5 images, 2 a shard
            cache.open(linked).verify()
            assert not any(p.is_symlink() for p in linked.iterdir())  # plain files, as MLflow wants them
    assert Path.cwd() == tmp_path
    assert not ws.root.exists()  # nothing left behind


def test_a_shard_set_two_artifacts_hold_is_linked_once_and_two_different_ones_stop_it(tmp_path, text):
    first, same, other = tmp_path / "first", tmp_path / "same", tmp_path / "other"
    for folder, seed in ((first, 1), (same, 1), (other, 2)):
        _shard_set(cache.split_path(folder / "data/cache", "test"), seed=seed)
    with workspace(text, [], [str(first), str(same)]):
        assert shards.digest(paths.TEST_CACHE) == shards.digest(first / paths.TEST_CACHE)
    with (
        pytest.raises(DataError, match="different shard sets at data/cache/splits/test"),
        workspace(text, [], [str(first), str(other)]),
    ):
        pass


def test_keep_replaces_a_shard_set_whole(tmp_path, text):
    artifact = tmp_path / "artifact"
    _shard_set(artifact / paths.TEST_CACHE, seed=1, n=9)  # 5 shards, left from another write
    with workspace(text) as ws:
        _shard_set(paths.TEST_CACHE, seed=2, n=3)  # 2 shards
        ws.keep(artifact, paths.CACHE_SPLITS)
        expected = shards.digest(paths.TEST_CACHE)
    assert sorted(p.name for p in (artifact / paths.TEST_CACHE).glob("*.tar")) == [
        "shard-000000.tar",
        "shard-000001.tar",
    ]
    assert shards.digest(artifact / paths.TEST_CACHE) == expected


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
