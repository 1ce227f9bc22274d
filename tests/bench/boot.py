"""Boot time: a PyScript named worker versus a bare module worker, and plain Pyodide vs the app.

Both worker variants boot the same Pyodide files and the same wasmagent wheel from dist/, then
report "Python ready with wasmagent imported" over a BroadcastChannel; we time navigation to that
message in fresh browser contexts (cold: empty HTTP cache), with and without COOP/COEP, and record
every non-localhost request either makes.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from playwright.sync_api import Browser

from wasmagent.server.static import make_server

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
PAGES = Path(__file__).resolve().parent / "pages"
SITE = ROOT / ".build" / "bench-site"


def bench_site() -> Path:
    """dist/ plus the PyScript runtime and the bench pages, assembled with symlinks."""
    SITE.mkdir(parents=True, exist_ok=True)
    links = {p.name: p for p in DIST.iterdir()}
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
    context = browser.new_context(bypass_csp=True)  # lets Playwright poll on the CSP page
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function(ready_js, timeout=timeout_ms)
        if app:
            page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=timeout_ms)
            page.evaluate("navigator.serviceWorker.ready.then(() => true)")
            page.wait_for_timeout(2000)  # let the precache finish writing
        page.reload()
        page.wait_for_function(ready_js, timeout=timeout_ms)
        return float(page.evaluate(ready_js))
    finally:
        context.close()


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 1), "min": round(min(samples), 1),
            "max": round(max(samples), 1), "n": len(samples)}


def run(browser: Browser, repeats: int) -> dict[str, Any]:
    """Interleave the variants (A B A B ...) so machine drift hits both alike."""
    site = bench_site()
    variants = {
        "module_worker": ("module-worker.html", "window.bootResult && window.bootResult.ms"),
        "pyscript_worker": ("pyscript.html", "window.bootResult && window.bootResult.ms"),
        # The whole app: runtime, package, model session, IndexedDB, agent ready to answer.
        "app_ready": ("index.html", "window.wasmagentClient && "
                      "(window.wasmagentClient.bootLog.find(e => e.stage === 'ready') || {}).at"),
    }
    results: dict[str, Any] = {}
    for isolate in (True, False):
        label = "isolated" if isolate else "not_isolated"
        samples: dict[str, list[float]] = {k: [] for k in variants}
        foreign: dict[str, set[str]] = {k: set() for k in variants}
        with serving(site, isolate=isolate) as base:
            for _ in range(repeats):
                for name, (page, ready) in variants.items():
                    ms, extra = time_boot(browser, base + page, ready)
                    samples[name].append(ms)
                    foreign[name].update(extra)
        results[label] = {
            name: {**summary(samples[name]), "foreign_requests": sorted(foreign[name])}
            for name in variants
        }
        mw, ps = (results[label][k]["median"] for k in ("module_worker", "pyscript_worker"))
        results[label]["pyscript_over_module_worker"] = round(ps / mw, 3)
        with serving(site, isolate=isolate) as base:
            warm: dict[str, list[float]] = {"module_worker": [], "app_ready": []}
            for _ in range(repeats):
                for name, samples_of in warm.items():
                    page, ready = variants[name]
                    samples_of.append(time_warm_boot(browser, base + page, ready,
                                                     app=name == "app_ready"))
        results[label]["warm"] = {name: summary(v) for name, v in warm.items()}
    return results
