"""The README is the short front door: the two commands first, the rest in the docs site."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_LINES = 260

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# [text](target) and ![alt](target); an optional "title" after the target is dropped
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(markdown: str) -> list[str]:
    """Link targets outside code that point into the repository (no scheme, no bare anchor)."""
    prose = FENCE.sub("", markdown)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = [match.group(1) for match in LINK.finditer(prose)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) and not t.startswith("#")]


def test_the_readme_is_at_most_260_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_first_code_block_holds_make_run_and_make_test():
    first = FENCE.search(README.read_text(encoding="utf-8"))
    assert first, "README.md has no fenced code block"
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert "make run" in commands
    assert "make test" in commands


def test_every_relative_link_in_the_readme_points_to_a_file_that_exists():
    links = relative_links(README.read_text(encoding="utf-8"))
    assert links, "README.md links into docs/"
    missing = [t for t in links if not (README.parent / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_the_link_finder_skips_urls_anchors_and_code():
    text = (
        '[a](docs/a.md) [b](https://x.org) [c](#here) `[d](no.md)` ![e](docs/e.png "t")\n'
        "```\n[f](g.md)\n```\n"
    )
    assert relative_links(text) == ["docs/a.md", "docs/e.png"]
