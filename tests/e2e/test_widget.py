"""The embeddable widget as site owners and their visitors meet it, on real cross-site origins.

The app is served from http://127.0.0.1:APP_PORT and host sites from http://localhost:PORT
(another site, so the widget's frame gets its own renderer process, as on the web): an allowed
host on one port, and on another port a site that is not on the owner's allowlist.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Frame, FrameLocator, Page, expect

from wasmagent.hosts.server.static import StaticServer, make_server

from ..support.processes import start_fake, start_server
from .conftest import (
    BOOT_TIMEOUT_MS,
    DIST,
    LOCAL_HOSTS,
    MODEL_SETTLED,
    NEXT_FRAMES,
    ROOT,
    WAIT_MS,
)

HOST_SITE = Path(__file__).parent / "host_site"
SHOTS = ROOT / "test-results" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
HEAVY = ("/pyodide/", "/ort/", "/models/", "/kb/", "worker.js", "embed")

# What the host page looks like from the outside: everything but the widget's own element.
SNAPSHOT = """() => {
    const widget = document.querySelector('wasmagent-widget');
    const style = (node) => {
        const c = getComputedStyle(node);
        return [c.display, c.position, c.margin, c.padding, c.font, c.color, c.backgroundColor,
                c.border, c.width, c.height, c.overflow, c.transform].join(' | ');
    };
    const buy = document.getElementById('buy');
    return {
        body: [...document.body.childNodes].filter((n) => n !== widget)
            .map((n) => n.outerHTML ?? n.textContent).join(''),
        head: document.head.innerHTML,
        attributes: [document.documentElement, document.body].map((n) =>
            [...n.attributes].map((a) => `${a.name}=${a.value}`).join(' ')),
        styles: [style(document.documentElement), style(document.body), style(buy),
                 style(document.getElementById('intro'))],
        button: JSON.stringify(buy.getBoundingClientRect()),
        sheets: [document.styleSheets.length, document.adoptedStyleSheets.length],
        scroll: [scrollX, scrollY],
        title: document.title,
        newGlobals: Object.keys(window).filter((k) => !hostLog.globals.includes(k)),
    };
}"""


class _HostHandler(http.server.SimpleHTTPRequestHandler):
    """A plain static site, with the response headers a test page asks for."""

    page_headers: dict[str, list[tuple[str, str]]] = {}  # noqa: RUF012 - set per server

    def end_headers(self) -> None:
        for key, value in self.page_headers.get(urlsplit(self.path).path, []):
            self.send_header(key, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Sites:
    app: str
    host: str
    stranger: str
    pages: Path


def _app_root(tmp: Path) -> Path:
    """dist/ plus a second shipped knowledge base, `faq` (what an owner ships with data-kb)."""
    root = tmp / "app"
    root.mkdir()
    for entry in DIST.iterdir():
        if entry.name != "kb":
            (root / entry.name).symlink_to(entry)
    (root / "kb").mkdir()
    (root / "kb" / "default.kv").symlink_to(DIST / "kb" / "default.kv")
    db = tmp / "faq.sqlite"
    run = [sys.executable, "-m", "wasmagent"]
    subprocess.run([*run, "ingest", str(HOST_SITE / "faq.md"), "--kb", str(db), "--name", "faq"],
                   check=True, capture_output=True, cwd=ROOT)
    subprocess.run([*run, "export", "--kb", str(db), "--name", "faq", "--out",
                    str(root / "kb" / "faq.kv")], check=True, capture_output=True, cwd=ROOT)
    return root


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    tmp = tmp_path_factory.mktemp("widget")
    pages = tmp / "site"
    pages.mkdir()
    headers: dict[str, list[tuple[str, str]]] = {}
    handlers = [type("Host", (_HostHandler,), {"page_headers": headers}),
                type("Stranger", (_HostHandler,), {"page_headers": {}})]
    hosts = [StaticServer(("127.0.0.1", 0), functools.partial(h, directory=str(pages)))
             for h in handlers]
    host, stranger = (f"http://localhost:{s.server_address[1]}" for s in hosts)
    app_server = make_server(_app_root(tmp), port=0, embed_origins=[host],
                             follow_symlinks=True)  # its root links into dist/
    app = f"http://127.0.0.1:{app_server.server_address[1]}"
    for template in HOST_SITE.iterdir():
        text = template.read_text().replace("{{APP}}", app).replace("{{HOST}}", host)
        (pages / template.name).write_text(text)
    headers.update({
        "/strict.html": [("Content-Security-Policy", f"default-src 'self'; script-src {app}; "
                          f"frame-src {app}; style-src 'self'; object-src 'none'")],
        "/isolated.html": [("Cross-Origin-Opener-Policy", "same-origin"),
                           ("Cross-Origin-Embedder-Policy", "require-corp")],
    })
    servers = [*hosts, app_server]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Sites(app, host, stranger, pages)
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass
class Visit:
    """A host page in its own browser context, with every request and page error recorded."""

    page: Page
    context: BrowserContext
    requests: list[str]
    errors: list[str]
    console: list[str]

    def widget(self) -> FrameLocator:
        return self.page.frame_locator("wasmagent-widget iframe")

    def frame(self) -> Frame:
        return next(f for f in self.page.frames if "/embed" in f.url)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.page.evaluate("hostLog.events")
        return [e for e in found if kind is None or e["type"] == kind]

    def wait_for_event(self, kind: str) -> dict[str, Any]:
        # A function, not an expression string: that would need eval, which strict CSP blocks.
        self.page.wait_for_function("(kind) => hostLog.events.some((e) => e.type === kind)",
                                    arg=kind, timeout=BOOT_TIMEOUT_MS)
        return self.events(kind)[0]

    def app_requests(self, app: str) -> list[str]:
        return [u for u in self.requests if u.startswith(app)]


@contextmanager
def _visiting(browser: Browser, url: str) -> Iterator[Visit]:
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    visit = Visit(page, context, [], [], [])
    context.on("request", lambda r: visit.requests.append(r.url))
    page.on("pageerror", lambda e: visit.errors.append(str(e)))
    page.on("console", lambda m: visit.console.append(f"{m.type}: {m.text}"))
    try:
        page.goto(url)
        yield visit
    finally:
        context.close()


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _ask_in_panel(visit: Visit, text: str) -> Any:
    panel = visit.widget()
    panel.get_by_role("textbox", name="Ask").fill(text)
    panel.get_by_role("button", name="Send").click()
    return panel.locator(".msg.agent").last


@dataclass
class Journey:
    """A visitor on the allowed host: what happened before and after opening the widget."""

    visit: Visit
    before_open: list[str]
    before: dict[str, Any]
    opened_at: float


@pytest.fixture(scope="module")
def journey(browser: Browser, sites: Sites) -> Iterator[Journey]:
    with _visiting(browser, f"{sites.host}/index.html") as visit:
        yield _open_the_widget(visit)


def _open_the_widget(visit: Visit) -> Journey:
    page = visit.page
    page.evaluate("scrollTo(0, 400)")
    page.wait_for_timeout(1500)  # idle time in which a careless widget would start loading
    before_open = list(visit.requests)
    before = page.evaluate(SNAPSHOT)
    _shot(page, "desktop-closed")
    launcher = page.get_by_role("button", name="Acme help", exact=True)
    # Playwright injects its own (large) script into the page the first time a locator is
    # used; let that happen before the long-task window opens, so it is not counted.
    launcher.wait_for()
    page.evaluate(NEXT_FRAMES)
    opened_at = page.evaluate("performance.now()")
    launcher.click()
    visit.wait_for_event("ready")
    _model_settled(visit)
    return Journey(visit, before_open, before, opened_at)


def _model_settled(visit: Visit) -> None:
    """Ready comes before the embedding model (keyword answers meanwhile); questions whose
    expected sources need semantic search wait for it."""
    visit.widget().locator(MODEL_SETTLED).wait_for(state="attached", timeout=BOOT_TIMEOUT_MS)


def test_only_the_launcher_loads_until_the_widget_is_opened(journey: Journey, sites: Sites) -> None:
    visit = journey.visit
    assert [u for u in journey.before_open if u.startswith(sites.app)] == [
        f"{sites.app}/widget.js"]
    after = visit.app_requests(sites.app)
    for heavy in ("/pyodide/pyodide.asm.wasm", "/ort/ort-wasm-simd-threaded.wasm",
                  "/models/all-minilm-l6-v2/model.int8.onnx", "/kb/default.kv"):
        assert any(heavy in u for u in after), heavy
    assert [u for u in visit.requests if urlsplit(u).hostname not in LOCAL_HOSTS
            and urlsplit(u).scheme not in ("data", "blob")] == []


def test_a_visitor_asks_in_the_panel_and_gets_a_cited_answer(journey: Journey) -> None:
    visit = journey.visit
    expect(visit.widget().locator(".msg.welcome")).to_contain_text("Ask about Acme")
    reply = _ask_in_panel(visit, "why does the agent run in a plain module worker instead of "
                                 "pyscript?")
    link = reply.locator(".sources a").first
    expect(link).to_be_visible()
    expect(link).to_have_attribute("title", re.compile(r"^(README|BENCHMARKS)\.md#"))
    link.click()
    viewer = visit.widget().locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("mark")).to_contain_text("module worker")
    viewer.get_by_role("button", name="Close").click()
    ready = visit.events("ready")
    assert len(ready) == 1
    assert ready[0]["detail"]["crossOriginIsolated"] is False, "the host is not isolated"
    assert ready[0]["detail"]["threads"] == 1, "single-thread inference in a plain host"
    # Without data-model="local" the visitor is offered no model and the frame never loads one.
    expect(visit.widget().locator("#model-settings")).to_be_hidden()
    assert not [u for u in visit.requests if "/models/smollm2/" in u]
    answers = visit.events("answer")
    assert answers[-1]["detail"]["question"].startswith("why does the agent run")
    assert answers[-1]["detail"]["citations"]


def test_the_host_page_asks_through_the_api_and_hears_events(journey: Journey) -> None:
    page = journey.visit.page
    calc = page.evaluate("wasmagent.ask('what is 17 * 23')")
    assert calc == {"text": "17 * 23 = 391", "citations": [], "confident": True, "route": "tool"}
    grounded = page.evaluate("wasmagent.ask('which embedding model does it use?')")
    assert grounded["confident"] is True
    assert "all-MiniLM-L6-v2" in grounded["text"]
    assert grounded["citations"][0]["source"] == "MODEL_CARD.md"
    refused = page.evaluate("wasmagent.ask('').then(() => null, (e) => [e.name, e.code])")
    assert refused == ["WasmagentError", "bad_message"]
    kinds = [e["type"] for e in journey.visit.events()]
    assert kinds[:2] == ["open", "ready"]
    assert kinds[-3:] == ["answer", "answer", "error"]
    asked = [e["detail"]["question"] for e in journey.visit.events("answer")][-2:]
    assert asked == ["what is 17 * 23", "which embedding model does it use?"]
    # Questions asked by the page show in the panel's conversation too.
    expect(journey.visit.widget().locator(".msg.user", has_text="what is 17 * 23")).to_have_count(1)


def test_the_owners_python_tools_answer_through_the_widget(journey: Journey) -> None:
    page = journey.visit.page
    assert journey.visit.events("ready")[0]["detail"]["tools"] == ["opening_hours", "shipping"]
    hours = page.evaluate("wasmagent.ask('When are you open on Saturday?')")
    assert hours["text"] == "Acme is open 10:00-16:00 on saturday."
    assert hours["route"] == "tool"
    reply = _ask_in_panel(journey.visit, "what does shipping 2.5 kg cost?")
    expect(reply).to_have_text("Shipping 2.5 kg costs 7.75 EUR.")
    expect(journey.visit.widget().locator("#notice")).to_be_hidden()


def test_messages_from_a_foreign_window_are_ignored(journey: Journey, sites: Sites) -> None:
    page = journey.visit.page
    events_before = len(journey.visit.events())
    with page.context.expect_page() as opened:
        page.evaluate(f"window.open('{sites.stranger}/evil.html')")
    evil = opened.value
    evil.wait_for_function("() => document.title === 'done'", timeout=WAIT_MS)
    result = evil.evaluate("result")
    evil.close()
    assert result["openerFrames"] == 0, "a frame in a shadow root is not in window.frames"
    assert result["replies"]["opener"] == []
    assert journey.visit.events()[events_before:] == [], "forged widget messages had no effect"
    assert page.evaluate("wasmagent.ask('what is 2 + 2')")["text"] == "2 + 2 = 4"


def test_opening_and_using_it_never_blocks_the_host_page(journey: Journey) -> None:
    # What the widget controls: none of its own code runs for a long task (50 ms) on the host
    # page's main thread; the agent's work happens in the frame's renderer and its worker. A
    # long frame with no widget script in it (the renderer itself, starved on a busy machine:
    # seen under two CPU hogs) is not the widget's doing; the time budget of the whole host
    # page is a benchmark's to measure, not a test's.
    frames = [f for f in journey.visit.page.evaluate("hostLog.frames")
              if f["start"] + f["duration"] >= journey.opened_at]
    supported = "PerformanceObserver.supportedEntryTypes.includes('long-animation-frame')"
    assert journey.visit.page.evaluate(supported), "the browser must name a long frame's scripts"
    ours = [s for f in frames for s in f["scripts"] if "widget.js" in (s["source"] or "")]
    assert all(s["duration"] < 50 for s in ours), f"widget.js ran for a long task: {ours}"


def test_the_host_page_is_untouched_and_cannot_restyle_the_widget(journey: Journey) -> None:
    visit = journey.visit
    page = visit.page
    ticks = page.evaluate("hostLog.ticks")
    # the host's own timers keep running (a 25 ms interval)
    page.wait_for_function("(ticks) => hostLog.ticks > ticks", arg=ticks, timeout=WAIT_MS)
    after = page.evaluate(SNAPSHOT)
    assert after == {**journey.before, "newGlobals": ["wasmagent"]}
    page.get_by_role("button", name="Buy now").click()
    expect(page.locator("#count")).to_have_text("1")
    looks = page.evaluate("""() => {
        const root = document.querySelector('wasmagent-widget').shadowRoot;
        const styleOf = (sel) => getComputedStyle(root.querySelector(sel));
        const launcher = styleOf('.launcher'), frame = styleOf('iframe'), panel = styleOf('.panel');
        return {launcher: [launcher.width, launcher.height, launcher.borderRadius,
                           launcher.backgroundColor, launcher.borderTopWidth],
                icon: styleOf('.launcher svg').display, frame: [frame.borderTopWidth],
                panel: panel.display, title: styleOf('.title').fontFamily};
    }""")
    assert looks["launcher"] == ["56px", "56px", "50%", "rgb(26, 95, 180)", "0px"]
    assert looks["icon"] != "none"
    assert looks["frame"] == ["0px"]
    assert looks["panel"] == "flex"
    assert "Georgia" not in looks["title"]
    assert visit.errors == []


def test_screenshots_closed_and_open_on_desktop_and_phone(journey: Journey) -> None:
    page = journey.visit.page
    _shot(page, "desktop-open")
    box = page.locator("wasmagent-widget .panel").bounding_box()
    assert box is not None
    assert box["width"] == 400
    assert box["x"] + box["width"] == DESKTOP["width"] - 16
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.wait_for_function("(width) => document.querySelector('wasmagent-widget').shadowRoot"
                           ".querySelector('.panel').getBoundingClientRect().width === width",
                           arg=PHONE["width"], timeout=WAIT_MS)  # laid out for the phone
    page.evaluate(NEXT_FRAMES)
    _shot(page, "phone-open")
    box = page.locator("wasmagent-widget .panel").bounding_box()
    assert box == {"x": 0, "y": 0, "width": PHONE["width"], "height": PHONE["height"]}
    page.get_by_role("button", name="Close", exact=True).click()
    expect(page.locator("wasmagent-widget .panel")).to_be_hidden()
    _shot(page, "phone-closed")
    expect(page.get_by_role("button", name="Acme help", exact=True)).to_be_focused()
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    assert [e["type"] for e in journey.visit.events()][-1] == "close"


def test_keyboard_users_open_it_type_and_close_it_with_escape(journey: Journey) -> None:
    page = journey.visit.page
    page.evaluate("wasmagent.close()")
    launcher = page.get_by_role("button", name="Acme help", exact=True)
    launcher.focus()
    page.keyboard.press("Enter")
    expect(launcher).to_have_attribute("aria-expanded", "true")
    ask = journey.visit.widget().get_by_role("textbox", name="Ask")
    expect(ask).to_be_focused()
    page.keyboard.type("what is 3 * 3")
    page.keyboard.press("Enter")
    expect(journey.visit.widget().locator(".msg.agent").last).to_have_text("3 * 3 = 9")
    page.keyboard.press("Escape")
    expect(page.locator("wasmagent-widget .panel")).to_be_hidden()
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")


def test_a_site_not_on_the_allowlist_sees_a_refusal_in_the_frame(
    browser: Browser, sites: Sites
) -> None:
    with _visiting(browser, f"{sites.stranger}/index.html") as visit:
        visit.page.get_by_role("button", name="Acme help", exact=True).click()
        refused = visit.wait_for_event("error")["detail"]
        assert refused["code"] == "origin_refused"
        assert sites.stranger in refused["message"]
        alert = visit.widget().get_by_role("alert")
        expect(alert).to_contain_text("not available on this site")
        expect(alert).to_contain_text(f"{sites.stranger} is not allowed to embed")
        err = visit.page.evaluate("wasmagent.ask('hello').then(() => null, (e) => e.code)")
        assert err == "origin_refused"
        assert not [u for u in visit.app_requests(sites.app) if "/pyodide/" in u or
                    "embed.html" in u], "a refused site never reaches the agent"
        _shot(visit.page, "refused")


def test_foreign_pages_framing_the_widget_directly_get_nothing(
    browser: Browser, sites: Sites
) -> None:
    with _visiting(browser, f"{sites.stranger}/evil.html") as visit:
        visit.page.wait_for_function("() => document.title === 'done'", timeout=WAIT_MS)
        replies = visit.page.evaluate("result.replies")
        assert [r["type"] for r in replies["gate"]] == ["refused"]
        assert replies["agent"] == [], "the browser refuses embed.html (frame-ancestors)"
        assert any("violates the following Content Security Policy directive: "
                   "\"frame-ancestors 'self' " + sites.host in line for line in visit.console)
        assert not [f for f in visit.page.frames if f.url.endswith("/embed.html")]
        assert not [u for u in visit.requests if "/pyodide/" in u]


def test_an_allowed_page_inside_a_foreign_site_is_refused_too(
    browser: Browser, sites: Sites
) -> None:
    with _visiting(browser, f"{sites.stranger}/framed.html") as visit:
        host = visit.page.frame_locator("#host")
        host.get_by_role("button", name="Acme help", exact=True).click()
        alert = host.frame_locator("wasmagent-widget iframe").get_by_role("alert")
        expect(alert).to_contain_text(f"{sites.stranger} is not allowed to embed")


def test_a_strict_csp_host_with_preloading_its_own_kb_and_a_broken_tools_file(
    browser: Browser, sites: Sites
) -> None:
    with _visiting(browser, f"{sites.host}/strict.html") as visit:
        page = visit.page
        page.evaluate("""() => { window.hostLog = {events: []};
            for (const type of ['ready', 'answer', 'error', 'open', 'close'])
                wasmagent.on(type, (detail) => hostLog.events.push({type, detail})); }""")
        # data-preload="idle": the agent boots in a hidden frame before anyone opens it.
        visit.wait_for_event("ready")
        assert any("/pyodide/pyodide.asm.wasm" in u for u in visit.requests)
        assert page.evaluate("wasmagent.isOpen") is False
        failed = next(e["detail"] for e in visit.events("error"))
        assert failed["code"] == "tools_load_failed"
        first = failed["message"].splitlines()[0]
        assert first == ("/broken_tools.py, line 7: NameError: name 'load_store_list' is not "
                         "defined")
        assert "STORES = load_store_list()" in failed["message"]
        assert any("line 7: NameError" in line for line in visit.console), "owners see it"
        page.get_by_role("button", name="Acme FAQ", exact=True).click()
        _model_settled(visit)
        notice = visit.widget().locator("#notice")
        expect(notice).to_contain_text("/broken_tools.py, line 7: NameError")
        reply = _ask_in_panel(visit, "how many days do I have to return a kettle?")
        expect(reply).to_contain_text("45 days")
        expect(reply.locator(".sources a").first).to_have_attribute("title", "faq.md#returns")
        assert page.evaluate("wasmagent.ask('what is 6 * 7')")["text"] == "6 * 7 = 42"
        launcher = page.get_by_role("button", name="Acme FAQ", exact=True).bounding_box()
        assert launcher is not None
        assert launcher["x"] < 100, "data-position=bottom-left"
        color = page.evaluate("""getComputedStyle(document.querySelector('wasmagent-widget')
            .shadowRoot.querySelector('.head')).backgroundColor""")
        assert color == "rgb(11, 107, 58)", "data-accent"
        assert not [c for c in visit.console if "Content Security Policy" in c]
        assert visit.errors == []
        _shot(page, "strict-open")


def test_a_cross_origin_isolated_host_can_embed_it(browser: Browser, sites: Sites) -> None:
    with _visiting(browser, f"{sites.host}/isolated.html") as visit:
        page = visit.page
        assert page.evaluate("crossOriginIsolated") is True
        page.evaluate("""() => { window.hostLog = {events: []};
            wasmagent.on('error', (detail) => hostLog.events.push({type: 'error', detail})); }""")
        answer = page.evaluate("wasmagent.ask('what is 2^10')")
        assert answer["text"] == "2^10 = 1024"
        # Its data-kb names a knowledge base the app does not ship, and its data-server an
        # unencrypted address on another computer: each said once, clearly; answers go on here.
        visit.page.wait_for_function("() => hostLog.events.length >= 2", timeout=BOOT_TIMEOUT_MS)
        errors = {e["detail"]["code"]: e["detail"] for e in visit.events("error")}
        assert errors.keys() == {"not_found", "bad_message"}
        refused = errors["bad_message"]["message"]
        assert refused.startswith('data-server="ws://agent.acme.example/v1/ws": ')
        assert "unencrypted ws:// address is allowed only to this computer" in refused
        assert page.evaluate("wasmagent.ask('what is 2^11')")["route"] == "tool"
        missing = errors["not_found"]
        assert missing["message"].startswith('data-kb="missing": ')
        assert "kb/missing.kv: HTTP 404" in missing["message"]
        assert visit.errors == []


def test_linked_to_the_owners_server_its_model_calls_the_owners_tool_in_the_visitors_browser(
    browser: Browser, sites: Sites, tmp_path: Path
) -> None:
    """data-server: the owner's agent server's model (a scripted upstream) decides to call the
    owner's `shipping` tool and the built-in calculator. The server only relays the model: the
    owner's code exists only in the visitor's browser, so its result can come from nowhere else."""
    fake = start_fake(tmp_path)
    server = None
    try:
        server = start_server(tmp_path, fake, "--allow-origin", sites.app)
        page_file = sites.pages / "server.html"
        page_file.write_text(page_file.read_text().replace("{{SERVER}}", server.ws_url))
        fake.control(script=["call:" + json.dumps([
            {"name": "shipping", "arguments": {"kilos": 2.5}},
            {"name": "calculator", "arguments": {"expression": "17 * 23"}}])])
        with _visiting(browser, f"{sites.host}/server.html") as visit:
            visit.page.get_by_role("button", name="Acme help", exact=True).click()
            ready = visit.wait_for_event("ready")["detail"]
            origin = f"ws://127.0.0.1:{server.port}"
            assert ready["server"] == origin
            assert ready["tools"] == ["opening_hours", "shipping"]
            panel = visit.widget()
            expect(panel.locator("#server-note")).to_contain_text(f"agent server {origin} (connected)")
            reply = _ask_in_panel(visit, "What would sending a parcel of two and a half kilos "
                                         "cost, and what is seventeen times twenty-three?")
            steps = reply.locator(".steps")
            expect(steps.locator("summary")).to_have_text("2 tool calls")
            expect(steps.locator("li").first).to_have_text(
                "shipping(2.5) → Shipping 2.5 kg costs 7.75 EUR.")
            expect(steps.locator("li").nth(1)).to_have_text("calculator(17 * 23) → 17 * 23 = 391")
            expect(reply.locator(".text")).to_contain_text(
                "The tools say: Shipping 2.5 kg costs 7.75 EUR.; 17 * 23 = 391")
            expect(reply.locator(".from")).to_have_text(f"Answer from the server {origin}")
            answer = visit.wait_for_event("answer")["detail"]
            assert answer["route"] == "llm"
            assert {c["source"] for c in answer["citations"]} >= {"tool:shipping", "tool:calculator"}
            steps.locator("summary").click()
            _shot(visit.page, "widget-server-tools")
            assert visit.errors == []
    finally:
        if server is not None:
            server.proc.stop()
        fake.stop()
