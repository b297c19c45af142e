"""Shared fixtures: a throwaway project folder with small params, and small image datasets on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helpers import mlflow_state_kept, repo_params, write_image, write_params

# The kinds of test (Made-With-ML's three, plus real tools): a test's kind is the folder its file sits in.
KINDS = ("unit", "data", "model", "integration")


def kind_of(path: Path) -> str:
    """unit, data, model or integration: the tests/<kind>/ folder a test file sits in."""
    folder = path.parent.name
    return folder if folder in KINDS else "unit"


# Files whose tests share the PostgreSQL server's state (test_tune_kill restarts it; test_tune's studies live
# in its `test` database): under `pytest -n N --dist loadfile` one worker runs them, one after another.
POSTGRES_FILES = ("test_auth.py", "test_secrets.py", "test_team.py", "test_tune_kill.py", "test_tune.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks each test with its kind, so that `-m unit`, `-m "data or model"` or `-m "not integration"` pick
    by kind; every test under tests/integration/ is an integration test whether or not it says so."""
    for item in items:
        item.add_marker(kind_of(item.path))


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test` runs `pytest -n 3 --dist loadfile --no-loadscope-reorder`: a file's tests on one worker,
    so that its module fixtures (a pipeline run, a built image) are made once; the :data:`POSTGRES_FILES`
    count as one file. Files go out in collection order, the long integration files first (xdist's
    default, most tests first, would start the image builds last). (xdist's `loadgroup` would say the
    grouping with markers, but its groups are lost under pytest 9.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Files(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "postgres" if Path(file).name in POSTGRES_FILES else file

    return Files(config, log)


@pytest.fixture(autouse=True)
def _mlflow_uris_restored():
    """A step run in-process points MLflow's process-wide tracking and registry URIs (and the variables
    that carry them) at its server; a later test must not inherit a server that is gone."""
    with mlflow_state_kept():
        yield


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Folder-per-class: three classes × 10 unique 40×40 grayscale PNGs."""
    root = tmp_path / "source"
    for c, name in enumerate(["dent", "rust", "scratch"]):
        for i in range(10):
            write_image(root / name / f"img_{i}.png", seed=100 * c + i)
    return root


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (the cwd) with small params; steps write data/ and reports/ here."""
    root = tmp_path / "project"
    root.mkdir()
    write_params(root, repo_params())
    monkeypatch.chdir(root)
    return root
