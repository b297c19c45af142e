"""The house's shape, kept by tools: import-linter's contracts (pyproject.toml: no import cycle, no step
importing another, the layers read bottom-up) and a size limit on modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.helpers import REPO

MAX_LINES = 420  # "about 400": a module past it has two jobs


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_no_module_of_the_package_is_over_the_size_limit():
    sizes = {p: len(p.read_text().splitlines()) for p in (REPO / "steelflow").rglob("*.py")}
    big = {str(p.relative_to(REPO)): n for p, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"
