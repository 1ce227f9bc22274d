"""End-to-end fixtures: Debian's Chromium driven by Playwright against the built `dist/`.

Never `playwright install`: we launch /usr/bin/chromium with the flags that keep it from calling
home on a closed network. Servers run in-process on free loopback ports; every request a page
makes is recorded so tests can prove nothing leaves localhost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from wasmagent.hosts.server.static import make_server

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
CHROME_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Safety nets, never waits: generous, so that a loaded machine is not a failure. A boot takes
# seconds on a quiet machine; an answer, an ingestion or a reconnect after it, seconds or less.
BOOT_TIMEOUT_MS = 120_000
WAIT_MS = 60_000
expect.set_options(timeout=WAIT_MS)  # every `expect` here waits up to this for its condition
NEXT_FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
"""Resolves once the page has drawn two frames: whatever the last action set off in the page's
own tasks (event handlers, layout) has run. An event to wait for, not an amount of time."""
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
MODEL_SETTLED = "body[data-model=ready], body[data-model=failed]"
"""The app page's embedding model is loaded, or failed for good (web/page/app.js)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium",
            "args": CHROME_ARGS}


def _serve(isolate: bool) -> Iterator[str]:
    server = make_server(DIST, port=0, isolate=isolate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """The app served with COOP/COEP (crossOriginIsolated: onnxruntime-web threads)."""
    yield from _serve(isolate=True)


@pytest.fixture(scope="session")
def plain_url() -> Iterator[str]:
    """The app served without COOP/COEP, as a widget host would see it (one thread)."""
    yield from _serve(isolate=False)


@dataclass
class Booted:
    """A page with the app booted, plus every URL it requested and every page error."""

    page: Page
    context: BrowserContext
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests
                if urlparse(u).scheme not in ("data", "blob")
                and urlparse(u).hostname not in LOCAL_HOSTS]


def boot(browser: Browser, url: str,
         prepare: Callable[[BrowserContext], None] | None = None) -> Booted:
    """Open `url` in a fresh context (`prepare` may route it first) and wait for ready."""
    context = browser.new_context()
    if prepare is not None:
        prepare(context)
    page = context.new_page()
    booted = Booted(page, context)
    # context-level so requests from the worker are seen too
    context.on("request", lambda r: booted.requests.append(r.url))
    page.on("pageerror", lambda e: booted.errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=BOOT_TIMEOUT_MS)
    # Ready comes before the embedding model (keyword answers meanwhile): the tests that share
    # this page expect hybrid search, so wait until the model is there (or failed for good).
    page.wait_for_selector(MODEL_SETTLED, state="attached", timeout=BOOT_TIMEOUT_MS)
    return booted


@pytest.fixture(scope="module")
def app(browser: Browser, app_url: str) -> Iterator[Booted]:
    """One booted app shared by a module's tests (a boot costs seconds)."""
    booted = boot(browser, app_url)
    yield booted
    booted.context.close()
