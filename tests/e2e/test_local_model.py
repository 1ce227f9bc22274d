"""The opt-in local generative model, for real: SmolLM2-135M (98 MB GGUF from dist/) in wllama.

One user journey in one booted page, because installing and loading the model is the cost:
install it from Knowledge → Model with a byte progress bar, go offline, get a streamed, cited
answer written by the model, cancel a second one mid-stream, reload offline and find it still
installed. Cost on the 2-core CI box: a ~100 MB download from loopback, a 3-5 s model load and
two short generations (at most `LOCAL_MAX_TOKENS` = 64 tokens, ~3-7 tokens/s): about a
minute on top of one app boot on a quiet box; 90 s measured on the shared 2-core box under load
average ~7 (the first token after ~32 s: wasm reads the prompt at ~6 tokens/s there).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from .conftest import BOOT_TIMEOUT_MS, boot

MODEL_TIMEOUT_MS = 240_000
QUESTION = "Which embedding model does wasmagent use?"

ASK = """async ([text, mode]) => {
  const deltas = [];
  const done = await wasmagentClient.request('ask', {text, mode},
    {onEvent: (e) => { if (e.type === 'delta') deltas.push(e.text); }});
  return {deltas, answer: done.answer};
}"""

ASK_AND_CANCEL = """async (text) => {
  const abort = new AbortController();
  const deltas = [];
  try {
    await wasmagentClient.request('ask', {text, mode: 'local'}, {signal: abort.signal,
      onEvent: (e) => { if (e.type === 'delta') { deltas.push(e.text); abort.abort(); } }});
    return {code: null, deltas};
  } catch (err) {
    return {code: err.code, deltas};
  }
}"""


def test_install_the_local_model_then_answer_offline_cancel_and_reload(
        browser: Browser, app_url: str) -> None:
    booted = boot(browser, app_url)
    page = booted.page
    try:
        # The wllama runtime comes from the service worker's precache once it controls the page.
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=60_000)
        extractive = page.evaluate(ASK, [QUESTION, "local"])
        assert extractive["answer"]["route"] not in ("llm", "local_llm"), "without the model: extracts"

        page.click("#toggle-kb")
        page.click("#model-settings summary")
        install = page.locator("#model-install")
        expect(install).to_have_text("Local model (98 MB)")
        install.click()
        # A real byte count: some bytes of ~94 MB arrive before the download ends.
        expect(page.locator("#model-label")).to_have_text(re.compile(r"of 93\.8 MB"))
        page.wait_for_selector("body[data-local-model-state=ready]", state="attached",
                               timeout=MODEL_TIMEOUT_MS)
        expect(page.locator("#model-remove")).to_be_visible()

        booted.context.set_offline(True)
        got = page.evaluate(ASK, [QUESTION, "local"])
        answer = got["answer"]
        assert answer["route"] == "local_llm", answer["text"][:300]
        assert len(got["deltas"]) > 1, "the answer streams token by token"
        assert "".join(got["deltas"]) == answer["text"]
        assert answer["text"].strip()
        assert answer["citations"], "a generated answer cites its passages"
        cited = {int(n) for n in re.findall(r"\[(\d{1,2})\]", answer["text"])}
        assert all(1 <= n <= 5 for n in cited), f"citations name given passages: {cited}"

        cancelled = page.evaluate(ASK_AND_CANCEL, "How do I add my own documents?")
        assert cancelled["code"] == "cancelled"
        assert len(cancelled["deltas"]) >= 1
        # Decoding stopped: the model is free again and answers the next question.
        page.wait_for_function(
            "() => wasmagentClient.status().then((s) => s.llm.local.generating === false)",
            timeout=MODEL_TIMEOUT_MS)
        again = page.evaluate(ASK, ["What is 6 * 7?", "local"])
        assert again["answer"]["text"] == "6 * 7 = 42", "tools still answer exactly"
        _the_local_model_calls_tools(page)

        page.reload()
        page.wait_for_selector("body[data-ready=true]", state="attached",
                               timeout=BOOT_TIMEOUT_MS)
        page.wait_for_selector("body[data-local-model=installed]", state="attached",
                               timeout=60_000)
        page.wait_for_selector("body[data-local-model-state=ready]", state="attached",
                               timeout=MODEL_TIMEOUT_MS)
        assert booted.foreign_requests() == []
    finally:
        booted.context.close()


# (Worded so that no rule reads it: "what is 17.5% of 2,340, and how many days until
# 2026-12-25?" is answered by the rules alone, both parts, without any model.)
TWO_TOOLS = "How much is seventeen times twenty-three, and how long until Christmas 2026?"
LOCAL = "Written by the local model in this browser"
LOCAL_FAILED = "Started by the local model, finished without it in this browser"
ANSWER_ENDED = """() => {
  const reply = [...document.querySelectorAll('.msg.agent')].pop();
  return reply.querySelector('.from') !== null || reply.classList.contains('error');
}"""
SCHEMA_ERRORS = re.compile(r"not valid JSON|no tool named|unknown argument|is required|must be ")


def _the_local_model_calls_tools(page: Page) -> None:
    """A question that needs two tools, asked in the chat: the local model decides under a
    grammar (llm/json_tools.py), so every call names a registered tool with arguments that fit
    its schema (whether a 135M model picks good values is another matter: a tool may refuse
    them, and that refusal goes back to the model as a step). The steps show, then an answer."""
    page.get_by_role("textbox", name="Ask").fill(TWO_TOOLS)
    page.get_by_role("button", name="Send").click()
    reply = page.locator(".msg.agent").last
    steps = reply.locator(".steps")
    expect(steps.locator("summary")).to_have_text(re.compile(r"^\d+ tool calls?$"),
                                                  timeout=MODEL_TIMEOUT_MS)
    # Labelled once the answer has arrived. On a device too slow for the model to finish in
    # time, the answer is what its tools found, labelled so (both are right; an error is not).
    try:
        page.wait_for_function(ANSWER_ENDED, timeout=MODEL_TIMEOUT_MS)
    except PlaywrightTimeoutError:
        status = page.evaluate("wasmagentClient.status()")["llm"]
        pytest.fail(f"no answer ended: {reply.inner_text()!r}; model status {status}")
    assert "error" not in (reply.get_attribute("class") or ""), reply.inner_text()
    label = reply.locator(".from").inner_text()
    text = reply.locator(".text").inner_text()
    assert label in (LOCAL, LOCAL_FAILED), label
    if label == LOCAL_FAILED:
        assert "What its tools found:" in text or "Answer from the local documents" in text, text
    assert text.strip()
    shown = steps.locator("li").all_text_contents()
    assert shown, "each call is listed"
    for step in shown:
        assert re.match(r"^(calculator|days_until|days_between|datetime_now)\(.*\) → ",
                        step), step
        assert not SCHEMA_ERRORS.search(step), f"a call the grammar should have ruled out: {step}"
