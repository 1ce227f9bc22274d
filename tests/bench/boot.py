"""Boot time: how long until the app can answer, where that time goes, and the widget.

- The app, navigation to "ready to answer" (runtime, snapshot, storage, knowledge base; not the
  embedding model's session, which comes after it: keyword answers until then), and to the
  embedding model ready (hybrid search): cold
  (fresh browser context, empty HTTP cache) and warm (a second visit: HTTP cache and the
  service worker's precache), with a breakdown of the warm and cold boots from the worker's own
  clock (`self.bootTimings` in web/worker/worker.js) and Resource Timing.
- The widget on another site (no service worker there: HTTP cache only): open -> first answer,
  cold, warm (second visit), and warm with `data-preload="idle"` (the frame boots while the
  visitor reads the page; we open once it reported ready).
- A PyScript named worker versus a bare module worker (issue 2's rule), both loading the same
  Pyodide files and the wasmagent wheel through the lock, as site owners would.
All variants are run interleaved so machine drift hits them alike.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import statistics
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from playwright.sync_api import Browser, BrowserContext

from wasmagent.hosts.server.static import make_server

CHROME_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # as run.py launches the shared browser

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
PAGES = Path(__file__).resolve().parent / "pages"
SITE = ROOT / ".build" / "bench-site"


FROZEN = ROOT / ".build" / "bench-dist"


def frozen_dist() -> Path:
    """A private copy of dist/ for the whole section: a rebuild meanwhile (other work on the
    same tree) would otherwise swap the wheel, lock or snapshot under a running boot."""
    shutil.rmtree(FROZEN, ignore_errors=True)
    shutil.copytree(DIST, FROZEN)
    return FROZEN


def bench_site(dist: Path = DIST) -> Path:
    """dist/ plus the PyScript runtime and the bench pages, assembled with symlinks."""
    SITE.mkdir(parents=True, exist_ok=True)
    links = {p.name: p for p in dist.iterdir()}
    links |= {p.name: p for p in PAGES.iterdir()}
    links["pyscript"] = ROOT / "node_modules/@pyscript/core/dist"
    tjs = ROOT / "node_modules/@huggingface/transformers"
    links["tjs"] = tjs / "dist"
    links["tjs-ort"] = tjs / "node_modules/onnxruntime-web/dist"
    _tjs_model(SITE.parent / "tjs-models")
    links["tjs-models"] = SITE.parent / "tjs-models"
    for name, target in links.items():
        link = SITE / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return SITE


def _tjs_model(root: Path) -> None:
    """Our exported MiniLM laid out as transformers.js expects a local model (q8 = int8)."""
    model = root / "minilm"
    (model / "onnx").mkdir(parents=True, exist_ok=True)
    src = ROOT / "models/all-minilm-l6-v2"
    files = {name: src / name for name in ("config.json", "tokenizer.json",
                                           "tokenizer_config.json", "special_tokens_map.json")}
    files["onnx/model_quantized.onnx"] = src / "model.int8.onnx"
    for name, target in files.items():
        link = model / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)


@contextmanager
def serving(root: Path, *, isolate: bool) -> Iterator[str]:
    server = make_server(root, port=0, isolate=isolate, follow_symlinks=True)  # links into dist/
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def time_boot(browser: Browser, url: str, ready_js: str, timeout_ms: int = 60_000
              ) -> tuple[float, list[str]]:
    """Milliseconds from navigation to `ready_js` being truthy, and any foreign requests."""
    context = browser.new_context(bypass_csp=True)  # lets Playwright poll on the CSP page
    foreign: list[str] = []

    def record(request: Any) -> None:
        host = urlparse(request.url).hostname
        if urlparse(request.url).scheme in ("http", "https") and host not in ("127.0.0.1",):
            foreign.append(request.url)

    context.on("request", record)
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function(ready_js, timeout=timeout_ms)
        ms = float(page.evaluate(ready_js))
    finally:
        context.close()
    return ms, foreign


def time_warm_boot(browser: Browser, url: str, ready_js: str, *, app: bool,
                   timeout_ms: int = 60_000) -> float:
    """Milliseconds from navigation to ready on a second visit: HTTP cache, and for the app
    its service worker's precache (installed during the first visit)."""
    return app_boots(browser, url, ready_js, timeout_ms=timeout_ms, app=app)[1][0]


# Spans of one boot on the page's clock (ms since navigation), from what the worker recorded.
BOOT_STEPS = """(w) => {
  const t = self.bootTimings, off = t.origin - w, span = (s) => s && [s.start + off, s.end + off];
  const files = performance.getEntriesByType('resource').filter((e) => e.name.includes('?v='));
  const wasm = Object.fromEntries(Object.entries(t.wasm).map(([k, s]) => [k, span(s)]));
  return {
    worker: [0, off],
    fetch: files.length ? [Math.min(...files.map((e) => e.startTime)) + off,
                           Math.max(...files.map((e) => e.responseEnd)) + off] : null,
    pyodide_wasm: wasm['pyodide/pyodide.asm.wasm'] || null,
    ort_wasm: wasm['ort/ort-wasm-simd-threaded.wasm'] || null,
    python: span(t.python), imports: span(t.imports) || null, model_fetch: span(t.modelFetch),
    model: span(t.model), agent: span(t.agent), ready: [0, t.ready + off],
    hybrid: t.modelSettled ? [0, Math.max(t.ready, t.modelSettled) + off] : null, snapshot: t.snapshot,
  };
}"""


MODEL_SETTLED = ("window.wasmagentClient && "
                 "window.wasmagentClient.bootLog.some(e => e.stage === 'model')")
"""The worker announced the embedding model ready (or failed), after "ready"."""


def boot_steps(page: Any) -> dict[str, Any]:
    origin = page.evaluate("performance.timeOrigin")
    steps: dict[str, Any] = page.workers[0].evaluate(BOOT_STEPS, origin)
    return steps


def app_boots(browser: Browser, url: str, ready_js: str, *, timeout_ms: int = 60_000,
              app: bool = True) -> tuple[tuple[float, dict[str, Any]], tuple[float, dict[str, Any]]]:
    """A first visit and a second one in the same context: (ms, steps) for each. The second
    waits for the first visit's service worker to control the page (its precache is complete
    by then: a worker activates only after installing). The app's steps are read once its
    embedding model has settled too (it comes after "ready": `hybrid`)."""
    context = browser.new_context(bypass_csp=True)  # lets Playwright poll on the CSP page
    page = context.new_page()

    def visit() -> tuple[float, dict[str, Any]]:
        page.wait_for_function(ready_js, timeout=timeout_ms)
        ms = float(page.evaluate(ready_js))
        if not app:
            return ms, {}
        page.wait_for_function(MODEL_SETTLED, timeout=timeout_ms)
        return ms, boot_steps(page)

    try:
        page.goto(url)
        cold = visit()
        if app:
            page.wait_for_function("navigator.serviceWorker.controller !== null",
                                   timeout=timeout_ms)
        page.reload()
        return cold, visit()
    finally:
        context.close()


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 1), "min": round(min(samples), 1),
            "max": round(max(samples), 1), "n": len(samples)}


def step_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per step, the median start and end over runs (steps a run lacks are left out)."""
    out: dict[str, Any] = {}
    for name in runs[0]:
        spans = [r[name] for r in runs if isinstance(r.get(name), list)]
        if spans:
            out[name] = [round(statistics.median(s[0] for s in spans)),
                         round(statistics.median(s[1] for s in spans))]
    out["snapshot_runs"] = sum(1 for r in runs if r.get("snapshot"))
    out["n"] = len(runs)
    return out


# -- the widget on another site --------------------------------------------------------------

HOST_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>host</title>
<script src="{app}widget.js" data-kb="default" data-title="Help"{preload} defer></script>
</head><body><h1>A host site</h1><p>It embeds the assistant with one script tag.</p></body></html>
"""
QUESTION = "which embedding model is used?"
OPEN_AND_ASK = """async (question) => {
  const t0 = performance.now();
  wasmagent.open();
  const answer = await wasmagent.ask(question);
  if (!answer.citations.length) throw new Error('no cited answer: ' + answer.text);
  return { ms: performance.now() - t0, opened: performance.timeOrigin + t0 };
}"""
FRAME_READY = """() => new Promise((done) => {
  if (wasmagent.state === 'ready') return done(true);
  wasmagent.on('ready', () => done(true));
})"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def widget_sites(root: Path) -> Iterator[tuple[str, str]]:
    """The app (DIST) on 127.0.0.1 allowing one host site on localhost (another site, as on
    the web): yields the host's URLs of a page without and with data-preload="idle"."""
    pages = SITE.parent / "widget-host"
    pages.mkdir(parents=True, exist_ok=True)
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                           functools.partial(_Quiet, directory=str(pages)))
    host_origin = f"http://localhost:{host.server_address[1]}"
    app = make_server(root, port=0, embed_origins=[host_origin])
    app_url = f"http://127.0.0.1:{app.server_address[1]}/"
    (pages / "open.html").write_text(HOST_PAGE.format(app=app_url, preload=""))
    (pages / "idle.html").write_text(HOST_PAGE.format(app=app_url, preload=' data-preload="idle"'))
    servers = [host, app]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{host_origin}/open.html", f"{host_origin}/idle.html"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


Visit = tuple[float, dict[str, Any]]
"""Open -> first cited answer (ms), and the frame's boot steps in ms since the opening."""


def widget_visits(browser: Browser, url: str, *, preload: bool,
                  timeout_ms: int = 120_000) -> tuple[Visit, Visit]:
    """A first and a second visit, in a browser profile of its own: a visitor's HTTP cache is
    on disk, while a plain Playwright context keeps an in-memory cache that does not store the
    18 MB model at all (measured: refetched on every visit)."""
    with tempfile.TemporaryDirectory(prefix="wasmagent-profile-") as profile:
        context = browser.browser_type.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", args=CHROME_ARGS)
        return _open_twice(context, url, preload=preload, timeout_ms=timeout_ms)


def _open_twice(context: BrowserContext, url: str, *, preload: bool,
                timeout_ms: int) -> tuple[Visit, Visit]:
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    visits = []
    try:
        for visit in range(2):
            if visit:
                page.reload()
            else:
                page.goto(url)
            page.wait_for_function("window.wasmagent !== undefined")
            if preload:
                page.evaluate(FRAME_READY)
            opened = page.evaluate(OPEN_AND_ASK, QUESTION)
            # The frame's worker is the newest (the previous visit's may still be listed).
            steps = page.workers[-1].evaluate(BOOT_STEPS, opened["opened"])
            steps["answer"] = [0, opened["ms"]]
            visits.append((float(opened["ms"]), steps))
        return visits[0], visits[1]
    finally:
        context.close()


def run_widget(browser: Browser, repeats: int, dist: Path = DIST) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"cold": [], "warm": [], "warm_preloaded": []}
    steps: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
    with widget_sites(dist) as (open_url, idle_url):
        for _ in range(repeats):
            (cold, cold_steps), (warm, warm_steps) = widget_visits(browser, open_url,
                                                                   preload=False)
            samples["cold"].append(cold)
            samples["warm"].append(warm)
            steps["cold"].append(cold_steps)
            steps["warm"].append(warm_steps)
            samples["warm_preloaded"].append(widget_visits(browser, idle_url, preload=True)[1][0])
    return {**{name: summary(v) for name, v in samples.items()},
            "steps": {k: step_medians(v) for k, v in steps.items()}}


def run(browser: Browser, repeats: int) -> dict[str, Any]:
    """Interleave the variants (A B A B ...) so machine drift hits both alike."""
    dist = frozen_dist()
    site = bench_site(dist)
    variants = {
        "module_worker": ("module-worker.html", "window.bootResult && window.bootResult.ms"),
        "pyscript_worker": ("pyscript.html", "window.bootResult && window.bootResult.ms"),
    }
    app_ready = ("window.wasmagentClient && "
                 "(window.wasmagentClient.bootLog.find(e => e.stage === 'ready') || {}).at")
    results: dict[str, Any] = {}
    for isolate in (True, False):
        label = "isolated" if isolate else "not_isolated"
        samples: dict[str, list[float]] = {k: [] for k in (*variants, "app_ready")}
        warm: dict[str, list[float]] = {"module_worker": [], "app_ready": [],
                                        "app_model_ready": []}
        model_ready: list[float] = []
        steps: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
        foreign: dict[str, set[str]] = {k: set() for k in variants}
        with serving(site, isolate=isolate) as base:
            for _ in range(repeats):
                for name, (page, ready) in variants.items():
                    ms, extra = time_boot(browser, base + page, ready)
                    samples[name].append(ms)
                    foreign[name].update(extra)
                (cold_ms, cold_steps), (warm_ms, warm_steps) = app_boots(
                    browser, base + "index.html", app_ready)
                samples["app_ready"].append(cold_ms)
                warm["app_ready"].append(warm_ms)
                model_ready.append(cold_steps["hybrid"][1])
                warm["app_model_ready"].append(warm_steps["hybrid"][1])
                steps["cold"].append(cold_steps)
                steps["warm"].append(warm_steps)
                page, ready = variants["module_worker"]
                warm["module_worker"].append(time_warm_boot(browser, base + page, ready,
                                                            app=False))
        results[label] = {name: summary(samples[name]) for name in samples}
        results[label]["app_model_ready"] = summary(model_ready)
        for name in variants:
            results[label][name]["foreign_requests"] = sorted(foreign[name])
        mw, ps = (results[label][k]["median"] for k in ("module_worker", "pyscript_worker"))
        results[label]["pyscript_over_module_worker"] = round(ps / mw, 3)
        results[label]["warm"] = {name: summary(v) for name, v in warm.items()}
        results[label]["steps"] = {k: step_medians(v) for k, v in steps.items()}
    results["widget"] = run_widget(browser, repeats, dist)
    return results
