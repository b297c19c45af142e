"""The manual builds as an MkDocs site in strict mode, with the generated API reference and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` of the repository's mkdocs.yml into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_the_strict_build_writes_the_home_page(site):
    assert (site / "index.html").is_file()


def test_the_api_reference_has_a_page_generated_from_steelflow_config(site):
    page = site / "reference" / "steelflow" / "config" / "index.html"
    assert page.is_file()
    assert "steelflow.config" in page.read_text(encoding="utf-8")


def test_the_benchmarks_page_includes_benchmarks_readme(site):
    page = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert "bench_ingest_validate.py" in page  # a command from benchmarks/README.md, included by snippets
