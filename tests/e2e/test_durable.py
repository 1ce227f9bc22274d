"""A page reload in the middle of adding documents loses nothing and duplicates nothing.

The user drops many documents, reloads while they are being indexed, and the new page picks
the ingestion up from its journal (IndexedDB) and finishes it. The expected outcome comes from
the same core ingesting the same documents uninterrupted in CPython: every document present,
every passage stored once, the same report.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, expect

from wasmagent.knowledge.library import Library
from wasmagent.ports import MemoryStore
from wasmagent.protocol import DocumentIn

from .conftest import BOOT_TIMEOUT_MS, boot

KB = "reload-test"
SHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
DOCS = [DocumentIn(f"notes-{i:02d}.md", f"# Notes {i}\n\n" + "\n\n".join(
    f"## Part {p}\n\n" + " ".join(f"Item {i}-{p}-{s} records that shelf {i * 31 + p * 7 + s} "
                                  f"holds box {s} of series {p}." for s in range(12))
    for p in range(10)), "markdown") for i in range(40)]


def _reference() -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        library = Library(MemoryStore(), None, None)
        report = await library.ingest(KB, DOCS)
        kb = await library.get(KB)
        return {**report.to_dict(), "chunks": len(kb), "sources": len(kb.sources)}

    # on its own thread: Playwright's sync API keeps an event loop running on this one
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, run()).result()


def test_a_reload_mid_ingestion_resumes_and_stores_every_document_exactly_once(
        browser: Browser, app_url: str) -> None:
    expected = _reference()
    assert expected["chunks_added"] > 4 * 64  # several journaled steps
    booted = boot(browser, app_url)
    page = booted.page
    try:
        page.get_by_role("button", name="Knowledge").click()
        page.once("dialog", lambda dialog: dialog.accept(KB))
        page.get_by_role("button", name="New knowledge base").click()
        page.get_by_label("Add documents").set_input_files([
            {"name": d.source, "mimeType": "text/markdown", "buffer": d.text.encode()}
            for d in DOCS])
        # reload once the first steps are committed, long before the last
        expect(page.locator("#ingest-label")).to_contain_text(
            re.compile(r"indexed [1-9]\d* (of about \d+ )?passages"), timeout=60_000)
        done_before = page.locator("#ingest-progress").evaluate("p => p.value")
        assert done_before < expected["chunks_added"], "passages indexed: some, not all"
        page.reload()
        page.wait_for_selector("body[data-ready=true]", state="attached",
                               timeout=BOOT_TIMEOUT_MS)

        expect(page.locator("#ingest-label")).to_contain_text(
            re.compile("Resuming: add 40 document|Resumed after a reload"))
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "ingestion-resumed-desktop.png"))
        expect(page.locator("#kb-message")).to_contain_text(
            f"Added {expected['chunks_added']} passages from 40 document(s) to “{KB}”",
            timeout=120_000)
        jobs = page.evaluate("""() => window.wasmagentClient.request('jobs.list')
                                .then((r) => r.result.jobs)""")
        job = jobs[0]
        assert job["status"] == "done"
        assert job["runs"] == 2  # started by the first page, resumed by the second
        assert {k: job["result"][k] for k in ("chunks_added", "duplicates", "documents")} == {
            k: expected[k] for k in ("chunks_added", "duplicates", "documents")}
        kbs = page.evaluate("""() => window.wasmagentClient.request('kb.list')
                               .then((r) => r.result.kbs)""")
        stored = next(kb for kb in kbs if kb["name"] == KB)
        assert stored == {"name": KB, "chunks": expected["chunks"],
                          "sources": expected["sources"]}
        assert not booted.errors
    finally:
        booted.context.close()
