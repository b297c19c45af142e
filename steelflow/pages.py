"""Pages for people that work offline: DVC's plots page and the Great Expectations Data Docs.

Both tools write pages that load their scripts and styles from public CDNs (Vega for the plots; jQuery,
Bootstrap and bootstrap-table for Data Docs), so on a machine without internet the plots are blank and the
Data Docs index lists no validation (its table is filled by a script). steelflow ships those files in
``steelflow/assets/vendor/`` (versions and licences in its README) and points the pages at them:

- :func:`plots_page` runs ``dvc plots show`` with a template that carries Vega inline: one file to open,
  to mail or to archive (``steelflow plots``, ``make plots``);
- :func:`offline_data_docs` rewrites a Data Docs site in place (validate calls it after GX builds the site):
  each CDN ``<link>``/``<script>`` becomes a file under ``static/vendor/``; the icon font becomes a small
  stylesheet of characters; what has no local copy (date picker, dark theme) is left out, and remote logos
  become GX's own local picture.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from steelflow.errors import SteelflowError

VENDOR = Path(__file__).parent / "assets" / "vendor"
VEGA = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")

# A CDN address's last part → the vendored file serving it (None: left out, nothing offline needs it).
_DATA_DOCS_FILES: dict[str, str | None] = {
    "bootstrap.min.css": "bootstrap.min.css",
    "bootstrap-table.min.css": "bootstrap-table.min.css",
    "bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "jquery-3.7.1.min.js": "jquery.min.js",
    "popper.min.js": None,  # inside bootstrap.bundle.min.js
    "bootstrap.min.js": "bootstrap.bundle.min.js",
    "bootstrap-table.min.js": "bootstrap-table.min.js",
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "vega@5": "vega.min.js",
    "vega-lite@5": "vega-lite.min.js",
    "vega-embed@6": "vega-embed.min.js",
    "all.min.css": "steelflow-icons.css",  # Font Awesome: its few status icons as characters
}
_REMOTE_TAG = re.compile(
    r"<script\b[^>]*\bsrc=\"(https?://[^\"]+)\"[^>]*>\s*</script>|<link\b[^>]*\bhref=\"(https?://[^\"]+)\"[^>]*>",
    re.S,
)
_REMOTE_IMG = re.compile(r"(<img\b[^>]*?\bsrc=\")https?://[^\"]+(\")", re.S)
_REMOTE_CSS_URL = re.compile(r"url\('https?://[^']+'\)")
GX_LOGO = "static/images/logo-long.png"  # GX writes it into every site

PLOTS_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>steelflow: DVC plots</title>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
{vega}
</head>
<body>
    {plot_divs}
</body>
</html>"""


def plots_template() -> str:
    """DVC's page with Vega, Vega-Lite and vega-embed inline instead of its ``{scripts}`` CDN tags (DVC
    fills ``{plot_divs}`` and ``{refresh_tag}`` by plain replacement, so the scripts' braces are safe)."""
    scripts = "\n".join(f"<script>{(VENDOR / name).read_text(encoding='utf-8')}</script>" for name in VEGA)
    return PLOTS_TEMPLATE.replace("{vega}", scripts)


def plots_page(out: Path, cwd: Path | None = None) -> Path:
    """``dvc plots show`` into ``out`` (in ``cwd``, the DVC project) with Vega inline; returns the page.

    The page needs no network: Vega's plots (learning curves, loss, confusion) draw from the inline
    scripts, the pictures (PNG) sit in ``out/static/``.
    """
    with tempfile.TemporaryDirectory(prefix="steelflow-plots-") as tmp:
        template = Path(tmp) / "plots.html"
        template.write_text(plots_template(), encoding="utf-8")
        args = [sys.executable, "-m", "dvc", "plots", "show", "--html-template", str(template)]
        done = subprocess.run(
            [*args, "-o", str(Path(out).resolve())], cwd=cwd, capture_output=True, text=True
        )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise SteelflowError(f"`dvc plots show` failed: {said[-1] if said else done.returncode}")
    return Path(out) / "index.html"


def offline_data_docs(site: Path) -> None:
    """Point every page of the Data Docs ``site`` at local copies of its scripts and styles.

    Copies the vendored files to ``site/static/vendor/``; rewrites each CDN tag to its relative path,
    leaves out those with no local copy, replaces remote logos with GX's local one, and turns the index
    table's date-picker filter (a plugin not shipped) into a text filter.
    """
    vendor = site / "static" / "vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    for name in {n for n in _DATA_DOCS_FILES.values() if n}:
        shutil.copyfile(VENDOR / name, vendor / name)
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        page.write_text(_offline_page(html, _relative(vendor, page), _relative(site, page)), "utf-8")


def _relative(target: Path, page: Path) -> str:
    """``target``'s path from ``page``'s folder, ending in "/" ("" for that folder itself)."""
    path = Path(os.path.relpath(target, page.parent)).as_posix()
    return "" if path == "." else f"{path}/"


def _offline_page(html: str, vendor: str, root: str) -> str:
    def local(match: re.Match[str]) -> str:
        url = match.group(1) or match.group(2)
        name = _DATA_DOCS_FILES.get(url.split("?")[0].rstrip("/").rsplit("/", 1)[-1])
        if name is None:
            return ""
        if name.endswith(".css"):
            return f'<link rel="stylesheet" href="{vendor}{name}">'
        return f'<script src="{vendor}{name}"></script>'

    html = _REMOTE_TAG.sub(local, html)
    html = _REMOTE_IMG.sub(lambda m: f"{m.group(1)}{root}{GX_LOGO}{m.group(2)}", html)
    html = _REMOTE_CSS_URL.sub(f"url('{root}{GX_LOGO}')", html)
    return html.replace("'filterControl': 'datepicker'", "'filterControl': 'input'")
