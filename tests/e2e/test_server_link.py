"""The browser app with an agent server: LLM answers over WebSocket, and a server killed
mid-answer — the app falls back to its local answer, says so, loses nothing, and reconnects.

Real processes on loopback (tests/support/processes.py): the fake OpenAI-compatible upstream
and `python -m wasmagent server`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, expect

from ..support.processes import start_fake, start_server
from .conftest import ROOT, Booted, boot

QUESTION = "why does the agent run in a plain module worker instead of pyscript?"


class Servers:
    """The fake upstream (slow enough to kill the server mid-answer) and a restartable agent
    server on one port, so the browser's link can reconnect to the same URL."""

    def __init__(self, tmp: Path, app_origin: str) -> None:
        self.tmp = tmp
        self.allow = ("--allow-origin", app_origin)
        self.fake = start_fake(tmp)
        try:
            self.fake.control(delay=0.25)
            self.server = start_server(tmp, self.fake, *self.allow)
        except BaseException:
            self.fake.stop()
            raise

    def restart(self) -> None:
        self.server = start_server(self.tmp, self.fake, *self.allow, port=self.server.port)

    def close(self) -> None:
        self.server.proc.stop()
        self.fake.stop()


@pytest.fixture
def servers(tmp_path: Path, app_url: str) -> Iterator[Servers]:
    origin = f"{urlparse(app_url).scheme}://{urlparse(app_url).netloc}"
    found = Servers(tmp_path, origin)
    try:
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
    page.get_by_label("Server WebSocket URL").fill(servers.server.ws_url)
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.locator("#server")).to_have_text("server: connected")

    # A full LLM answer: streamed from the server's upstream, grounded in local passages.
    answer = page.evaluate(f"async () => (await wasmagentClient.ask({QUESTION!r})).answer")
    assert answer["route"] == "llm"
    assert answer["text"].startswith("According to [1]")
    assert answer["citations"], "the LLM answer cites the local passages it was given"

    # Now the server dies while the answer is streaming.
    page.get_by_role("textbox", name="Ask").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    reply = page.locator(".msg.agent").last
    expect(reply).to_contain_text("According to [1]")
    servers.server.proc.kill()
    expect(reply).to_contain_text("Answer from the local documents instead")
    expect(reply.locator(".sources a").first).to_be_visible()
    text = reply.locator(".text").inner_text()
    assert text.startswith("According to [1]"), "words already shown are kept"
    assert "upstream_failed" in text
    expect(page.locator("#server")).to_have_text("server: reconnecting…")
    expect(page.locator("#server-message")).to_contain_text("Connection lost")
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
    servers.restart()
    expect(page.locator("#server")).to_have_text("server: connected")
    expect(page.locator("#server-message")).to_contain_text("Connected")
    again = page.evaluate(f"async () => (await wasmagentClient.ask({QUESTION!r})).answer")
    assert again["route"] == "llm"
    status = page.evaluate("wasmagentClient.status()")
    assert status["llm"]["connected"] is True
