"""Ready before the embedding model (issue 16): the app is ready to answer once Python, storage
and the knowledge base are, while onnxruntime-web is still making MiniLM's session; a question
asked then gets a cited answer from keyword search, and the agent switches to hybrid search by
itself once the session exists. A model that cannot load leaves keyword search, said so.

The model's download is held by a Playwright route until the test lets it go: the window in
which the model is pending is made by an event, not by timing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Route, expect

from .conftest import BOOT_TIMEOUT_MS, MODEL_SETTLED, WAIT_MS

MODEL_URL = "**/models/all-minilm-l6-v2/model.int8.onnx*"
QUESTION = "How do I embed the widget on my site?"
WARMED = "async () => (await wasmagentClient.status()).batcher.items >= 1"
ASK = """async (q) => {
    const r = await wasmagentClient.ask(q);
    return r.answer;
}"""


class HeldModel:
    """An app page whose MiniLM download waits for `release()` (or fails on `fail()`)."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.held: list[Route] = []
        self.context: BrowserContext = browser.new_context()
        self.context.route(MODEL_URL, self._hold)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        with self.context.expect_event("request", lambda r: "model.int8.onnx" in r.url,
                                       timeout=BOOT_TIMEOUT_MS):
            self.page.goto(url)
        self.page.wait_for_selector("body[data-ready=true]", state="attached",
                                    timeout=BOOT_TIMEOUT_MS)

    def _hold(self, route: Route) -> None:
        self.held.append(route)

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = self.page.evaluate("wasmagentClient.status()")
        return found

    def ask(self, text: str) -> dict[str, Any]:
        found: dict[str, Any] = self.page.evaluate(ASK, text)
        return found

    def release(self) -> None:
        for route in self.held:
            route.continue_()

    def fail(self) -> None:
        for route in self.held:
            route.abort()


@pytest.fixture
def held(browser: Browser, app_url: str) -> Iterator[HeldModel]:
    page = HeldModel(browser, app_url)
    yield page
    page.context.close()


def test_a_question_before_the_model_session_gets_a_cited_keyword_answer(
        held: HeldModel) -> None:
    status = held.status()
    assert status["model_state"] == "pending", "ready came before the model"
    assert status["model"] is False
    expect(held.page.locator("#engine")).to_have_text("ready")
    first = held.ask(QUESTION)
    assert first["route"] == "retrieve"
    assert first["citations"], first
    assert first["citations"][0]["source"].endswith(".md")
    assert held.status()["model_state"] == "pending", "the answer did not wait for the model"

    held.release()
    held.page.wait_for_selector(MODEL_SETTLED, state="attached", timeout=BOOT_TIMEOUT_MS)
    status = held.status()
    assert (status["model"], status["model_state"]) == (True, "ready")
    # The worker's warm-up embedding comes first (one text); after it, only questions count.
    held.page.wait_for_function(WARMED, polling=100, timeout=WAIT_MS)
    before = held.status()["batcher"]["items"]
    second = held.ask(QUESTION)
    assert second["citations"], second
    assert held.status()["batcher"]["items"] > before, "the question was embedded: hybrid"
    log = held.page.evaluate("wasmagentClient.bootLog")
    stages = [e["stage"] for e in log if e["type"] == "progress" and e["stage"] != "server"]
    # After ready: the model's bytes (download) as they arrive, then its announcement.
    after = stages[stages.index("ready") + 1:]
    assert after[-1] == "model"
    assert set(after) <= {"download", "model"}
    assert held.errors == []


def test_a_model_that_cannot_load_leaves_keyword_search_with_a_notice(held: HeldModel) -> None:
    held.fail()
    held.page.wait_for_selector("body[data-model=failed]", state="attached",
                                timeout=BOOT_TIMEOUT_MS)
    expect(held.page.locator("#engine")).to_have_text("keyword search only")
    status = held.status()
    assert (status["model"], status["model_state"]) == (False, "failed")
    assert status["model_error"]
    log = held.page.evaluate("wasmagentClient.bootLog")
    assert any("using keyword search only" in (e.get("message") or "") for e in log)
    answer = held.ask(QUESTION)
    assert answer["citations"], answer
    assert held.errors == []
