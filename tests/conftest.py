"""Shared fixtures: a throwaway project folder with small params, and small image datasets on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import repo_params, write_image, write_params


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
