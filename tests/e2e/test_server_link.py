"""The browser app with an agent server: LLM answers over WebSocket, and a server killed
mid-answer — the app falls back to its local answer, says so, loses nothing, and reconnects.
A server address from a link (`?server=`) is only used once the user confirms it in the page;
only `wss://` or loopback `ws://` addresses are accepted; the server's origin is always on show,
its answers are labelled with it, and one click forgets it.

Real processes on loopback (tests/support/processes.py): the fake OpenAI-compatible upstream
and `python -m wasmagent server`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, WebSocket, expect

from ..support.processes import start_fake, start_server
from .conftest import BOOT_TIMEOUT_MS, ROOT, Booted, boot
from .test_look import _axe_problems

QUESTION = "why does the agent run in a plain module worker instead of pyscript?"
SERVER_KEY = "wasmagent.server"
SHOTS = ROOT / "test-results/screenshots"
NO_SERVER_PARAM = re.compile(r"[?&]server=")
"""history.replaceState reaches `page.url` a moment after the click: wait for it."""


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
    origin = f"ws://127.0.0.1:{servers.server.port}"
    expect(page.locator("#server")).to_have_text(f"server: {origin} — connected")

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
    expect(reply.locator(".from")).to_have_text(f"Answer from the server {origin}")
    servers.server.proc.kill()
    expect(reply).to_contain_text("Answer from the local documents instead")
    expect(reply.locator(".sources a").first).to_be_visible()
    expect(reply.locator(".from")).to_have_text(
        f"Started by the server {origin}, finished in this browser")
    text = reply.locator(".text").inner_text()
    assert text.startswith("According to [1]"), "words already shown are kept"
    assert "upstream_failed" in text
    expect(page.locator("#server")).to_have_text(f"server: {origin} — reconnecting…")
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
    expect(page.locator("#server")).to_have_text(f"server: {origin} — connected")
    expect(page.locator("#server-message")).to_contain_text("Connected")
    again = page.evaluate(f"async () => (await wasmagentClient.ask({QUESTION!r})).answer")
    assert again["route"] == "llm"
    status = page.evaluate("wasmagentClient.status()")
    assert status["llm"]["connected"] is True


TWO_TOOLS = "How much is seventeen times twenty-three, and how long until Christmas 2026?"


def test_the_servers_model_calls_this_browsers_tools_and_the_steps_are_shown(
    page_app: Booted, servers: Servers
) -> None:
    """The model (the server's upstream, scripted) decides to call two tools; they run in the
    browser (the server only relays the model), each step shows as it happens, and the answer
    uses their results."""
    page = page_app.page
    _link(page, servers)
    servers.fake.control(delay=0, script=["call:" + json.dumps([
        {"name": "calculator", "arguments": {"expression": "17 * 23"}},
        {"name": "days_until", "arguments": {"date": "2026-12-25"}}])])
    page.get_by_role("textbox", name="Ask").fill(TWO_TOOLS)
    page.get_by_role("button", name="Send").click()
    reply = page.locator(".msg.agent").last
    steps = reply.locator(".steps")
    expect(steps.locator("summary")).to_have_text("2 tool calls")
    expect(steps.locator("li").first).to_have_text("calculator(17 * 23) → 17 * 23 = 391")
    expect(steps.locator("li").nth(1)).to_contain_text("days_until(2026-12-25) → ")
    expect(reply.locator(".text")).to_contain_text("The tools say: 17 * 23 = 391")
    expect(reply.locator(".from")).to_contain_text("server")
    # The tools' results are cited beside the passages, and open like one.
    tool_source = reply.locator(".sources a", has_text="calculator(17 * 23)")
    tool_source.click()
    expect(page.locator("#viewer-body")).to_have_text("17 * 23 = 391")
    page.keyboard.press("Escape")
    steps.locator("summary").click()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "agent-tool-steps-desktop.png"))


def test_a_reload_mid_answer_resumes_the_run_and_shows_its_answer_under_its_question(
    page_app: Booted, servers: Servers
) -> None:
    """The model called its tools, the page reloads before its final turn: the new page's
    worker resumes the journaled run (the calls' results are not redone) and the answer
    appears under its question, with its steps, once the run finishes."""
    page = page_app.page
    _link(page, servers)
    servers.fake.control(delay=0, script=["call:" + json.dumps([
        {"name": "calculator", "arguments": {"expression": "17 * 23"}}]), "hang"])
    page.get_by_role("textbox", name="Ask").fill(TWO_TOOLS)
    page.get_by_role("button", name="Send").click()
    step = page.locator(".msg.agent").last.locator(".steps li").first
    # (a result is shown once its journal record is committed)
    expect(step).to_have_text("calculator(17 * 23) → 17 * 23 = 391")
    page.reload()
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=BOOT_TIMEOUT_MS)
    reply = page.locator(".msg.agent").last
    expect(reply.locator(".text")).to_contain_text("The tools say: 17 * 23 = 391",
                                                   timeout=60_000)
    expect(page.locator(".msg.user").last).to_have_text(TWO_TOOLS)
    expect(reply.locator(".from")).to_contain_text("server")
    expect(reply.locator(".sources a").first).to_be_visible()
    expect(reply.locator(".steps li").first).to_have_text(
        "calculator(17 * 23) → 17 * 23 = 391")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "answer-resumed-after-reload-desktop.png"))
    history = page.evaluate("""() => wasmagentClient.request('history.list', {limit: 50})
                               .then((r) => r.result.items.map((i) => i.question))""")
    assert history.count(TWO_TOOLS) == 1, "saved once, by the resumed run"
    assert not page_app.errors


class Sockets:
    """Every WebSocket a page (or its worker) opens, and its saved server setting."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.urls: list[str] = []
        page.on("websocket", self._opened)

    def _opened(self, ws: WebSocket) -> None:
        self.urls.append(ws.url)

    def saved(self) -> str | None:
        found: str | None = self.page.evaluate(f"localStorage.getItem({SERVER_KEY!r})")
        return found


def _link(page: Page, servers: Servers) -> None:
    """Link the page to the agent server as a user does, from Knowledge → Server."""
    page.get_by_role("button", name="Knowledge").click()
    page.locator("#server-settings summary").click()
    page.get_by_label("Server WebSocket URL").fill(servers.server.ws_url)
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.locator("#server")).to_contain_text("connected")


def _open(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=BOOT_TIMEOUT_MS)


def _local_answer(page: Page) -> None:
    """The agent is up and answers from this browser: no server is linked."""
    answer = page.evaluate(f"async () => (await wasmagentClient.ask({QUESTION!r})).answer")
    assert answer["route"] not in ("llm", "llm_fallback"), answer["route"]
    assert page.evaluate("wasmagentClient.status()")["llm"]["connected"] is False


def test_a_server_link_asks_first_labels_its_answers_and_is_forgotten_in_one_click(
    browser: Browser, app_url: str, servers: Servers
) -> None:
    origin = f"ws://127.0.0.1:{servers.server.port}"
    context = browser.new_context()
    page = context.new_page()
    sockets = Sockets(page)
    try:
        _open(page, f"{app_url}?server={servers.server.ws_url}")
        dialog = page.get_by_role("alertdialog")
        expect(dialog).to_be_visible()
        expect(dialog.locator("#server-confirm-origin")).to_have_text(origin)
        expect(dialog).to_contain_text("your questions")
        expect(dialog).to_contain_text("the top passages of your documents")
        # The safe choice has the focus: Enter does not connect.
        expect(dialog.get_by_role("button", name="Don’t connect")).to_be_focused()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "server-confirm-desktop.png"))
        page.set_viewport_size({"width": 390, "height": 844})
        expect(dialog.get_by_role("button", name="Connect", exact=True)).to_be_in_viewport()
        page.screenshot(path=str(SHOTS / "server-confirm-phone.png"))
        page.set_viewport_size({"width": 1280, "height": 720})
        assert not _axe_problems(page, "server-confirm")
        # Booted, asked, answered: and still nothing went to the server, nothing was saved.
        _local_answer(page)
        assert sockets.urls == []
        assert sockets.saved() is None
        expect(page.locator("#server")).to_be_hidden()

        dialog.get_by_role("button", name="Connect", exact=True).click()
        expect(dialog).to_be_hidden()
        pill = page.locator("#server")
        expect(pill).to_have_text(f"server: {origin} — connected")
        assert sockets.urls == [servers.server.ws_url], "connected only once confirmed"
        expect(page).not_to_have_url(NO_SERVER_PARAM)  # the link's parameter leaves the bar
        assert '"confirmed":true' in (sockets.saved() or "")

        # The server's answer is labelled with its origin; the local passages are cited below.
        page.get_by_role("textbox", name="Ask").fill(QUESTION)
        page.get_by_role("button", name="Send").click()
        reply = page.locator(".msg.agent").last
        expect(reply.locator(".sources a").first).to_be_visible()
        expect(reply.locator(".from")).to_have_text(f"Answer from the server {origin}")
        expect(reply.locator(".text")).to_contain_text("According to [1]")

        # One click: disconnected, forgotten, and a reload stays local.
        page.get_by_role("button", name="Disconnect and forget the agent server").click()
        expect(pill).to_be_hidden()
        assert sockets.saved() is None
        page.get_by_role("textbox", name="Ask").fill("what is 17 * 23?")
        page.get_by_role("button", name="Send").click()
        local = page.locator(".msg.agent").last
        expect(local.locator(".text")).to_contain_text("391")
        expect(local.locator(".from")).to_have_count(0)
        # The restored answer from the server is still marked as one.
        page.reload()
        page.wait_for_selector("body[data-ready=true]", state="attached",
                               timeout=BOOT_TIMEOUT_MS)
        expect(page.locator(".msg.agent .from").first).to_have_text(
            "Answer from an agent server")
        _local_answer(page)
        expect(pill).to_be_hidden()
        expect(page.get_by_role("alertdialog")).to_be_hidden()
        assert sockets.urls == [servers.server.ws_url], "no connection after being forgotten"
        assert sockets.saved() is None
    finally:
        context.close()


def test_only_wss_or_loopback_ws_is_accepted_and_a_link_can_be_declined(
    browser: Browser, app_url: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    sockets = Sockets(page)
    try:
        # A link to a plain ws:// server elsewhere: refused, said so, nothing to confirm.
        _open(page, f"{app_url}?server=ws://example.com/v1/ws")
        dialog = page.get_by_role("alertdialog")
        expect(dialog).to_contain_text("refused")
        expect(dialog.locator("#server-confirm-origin")).to_have_text("ws://example.com")
        expect(dialog.get_by_role("button", name="Connect", exact=True)).to_have_count(0)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "server-refused-desktop.png"))
        assert not _axe_problems(page, "server-refused")
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_be_hidden()
        expect(page).not_to_have_url(NO_SERVER_PARAM)

        # The same address typed into the settings: the same refusal.
        page.get_by_role("button", name="Knowledge", exact=True).click()
        page.locator("#server-settings summary").click()
        page.get_by_label("Server WebSocket URL").fill("ws://example.com/v1/ws")
        page.get_by_role("button", name="Connect", exact=True).click()
        expect(page.locator("#server-message")).to_contain_text("ws://example.com is refused")
        expect(page.locator("#server")).to_be_hidden()
        assert not _axe_problems(page, "server-refused-settings")
        _local_answer(page)
        assert sockets.urls == []
        assert sockets.saved() is None

        # A loopback server from a link, declined: nothing sent, nothing kept, the link's
        # parameter gone from the address bar.
        _open(page, f"{app_url}?server=ws://127.0.0.1:9/v1/ws")
        dialog = page.get_by_role("alertdialog")
        expect(dialog.locator("#server-confirm-origin")).to_have_text("ws://127.0.0.1:9")
        dialog.get_by_role("button", name="Don’t connect").click()
        expect(dialog).to_be_hidden()
        expect(page).not_to_have_url(NO_SERVER_PARAM)
        expect(page.locator("#server-message")).to_contain_text("Not connected to ws://127.0.0.1:9")
        _local_answer(page)
        assert sockets.urls == []
        assert sockets.saved() is None
    finally:
        context.close()
