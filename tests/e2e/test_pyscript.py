"""wasmagent inside someone else's PyScript page: the example at /examples/pyscript.html loads
the wheel into its own PyScript worker, starts the agent with `wasmagent.start_in_browser()`
and answers from the built-in knowledge base, with sources, offline after one visit."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect

from .conftest import BOOT_TIMEOUT_MS, Booted, boot

QUESTION = "why does the agent run in a plain module worker instead of pyscript?"


def _ready(page: Page) -> None:
    expect(page.locator("#status")).to_have_text("Ready", timeout=BOOT_TIMEOUT_MS)


def _ask(page: Page) -> None:
    page.fill("#question", QUESTION)
    page.click("#send")
    expect(page.locator("#status")).to_contain_text("Answered")
    assert "module worker" in page.inner_text("#answer").lower()
    sources = page.locator("#sources li")
    expect(sources.first).to_be_visible()
    assert any("(README.md" in text for text in sources.all_inner_texts()), \
        sources.all_inner_texts()


def test_a_pyscript_page_gets_a_cited_answer_and_keeps_working_offline(
        browser: Browser, app_url: str) -> None:
    # The app's first visit installs its service worker; the example is cached when first used.
    booted: Booted = boot(browser, app_url)
    page = booted.page
    try:
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        page.goto(app_url + "examples/pyscript.html")
        _ready(page)
        _ask(page)
        assert booted.foreign_requests() == []
        booted.context.set_offline(True)
        page.reload()
        _ready(page)
        _ask(page)
        assert booted.errors == []
    finally:
        booted.context.close()
