"""The foundation as a user meets it: the page boots Python in a worker and answers through it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from .conftest import BOOT_TIMEOUT_MS, DIST, WAIT_MS, Booted, boot


def test_boot_shows_real_progress_then_ready(app: Booted) -> None:
    log = app.page.evaluate("wasmagentClient.bootLog")
    stages = [e["stage"] for e in log if e["type"] == "progress"]
    assert stages[0] == "runtime"
    # Ready does not wait for the embedding model: its last bytes and its announcement may
    # come after (tests/e2e/test_boot_pending.py).
    ready = stages.index("ready")
    assert set(stages[ready + 1:]) <= {"download", "model", "server"}
    for stage in ("download", "packages", "model"):
        assert stage in stages
    total = json.loads((DIST / "boot-manifest.json").read_text())["total"]
    downloads = [e for e in log if e["stage"] == "download"]
    assert all(e["total"] == total for e in downloads)
    loaded = [e["loaded"] for e in downloads]
    assert loaded == sorted(loaded), "byte counts only grow"
    assert loaded[-1] > total / 2
    expect(app.page.locator("#boot")).to_be_hidden()
    expect(app.page.locator("#engine")).to_have_text("ready")


def test_python_runs_in_the_worker_and_answers_through_the_bridge(app: Booted) -> None:
    status = app.page.evaluate("wasmagentClient.status()")
    assert status["host"] == "browser"
    assert status["platform"] == "emscripten"
    assert status["python"].startswith("3.")
    assert status["cross_origin_isolated"] is True
    assert status["threads"] == 1, "one thread by default: lower tail latency"
    # The page itself never loads the Python runtime: only the worker fetched it. (The
    # worker's module graph, pyodide.mjs included, is fetched on the page's behalf, so we look
    # for the interpreter and the standard library, which only Pyodide's loader requests.)
    page_files = app.page.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name)")
    assert not [u for u in page_files if u.endswith((".wasm", ".zip", ".whl"))]
    assert app.page.evaluate("typeof globalThis.loadPyodide") == "undefined"


def test_malformed_messages_get_typed_errors_and_the_worker_survives(app: Booted) -> None:
    events = app.page.evaluate("""async () => {
        const client = window.wasmagentClient;
        const seen = [];
        const off = client.on((e) => { if (e.type === 'error') seen.push(e); });
        client.postRaw('{not json');
        client.postRaw(JSON.stringify({v: 1, type: 'explode', id: 'm1'}));
        client.postRaw(JSON.stringify({v: 9, type: 'status', id: 'm2'}));
        client.postRaw({v: 1, type: 'ask', id: 'm3', text: ''});
        const status = await client.status();
        off();
        return {seen, status};
    }""")
    codes = [(e["id"], e["code"]) for e in events["seen"]]
    assert codes == [(None, "bad_json"), ("m1", "bad_message"), ("m2", "unsupported_version"),
                     ("m3", "bad_message")]
    assert events["status"]["host"] == "browser"


def test_bridge_refuses_invalid_requests_before_sending(app: Booted) -> None:
    error = app.page.evaluate("""() => wasmagentClient.request('ask', {text: 5})
        .then(() => null, (e) => ({code: e.code, message: e.message}))""")
    assert error["code"] == "bad_message"
    assert "text" in error["message"]


def test_nothing_leaves_localhost(app: Booted) -> None:
    app.page.evaluate("wasmagentClient.status()")
    assert app.requests, "requests were recorded"
    assert app.foreign_requests() == []
    assert app.errors == []


def test_threads_can_be_raised_when_isolated(browser: Browser, app_url: str) -> None:
    booted = boot(browser, app_url + "?threads=2")
    try:
        status = booted.page.evaluate("wasmagentClient.status()")
        assert status["threads"] == 2
        vectors = booted.page.evaluate("wasmagentClient.embed(['threads work'])")
        assert len(vectors[0]) == 384
    finally:
        booted.context.close()


def test_boots_single_threaded_without_cross_origin_isolation(
    browser: Browser, plain_url: str
) -> None:
    booted = boot(browser, plain_url + "?threads=2")
    try:
        status = booted.page.evaluate("wasmagentClient.status()")
        assert status["cross_origin_isolated"] is False
        assert status["threads"] == 1
        assert booted.foreign_requests() == []
    finally:
        booted.context.close()


# -- the fast boot: precompiled stdlib, memory snapshot, offline ---------------------------------

BOOT_FILES = "performance.getEntriesByType('resource').map((e) => e.name)"


def _worker_boot(booted: Booted) -> dict[str, Any]:
    """What the worker recorded about its own boot (`self.bootTimings` in web/worker/worker.js)."""
    timings: dict[str, Any] = booted.page.workers[0].evaluate("self.bootTimings")
    return timings


def _fallback_messages(booted: Booted) -> list[str]:
    log = booted.page.evaluate("wasmagentClient.bootLog")
    return [e.get("message") or "" for e in log
            if "without the memory snapshot" in (e.get("message") or "")]


def _semantic_answer(booted: Booted) -> dict[str, Any]:
    """An answer that needs the embedding model, the knowledge base and the Python core."""
    answer: dict[str, Any] = booted.page.evaluate(
        "async () => (await wasmagentClient.ask('which embedding model is used?')).answer")
    return answer


def test_boots_from_the_build_snapshot_without_installing_packages(app: Booted) -> None:
    timings = _worker_boot(app)
    assert timings["snapshot"] is True, timings.get("snapshotError")
    assert _fallback_messages(app) == []
    worker_files = app.page.workers[0].evaluate(BOOT_FILES)
    assert any("/pyodide/snapshot.bin?v=" in u for u in worker_files)
    assert any("/pyodide/wasmagent-stdlib.zip?v=" in u for u in worker_files)
    # no wheel install, no lock fetch, no plain stdlib: all of it is in the snapshot and zip
    assert not [u for u in app.requests
                if u.endswith((".whl", "pyodide-lock.json", "python_stdlib.zip"))]
    answer = _semantic_answer(app)
    assert answer["citations"], answer


def _mismatched_snapshot() -> bytes:
    """The build's snapshot with another runtime build's id (bytes 16-47 of its header)."""
    data = bytearray((DIST / "pyodide/snapshot.bin").read_bytes())
    data[16:48] = bytes(b ^ 0x5A for b in data[16:48])
    return bytes(data)


@pytest.mark.parametrize("served", ["another build", "missing"])
def test_a_snapshot_that_does_not_fit_falls_back_to_a_normal_boot(
    browser: Browser, app_url: str, served: str
) -> None:
    body = _mismatched_snapshot() if served == "another build" else b"gone"
    status = 200 if served == "another build" else 404

    def serve_bad_snapshot(context: BrowserContext) -> None:
        context.route("**/pyodide/snapshot.bin*",
                      lambda route: route.fulfill(status=status, body=body,
                                                  content_type="application/octet-stream"))

    booted = boot(browser, app_url, prepare=serve_bad_snapshot)
    try:
        timings = _worker_boot(booted)
        assert timings["snapshot"] is False
        messages = _fallback_messages(booted)
        assert len(messages) == 1
        if served == "another build":
            assert "build id mismatch" in messages[0]
        expect(booted.page.locator("#engine")).to_have_text("ready")
        assert _semantic_answer(booted)["citations"]
        assert booted.errors == []
    finally:
        booted.context.close()


def test_boots_offline_from_the_snapshot_after_one_visit(browser: Browser, app_url: str) -> None:
    booted = boot(browser, app_url)
    page = booted.page
    try:
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=WAIT_MS)
        booted.context.set_offline(True)
        page.reload()
        page.wait_for_selector("body[data-ready=true]", state="attached", timeout=BOOT_TIMEOUT_MS)
        assert _worker_boot(booted)["snapshot"] is True
        assert _semantic_answer(booted)["citations"]
    finally:
        booted.context.close()
