"""steelflow.pages: the plots page and the Data Docs carry their scripts and styles, not CDN addresses.

The pages drawing in a real browser with no network is tests/integration/test_browser_pages.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from steelflow import pages

GX_PAGE = """<html><head>
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" href="https://cdn.example/dist/css/bootstrap-prefers-dark.css" />
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<style>.x { background: url('https://assets.example/full_logo_dark.png') }</style>
</head><body>
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js"></script>
<script src="https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js"></script>
<img
  src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1"
  alt="logo">
<a href="https://greatexpectations.io">GX</a>
<script>columns: [{'field': 'run_time', 'filterControl': 'datepicker'}]</script>
</body></html>"""


def _loaded(html: str) -> list[str]:
    """What a browser would fetch: link hrefs, script and img srcs, CSS urls (not the anchors)."""
    tags = re.findall(r"<(?:link|script|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", html, re.S)
    return tags + re.findall(r"url\('([^']+)'\)", html)


def test_a_data_docs_site_loads_only_its_own_files_after_the_rewrite(tmp_path: Path) -> None:
    site = tmp_path / "validation"
    deep = site / "validations" / "manifest" / "run" / "time"
    deep.mkdir(parents=True)
    for page in (site / "index.html", deep / "manifest.html"):
        page.write_text(GX_PAGE)

    pages.offline_data_docs(site)

    for page, up in ((site / "index.html", ""), (deep / "manifest.html", "../../../../")):
        html = page.read_text()
        loaded = _loaded(html)
        assert loaded and not [u for u in loaded if "://" in u], loaded
        for name in ("bootstrap.min.css", "jquery.min.js", "bootstrap-table.min.js", "steelflow-icons.css"):
            assert f"{up}static/vendor/{name}" in loaded, name
        assert f"{up}static/images/logo-long.png" in loaded  # GX's local logo for the remote ones
        assert all((page.parent / u).is_file() for u in loaded if "images" not in u)
        assert "'filterControl': 'input'" in html  # the date-picker plugin is not shipped
        assert 'href="https://greatexpectations.io"' in html  # links stay links


def test_the_plots_template_has_vega_inline_and_dvcs_placeholders_but_not_its_cdn_scripts() -> None:
    template = pages.plots_template()
    assert "{plot_divs}" in template and "{refresh_tag}" in template
    assert "{scripts}" not in template  # DVC would put its CDN <script> tags there
    for name in pages.VEGA:
        assert (pages.VENDOR / name).read_text(encoding="utf-8")[:200] in template
    assert not [u for u in _loaded(template) if "://" in u]


def test_every_vendored_file_has_its_licence_listed() -> None:
    readme = (pages.VENDOR / "README.md").read_text()
    for path in pages.VENDOR.iterdir():
        if path.is_file() and path.name not in ("README.md", "steelflow-icons.css"):
            assert f"`{path.name}`" in readme, path.name
    assert {p.stem for p in (pages.VENDOR / "licenses").iterdir()} >= {"vega", "vega-lite", "jquery"}
