"""A real headless Chromium (the system's, driven by Playwright) that reaches only this machine.

Every request that is not to ``file:``, ``data:``, ``blob:`` or a loopback host is refused and recorded, so
a page that still loads something from the internet shows it blank here, as it would offline, and the test
can name what it tried to load. Each browser gets a fresh profile under the test's ``tmp_path``.

Chromium comes from the system (``make browser-tools`` installs Debian's); Playwright never downloads one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # a second wall behind the request filter: no host but loopback resolves
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium() -> str:
    """The system Chromium; the test is skipped without one here, and fails without one in CI."""
    found = os.environ.get("STEELFLOW_CHROMIUM") or shutil.which("chromium")
    if found is None:
        message = "no chromium on PATH: `make browser-tools` installs Debian's"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclasses.dataclass
class OfflineBrowser:
    page: object  # playwright.sync_api.Page
    blocked: list[str]  # what a page asked for beyond this machine, refused
    errors: list[str]  # uncaught script errors of the pages

    def open(self, url: str, wait_for: str | None = None, timeout_ms: int = 60_000) -> None:
        self.page.goto(url, wait_until="load", timeout=timeout_ms)
        if wait_for:
            self.page.wait_for_selector(wait_for, state="attached", timeout=timeout_ms)

    def screenshot(self, path: Path) -> Path:
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or (parts.hostname or "") in LOCAL_HOSTS


@contextlib.contextmanager
def offline_browser(
    tmp_path: Path, width: int = 1400, height: int = 900, credentials: tuple[str, str] | None = None
) -> Iterator[OfflineBrowser]:
    """A page in a fresh headless Chromium profile, with every non-local request refused; ``credentials``
    (user, password) answer a server's basic-auth challenge."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    errors: list[str] = []

    def only_local(route, request) -> None:
        if _local(request.url):
            route.continue_()
        else:
            blocked.append(request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=executable,
            headless=True,
            args=FLAGS,
            viewport={"width": width, "height": height},
            service_workers="block",
            http_credentials=dict(zip(("username", "password"), credentials, strict=True))
            if credentials
            else None,
        )
        try:
            context.route("**/*", only_local)
            page = context.pages[0] if context.pages else context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield OfflineBrowser(page, blocked, errors)
        finally:
            context.close()
