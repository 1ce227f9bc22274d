"""The widget with `data-model="local"`: the visitor, not the site, chooses to download the local
model inside the frame; answers are then written by it, with citations. Without the attribute
the panel offers nothing and the frame never loads a model (tests/e2e/test_widget.py).

Headless Chromium here refuses Cache Storage to a frame on another site (as private windows
do), so this journey takes the "for this visit only" path: the verified bytes go to the
frame's worker without being stored. Storing, offline use and removal are tested in the app
(test_local_model.py), where the same code keeps the model. Then the site owner's own tool
(`data-tools`), called by the local model for a question no route of the owner's matches."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, expect

from .test_local_model import MODEL_TIMEOUT_MS, QUESTION, SCHEMA_ERRORS
from .test_widget import (  # noqa: F401 - `sites` is a fixture
    Sites,
    _ask_in_panel,
    _shot,
    _visiting,
    sites,
)

OWNER_TOOL_QUESTION = "How much does it cost to ship a parcel of three kilos to Germany?"


def test_a_visitor_installs_the_local_model_in_the_widget_and_gets_generated_answers(
        browser: Browser, sites: Sites) -> None:  # noqa: F811 - the fixture
    with _visiting(browser, f"{sites.host}/local.html") as visit:
        visit.page.get_by_role("button", name="Acme help", exact=True).click()
        visit.wait_for_event("ready")
        panel = visit.widget()
        panel.locator("#model-settings summary").click()
        install = panel.locator("#model-install")
        expect(install).to_have_text("Download the local model (98 MB)")
        install.click()
        expect(panel.locator("#model-label")).to_have_text(re.compile(r"of 93\.8 MB"))
        expect(panel.locator("body")).to_have_attribute("data-local-model-state", "ready",
                                                        timeout=MODEL_TIMEOUT_MS)
        reply = _ask_in_panel(visit, QUESTION)
        expect(reply).not_to_be_empty(timeout=MODEL_TIMEOUT_MS)
        visit.page.wait_for_function("() => hostLog.events.some((e) => e.type === 'answer')",
                                     timeout=MODEL_TIMEOUT_MS)
        answer = visit.events("answer")[0]["detail"]
        assert answer["route"] == "local_llm", answer
        assert answer["text"].strip()
        assert answer["citations"], "a generated answer cites its passages"
        _shot(visit.page, "widget-local-model")

        # The owner's tool, chosen by the local model: no route matches this wording, the
        # intent head calls it out of scope, but it means what `shipping` does.
        reply = _ask_in_panel(visit, OWNER_TOOL_QUESTION)
        steps = reply.locator(".steps")
        expect(steps.locator("summary")).to_have_text(re.compile(r"^\d+ tool calls?$"),
                                                      timeout=MODEL_TIMEOUT_MS)
        expect(reply.locator(".from")).to_contain_text("local model", timeout=MODEL_TIMEOUT_MS)
        shown = steps.locator("li").all_text_contents()
        assert shown, "each call is listed"
        assert all(not SCHEMA_ERRORS.search(step) for step in shown), shown
        assert any(step.startswith("shipping(") for step in shown), shown
        assert visit.errors == []
