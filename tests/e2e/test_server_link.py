"""The browser app with an agent server: LLM answers over WebSocket, and a server killed
mid-answer — the app falls back to its local answer, says so, loses nothing, and reconnects.

Real processes on loopback: the fake OpenAI-compatible upstream (tests/support/fake_openai.py)
and `python -m wasmagent server`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, expect

from .conftest import ROOT, Booted, boot

QUESTION = "why does the agent run in a plain module worker instead of pyscript?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


class Servers:
    """The fake upstream and a restartable agent server."""

    def __init__(self, tmp: Path, app_origin: str) -> None:
        self.tmp = tmp
        self.app_origin = app_origin
        self.upstream_port = _free_port()
        self.port = _free_port()
        self.upstream = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/support/fake_openai.py"),
             "--port", str(self.upstream_port), "--delay", "0.25"])
        _wait_ready(f"http://127.0.0.1:{self.upstream_port}/control", self.upstream)
        self.server: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def start(self) -> None:
        self.server = subprocess.Popen(
            [sys.executable, "-m", "wasmagent", "server", "--port", str(self.port),
             "--store", str(self.tmp / "server.sqlite"), "--allow-origin", self.app_origin,
             "--llm-url", f"http://127.0.0.1:{self.upstream_port}/v1", "--llm-model", "fake"],
            stderr=(self.tmp / "server.log").open("ab"), env={**os.environ})
        _wait_ready(f"http://127.0.0.1:{self.port}/readyz", self.server)

    def kill(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGKILL)
            self.server.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self.upstream.terminate()
        self.upstream.wait(timeout=10)


@pytest.fixture
def servers(tmp_path: Path, app_url: str) -> Iterator[Servers]:
    origin = f"{urlparse(app_url).scheme}://{urlparse(app_url).netloc}"
    found = Servers(tmp_path, origin)
    try:
        found.start()
        yield found
    finally:
        found.close()


@pytest.fixture
def page_app(browser: Browser, app_url: str) -> Iterator[Booted]:
    booted = boot(browser, app_url)
    yield booted
    booted.context.close()


def test_llm_answers_stream_then_the_app_survives_the_server_dying_mid_answer(
    page_app: Booted, servers: Servers
) -> None:
    page = page_app.page
    page.get_by_role("button", name="Knowledge").click()
    page.locator("#server-settings summary").click()
    page.get_by_label("Server WebSocket URL").fill(servers.ws_url)
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.locator("#server")).to_have_text("server: connected", timeout=15_000)

    # A full LLM answer: streamed from the server's upstream, grounded in local passages.
    answer = page.evaluate(f"async () => (await wasmagentClient.ask({QUESTION!r})).answer")
    assert answer["route"] == "llm"
    assert answer["text"].startswith("According to [1]")
    assert answer["citations"], "the LLM answer cites the local passages it was given"

    # Now the server dies while the answer is streaming.
    page.get_by_role("textbox", name="Ask").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    reply = page.locator(".msg.agent").last
    expect(reply).to_contain_text("According to [1]", timeout=20_000)
    servers.kill()
    expect(reply).to_contain_text("Answer from the local documents instead", timeout=20_000)
    expect(reply.locator(".sources a").first).to_be_visible(timeout=10_000)
    text = reply.locator(".text").inner_text()
    assert text.startswith("According to [1]"), "words already shown are kept"
    assert "upstream_failed" in text
    expect(page.locator("#server")).to_have_text("server: reconnecting…", timeout=10_000)
    shots = ROOT / "test-results/screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "server-fallback-desktop.png"))

    # The conversation kept every word: the stored history has the whole fallback answer.
    history = page.evaluate(
        "async () => (await wasmagentClient.request('history.list', {limit: 5})).result.items")
    assert history[-1]["route"] == "llm_fallback"
    assert history[-1]["answer"].startswith("According to [1]")
    assert "Answer from the local documents instead" in history[-1]["answer"]

    # The server comes back: the link reconnects by itself and LLM answers resume.
    servers.start()
    expect(page.locator("#server")).to_have_text("server: connected", timeout=45_000)
    again = page.evaluate(f"async () => (await wasmagentClient.ask({QUESTION!r})).answer")
    assert again["route"] == "llm"
    status = page.evaluate("wasmagentClient.status()")
    assert status["llm"]["connected"] is True
