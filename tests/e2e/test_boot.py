"""The foundation as a user meets it: the page boots Python in a worker and answers through it."""

from __future__ import annotations

import json

from playwright.sync_api import Browser, expect

from .conftest import DIST, Booted, boot


def test_boot_shows_real_progress_then_ready(app: Booted) -> None:
    log = app.page.evaluate("wasmagentClient.bootLog")
    stages = [e["stage"] for e in log if e["type"] == "progress"]
    assert stages[0] == "runtime"
    assert stages[-1] == "ready"
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
