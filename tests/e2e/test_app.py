"""The browser app as a user meets it: shipped knowledge, documents, persistence, offline, XSS."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from wasmagent.hosts.server.static import make_server

from .conftest import BOOT_TIMEOUT_MS, DIST, NEXT_FRAMES, ROOT, Booted, boot

XSS_DOC = b"""<html><head><title>Payloads</title></head><body>
<h1>Payload page</h1>
<p>The secret ingredient is paprika. <img src=x onerror="window.__xss = 'img'"></p>
<script>window.__xss = 'script'</script>
<p>Click <a href="javascript:window.__xss='link'">here</a> for <b onmouseover="window.__xss='b'">more</b>.</p>
</body></html>"""


SHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"

def _ask(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Ask").fill(text)
    page.get_by_role("button", name="Send").click()


def _open_panel(page: Page) -> None:
    if page.locator("#kb-panel").is_hidden():
        page.get_by_role("button", name="Knowledge").click()


def test_the_shipped_knowledge_base_answers_out_of_the_box(app: Booted) -> None:
    page = app.page
    _ask(page, "why does the agent run in a plain module worker instead of pyscript?")
    last = page.locator(".msg.agent").last
    expect(last.locator(".sources a").first).to_be_visible()
    expect(last.locator(".sources a").first).to_have_attribute("title", re.compile(r"^(README|BENCHMARKS)\.md#"))


def test_adding_documents_then_asking_with_a_cited_viewer(app: Booted) -> None:
    page = app.page
    _open_panel(page)
    page.get_by_label("Add documents").set_input_files([
        {"name": "recipes.md", "mimeType": "text/markdown",
         "buffer": b"# Recipes\n\n## Pancakes\n\nMix two eggs, 250 ml milk and 125 g flour, "
                   b"then rest the batter for thirty minutes before frying."},
    ])
    expect(page.locator("#kb-message")).to_contain_text("Added 1 passages")
    _ask(page, "how long should pancake batter rest?")
    last = page.locator(".msg.agent").last
    expect(last).to_contain_text("thirty minutes")
    last.locator(".sources a").first.click()
    dialog = page.locator("#viewer")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#viewer-source")).to_have_text("recipes.md#pancakes")
    expect(dialog.locator("mark")).to_contain_text("thirty minutes")
    dialog.get_by_role("button", name="Close").click()


def test_diagnostics_show_stage_latencies_and_log_lines(app: Booted) -> None:
    page = app.page
    _open_panel(page)
    page.locator("#diagnostics summary").click()
    expect(page.locator("#stages tbody tr").first).to_be_visible()
    expect(page.locator("#log-lines")).to_contain_text('"event":"stage"')


def test_knowledge_and_history_survive_a_reload(browser: Browser, app_url: str) -> None:
    booted = boot(browser, app_url)
    page = booted.page
    try:
        page.evaluate("""() => wasmagentClient.request('ingest', {kb: 'travel', documents: [
            {source: 'trip.md', text: '# Trip\\n\\nThe ferry to the island leaves at 7:45 every morning from pier four.'}]})""")
        page.reload()
        page.wait_for_selector("body[data-ready=true]", state="attached", timeout=BOOT_TIMEOUT_MS)
        answer = page.evaluate("async () => (await wasmagentClient.ask('when does the ferry leave?', {kb: 'travel'})).answer")
        assert "7:45" in answer["text"]
        page.reload()
        page.wait_for_selector("body[data-ready=true]", state="attached", timeout=BOOT_TIMEOUT_MS)
        expect(page.get_by_role("log")).to_contain_text("when does the ferry leave?")
        kbs = page.evaluate("async () => (await wasmagentClient.request('kb.list')).result.kbs.map(k => k.name)")
        assert set(kbs) >= {"default", "travel"}
        page.on("dialog", lambda d: d.accept())
        _open_panel(page)
        page.get_by_role("button", name="Clear all data").click()
        expect(page.locator("#kb-message")).to_contain_text("Cleared")
        kbs = page.evaluate("async () => (await wasmagentClient.request('kb.list')).result.kbs.map(k => k.name)")
        assert "travel" not in kbs
        expect(page.get_by_role("log")).not_to_contain_text("ferry")
    finally:
        booted.context.close()


def test_nothing_from_documents_or_questions_runs_as_html(browser: Browser, app_url: str) -> None:
    booted = boot(browser, app_url)
    page = booted.page
    try:
        _open_panel(page)
        page.get_by_label("Add documents").set_input_files([
            {"name": "payload.html", "mimeType": "text/html", "buffer": XSS_DOC}])
        expect(page.locator("#kb-message")).to_contain_text("Added")
        _ask(page, "<img src=x onerror=\"window.__xss='question'\"> what is the secret ingredient?")
        last = page.locator(".msg.agent").last
        expect(last).to_contain_text("paprika")
        last.locator(".sources a").first.click()
        expect(page.locator("#viewer")).to_be_visible()
        page.locator("#viewer-body").hover()
        page.evaluate(NEXT_FRAMES)  # the hover has been handled and the page drawn since
        assert page.evaluate("window.__xss") is None
        assert page.locator("#log img, #viewer img, #log script, #log a[href^='javascript']").count() == 0
        expect(page.get_by_role("log")).to_contain_text("<img src=x")
    finally:
        booted.context.close()


@pytest.fixture
def served_copy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A private copy of dist/ (so a test can deploy a new version of it) and its URL."""
    site = tmp_path / "site"
    shutil.copytree(DIST, site)
    server = make_server(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", site
    server.shutdown()
    server.server_close()


def test_works_offline_after_the_first_visit_and_offers_updates(
    browser: Browser, served_copy: tuple[str, Path]
) -> None:
    url, site = served_copy
    booted = boot(browser, url)
    page = booted.page
    try:
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=60_000)
        booted.context.set_offline(True)
        page.reload()
        page.wait_for_selector("body[data-ready=true]", state="attached", timeout=BOOT_TIMEOUT_MS)
        expect(page.locator("#net")).to_have_text("offline")
        answer = page.evaluate("async () => (await wasmagentClient.ask('what is 6 * 7')).answer.text")
        assert answer == "6 * 7 = 42"
        status = page.evaluate("wasmagentClient.status()")
        assert status["cross_origin_isolated"] is True, "isolation headers come from the cache"
        booted.context.set_offline(False)
        # Deploy a new version: change a file and regenerate the service worker.
        with (site / "app.css").open("a") as css:
            css.write("\n/* new version */\n")
        subprocess.run(["node", str(ROOT / "wasm_pkg/service-worker.mjs"), str(site)], check=True,
                       capture_output=True)
        page.evaluate("wasmagentUpdate()")
        expect(page.locator("#update")).to_be_visible(timeout=60_000)
    finally:
        booted.context.close()


def test_questions_are_answered_while_a_large_ingestion_runs(app: Booted) -> None:
    got = app.page.evaluate("""async () => {
        const docs = [];
        for (let i = 0; i < 60; i++) docs.push({source: `bulk/${i}.md`, text: `# Bulk ${i}\\n\\n` +
            `Section ${i} explains topic ${i} in plenty of words so that it forms a chunk. `.repeat(12)});
        let ingestDone = null;
        const ingest = wasmagentClient.request('ingest', {kb: 'bulk', documents: docs})
            .then(() => { ingestDone = performance.now(); });
        await new Promise((r) => setTimeout(r, 300));
        const t0 = performance.now();
        const answer = (await wasmagentClient.ask('what is 12 * 12')).answer;
        const asked = performance.now();
        await ingest;
        return {text: answer.text, askMs: asked - t0, askedFirst: asked < ingestDone};
    }""")
    assert got["text"] == "12 * 12 = 144"
    assert got["askedFirst"], "the question did not wait for the ingestion to finish"


def test_dropping_files_on_the_page_adds_them(app: Booted) -> None:
    page = app.page
    handle = page.evaluate_handle("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(['# Garden\\n\\nWater the tomatoes every second evening in summer.'],
                              'garden.md', {type: 'text/markdown'}));
        return dt;
    }""")
    page.dispatch_event("body", "dragenter", {"dataTransfer": handle})
    expect(page.locator("#drop")).to_be_visible()
    page.dispatch_event("body", "drop", {"dataTransfer": handle})
    expect(page.locator("#kb-message")).to_contain_text("Added 1 passages")


def test_keyboard_only_use(app: Booted) -> None:
    page = app.page
    page.locator("body").focus()
    for _ in range(30):  # Tab until the question box has focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "ask":
            break
    assert page.evaluate("document.activeElement.id") == "ask"
    page.keyboard.type("how does the app keep working offline?")
    page.keyboard.press("Enter")
    last = page.locator(".msg.agent").last
    link = last.locator(".sources a").first
    expect(link).to_be_visible()
    link.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#viewer")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()


def _bulk_files(count: int) -> list[dict[str, object]]:
    """`count` distinct Markdown files of three sections (three passages) each."""
    return [{"name": f"bulk-{i}.md", "mimeType": "text/markdown",
             "buffer": "".join(f"## Part {p} of note {i}\n\n"
                               + f"Note {i}, part {p}, records item {i * 10 + p} of the inventory. " * 3
                               + "\n\n" for p in range(3)).encode()}
            for i in range(count)]


def _kb_info(page: Page) -> tuple[int, int]:
    text = page.locator("#kb-info").inner_text()
    found = re.search(r"(\d+) passages from (\d+) document", text)
    assert found, text
    return int(found[1]), int(found[2])


def test_named_knowledge_bases_are_created_switched_and_deleted(app: Booted) -> None:
    page = app.page
    _open_panel(page)
    page.once("dialog", lambda d: d.accept("pets"))
    page.get_by_role("button", name="New knowledge base…").click()
    expect(page.get_by_label("Knowledge base", exact=True)).to_have_value("pets")
    page.get_by_label("Add documents").set_input_files([
        {"name": "pets.md", "mimeType": "text/markdown",
         "buffer": b"# Pets\n\nThe tortoise named Ludwig eats dandelion leaves on Sundays."}])
    expect(page.locator("#kb-message")).to_contain_text("Added 1 passages")
    _ask(page, "what does the tortoise eat?")
    expect(page.locator(".msg.agent").last).to_contain_text("dandelion")
    page.get_by_label("Knowledge base", exact=True).select_option("default")
    _ask(page, "what does the tortoise eat?")
    expect(page.locator(".msg.agent").last.locator(".text")).not_to_have_text("…")
    expect(page.locator(".msg.agent").last).not_to_contain_text("dandelion")
    page.get_by_label("Knowledge base", exact=True).select_option("pets")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete this knowledge base").click()
    expect(page.locator("#kb-message")).to_contain_text("Deleted “pets”")
    expect(page.get_by_label("Knowledge base", exact=True)).to_have_value("default")
    expect(page.locator("#kb-select option[value=pets]")).to_have_count(0)


def test_a_running_ingestion_can_be_cancelled(app: Booted) -> None:
    page = app.page
    _open_panel(page)
    page.once("dialog", lambda d: d.accept("stopped"))
    page.get_by_role("button", name="New knowledge base…").click()
    # 1,200 passages: many steps, so the cancel lands mid-way even on a fast machine
    page.get_by_label("Add documents").set_input_files(_bulk_files(400))
    # Cancel once the first batch is indexed: some work is kept, most is not done.
    expect(page.locator("#ingest")).to_be_visible()
    expect(page.locator("#ingest-label")).to_contain_text("indexed", timeout=60_000)
    page.get_by_role("button", name="Cancel adding documents").click()
    expect(page.locator("#kb-message")).to_contain_text("cancelled")
    expect(page.locator("#ingest")).to_be_hidden()
    expect(page.locator("#kb-info")).to_contain_text("passages")
    passages, documents = _kb_info(page)
    assert 0 < passages < 1200
    assert documents < 400
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete this knowledge base").click()
    expect(page.get_by_label("Knowledge base", exact=True)).to_have_value("default")


# Swaps the worker's IndexedDB adapter for one whose writes fail like an exhausted quota once a
# test says so (on a BroadcastChannel): it exists only in the copy this test routes in.
FULL_STORAGE_HOOK = """
let full = false;
const channel = new BroadcastChannel("wasmagent-test-storage");
channel.onmessage = () => { full = true; channel.postMessage("full"); };
export async function openStore(name) {
  const store = await realOpenStore(name);
  const refuse = () => Promise.reject(new DOMException("The quota has been exceeded.", "QuotaExceededError"));
  return { ...store, put: (key, value) => (full ? refuse() : store.put(key, value)),
           commit: (...args) => (full ? refuse() : store.commit(...args)) };
}
"""


def _with_fillable_storage(context: BrowserContext) -> None:
    def fulfil(route: Route) -> None:
        real = route.fetch()
        source = real.text().replace("export async function openStore(", "async function realOpenStore(")
        assert "realOpenStore" in source
        route.fulfill(response=real, body=source + FULL_STORAGE_HOOK)
    context.route("**/idb-store.js", fulfil)


def test_a_full_storage_is_explained_and_answers_keep_coming(browser: Browser, app_url: str) -> None:
    booted = boot(browser, app_url, prepare=_with_fillable_storage)
    page = booted.page
    try:
        page.evaluate("""() => new Promise((resolve) => {
            const channel = new BroadcastChannel('wasmagent-test-storage');
            channel.onmessage = resolve;
            channel.postMessage('fill');
        })""")
        _open_panel(page)
        page.get_by_label("Add documents").set_input_files([
            {"name": "lighthouse.md", "mimeType": "text/markdown",
             "buffer": b"# Lighthouse\n\nThe keeper feeds the lighthouse cat at noon sharp."}])
        expect(page.locator("#kb-message")).to_contain_text("Storage is full")
        expect(page.get_by_role("alert")).to_contain_text("storage is full or unavailable")
        _ask(page, "when is the lighthouse cat fed?")
        reply = page.locator(".msg.agent").last
        expect(reply).to_contain_text("noon sharp")
        # the answer could not be saved either: it stays on screen, and says so
        expect(reply.locator(".note")).to_contain_text("not saved")
        expect(reply.locator(".sources a").first).to_be_visible()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "storage-full-answer-not-saved-desktop.png"))
    finally:
        booted.context.close()


def test_without_the_embedding_model_the_indicator_says_so_and_answers_keep_coming(
    browser: Browser, app_url: str
) -> None:
    booted = boot(browser, app_url, prepare=lambda context: context.route(
        "**/model.int8.onnx*", lambda route: route.fulfill(status=404, body="gone")))
    page = booted.page
    try:
        expect(page.locator("#engine")).to_have_text("keyword search only")
        _ask(page, "why does the agent run in a plain module worker instead of pyscript?")
        expect(page.locator(".msg.agent").last.locator(".sources a").first).to_be_visible()
    finally:
        booted.context.close()
