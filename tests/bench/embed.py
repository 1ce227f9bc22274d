"""MiniLM embedding speed: batch-1 latency and batch-16 throughput, natively and in Chromium.

Inputs: the 40 varied texts of tests/reference/minilm_reference.json (batch-1: each text in
turn; batch-16: 16 of them per call). Native: the Embedder on onnxruntime with 1 and 2 threads.
Browser: the same Embedder in the worker through the page's bridge (tokenisation, postMessage,
Python and onnxruntime-web included), served with COOP/COEP (2 threads) and without (1 thread).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from boot import serving, summary

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [i["text"] for i in json.loads(
    (ROOT / "tests/reference/minilm_reference.json").read_text())["items"]]


async def _native(threads: int, rounds: int) -> dict[str, Any]:
    from wasmagent.hosts.native import native_host
    from wasmagent.inference.embedder import Embedder
    from wasmagent.text.tokenizer import WordPieceTokenizer

    host = native_host(":memory:", threads=threads)
    assert host.inference is not None
    assert host.vocab is not None
    embedder = Embedder(host.inference, WordPieceTokenizer.from_vocab_text(host.vocab))
    await embedder.embed(TEXTS[:16])
    single: list[float] = []
    for _ in range(rounds):
        for text in TEXTS:
            t0 = time.perf_counter()
            await embedder.embed_one(text)
            single.append((time.perf_counter() - t0) * 1000)
    rates: list[float] = []
    for _ in range(rounds * 3):
        t0 = time.perf_counter()
        await embedder.embed(TEXTS[:16])
        rates.append(16 / (time.perf_counter() - t0))
    await embedder.aclose()
    return _shape(single, rates)


def _shape(single: list[float], rates: list[float]) -> dict[str, Any]:
    ordered = sorted(single)
    return {"batch1_ms": {**summary(single), "p95": round(ordered[int(len(ordered) * 0.95)], 1)},
            "batch16_per_s": summary(rates)}


BROWSER_JS = """async ([texts, rounds]) => {
    const c = window.wasmagentClient;
    await c.embed(texts.slice(0, 16));
    const single = [], rates = [];
    for (let r = 0; r < rounds; r++) for (const t of texts) {
        const t0 = performance.now(); await c.embed([t]); single.push(performance.now() - t0);
    }
    for (let r = 0; r < rounds * 3; r++) {
        const t0 = performance.now(); await c.embed(texts.slice(0, 16));
        rates.push(16 / ((performance.now() - t0) / 1000));
    }
    return {single, rates, threads: (await c.status()).threads};
}"""


def _browser(browser: Any, isolate: bool, rounds: int, threads: int) -> dict[str, Any]:
    with serving(ROOT / "dist", isolate=isolate) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base}?threads={threads}")
        page.wait_for_selector("body[data-ready=true]", state="attached", timeout=120_000)
        got = page.evaluate(BROWSER_JS, [TEXTS, rounds])
        context.close()
    return {**_shape(got["single"], got["rates"]), "threads": got["threads"]}


def run(ctx: Any) -> dict[str, Any]:
    rounds = ctx.repeats(5, 2)
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's loop
        native = {f"{t}_thread": pool.submit(asyncio.run, _native(t, rounds)).result()
                  for t in (1, 2)}
    browser = {"2_threads_isolated": _browser(ctx.browser, True, rounds, 2),
               "1_thread_isolated": _browser(ctx.browser, True, rounds, 1),
               "1_thread_not_isolated": _browser(ctx.browser, False, rounds, 1)}
    n2 = native["2_thread"]["batch16_per_s"]["median"]
    b2 = browser["2_threads_isolated"]["batch16_per_s"]["median"]
    return {"inputs": f"{len(TEXTS)} reference texts, {rounds} rounds", "native": native,
            "browser": browser, "browser_over_native_throughput": round(b2 / n2, 3),
            "median_tokens": statistics.median(len(t.split()) for t in TEXTS)}


def render(section: dict[str, Any]) -> list[str]:
    lines = ["## Embeddings (MiniLM int8)", "",
             f"Inputs: {section['inputs']}. Batch-1 is one `embed` call per text; batch-16 is "
             "16 texts per call. Browser figures go through the page's bridge into the worker "
             "(tokenising in Python, onnxruntime-web), so they include messaging.", "",
             "| where | batch-1 latency p50 (p95) | batch-16 throughput |", "|---|---|---|"]
    for name, row in [*(("native, " + k.replace("_", " "), v) for k, v in
                        section["native"].items()),
                      *(("Chromium, " + k.replace("_", " "), v) for k, v in
                        section["browser"].items())]:
        b1, b16 = row["batch1_ms"], row["batch16_per_s"]
        lines.append(f"| {name} | {b1['median']:.1f} ms ({b1['p95']:.1f}) | "
                     f"{b16['median']:.0f} texts/s ({b16['min']:.0f}–{b16['max']:.0f}) |")
    ratio = section["browser_over_native_throughput"]
    best_b1 = min(r["batch1_ms"]["median"] for r in section["browser"].values())
    lines += ["", f"- Browser throughput is **{ratio:.0%}** of native at 2 threads "
              f"(goal ≥ 30%: {'met' if ratio >= 0.3 else 'not met'}).",
              f"- Browser batch-1 latency {best_b1:.1f} ms (budget ≤ 25 ms: "
              f"{'met' if best_b1 <= 25 else 'not met'}).", ""]
    return lines
