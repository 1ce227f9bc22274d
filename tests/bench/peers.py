"""wasmagent against transformers.js, in the same headless Chromium, same model, same texts.

Both run our exported int8 MiniLM in a module worker driven from a page over postMessage:
wasmagent through its bridge (`embed`: Python tokenizer, micro-batcher with length buckets,
onnxruntime-web 1.30), transformers.js 4.3.1 from npm with `env.allowRemoteModels = false`
(its own tokenizer over the model's tokenizer.json, its bundled onnxruntime-web). Runs are
interleaved A B A B so machine drift hits both alike.
- throughput: 1,000 real documentation chunks (from the Python docs knowledge base), sent in
  calls of 32 texts;
- latency: one question per call, p50/p95 over the 44 evaluation questions.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from pathlib import Path
from typing import Any

import quality
from boot import bench_site, serving, summary

import e2e

ROOT = Path(__file__).resolve().parents[2]

THROUGHPUT_JS = """async ([fn, texts]) => {
    const t0 = performance.now();
    for (let i = 0; i < texts.length; i += 32) await fn(texts.slice(i, i + 32));
    return texts.length / ((performance.now() - t0) / 1000);
}"""
LATENCY_JS = """async ([fn, questions]) => {
    const out = [];
    for (const q of questions) { const t = performance.now(); await fn([q]); out.push(performance.now() - t); }
    return out;
}"""
FNS = {"wasmagent": "(t) => window.wasmagentClient.embed(t)", "transformers_js": "(t) => window.tjsEmbed(t)"}


def chunk_texts(n: int, quick: bool) -> list[str]:
    """`n` real chunks spread over the Python docs knowledge base (built by the e2e section,
    which runs first)."""
    con = sqlite3.connect(e2e.kb_cache(quick))
    texts: list[str] = []
    for (value,) in con.execute("SELECT value FROM kv WHERE key LIKE 'kb/pydocs/seg/%/chunks'"):
        for chunk in json.loads(value):
            heading = chunk["heading"] if chunk["heading"] != chunk["title"] else ""
            texts.append(f"{chunk['title']}: {heading}\n{chunk['text']}")
    con.close()
    step = max(1, len(texts) // n)
    return texts[::step][:n]


def _call(page: Any, js: str, name: str, data: list[str]) -> Any:
    return page.evaluate(f"async (d) => ({js})([{FNS[name]}, d])", data)


def run(ctx: Any) -> dict[str, Any]:
    site = bench_site()
    texts = chunk_texts(1000 if not ctx.quick else 300, ctx.quick)
    questions = [q["q"] for q in quality.questions()]
    rounds = ctx.repeats(3, 1)
    rates: dict[str, list[float]] = {"wasmagent": [], "transformers_js": []}
    latency: dict[str, list[float]] = {"wasmagent": [], "transformers_js": []}
    with serving(site, isolate=True) as base:
        # No service worker: the app's would answer /tjs.html with the app shell.
        context = ctx.browser.new_context(service_workers="block")
        ours = context.new_page()
        ours.goto(base + "?threads=2")  # transformers.js uses 2 threads when isolated too
        ours.wait_for_selector("body[data-ready=true]", state="attached", timeout=120_000)
        peer = context.new_page()
        peer.goto(base + "tjs.html")
        peer.wait_for_function("window.tjsReady !== undefined", timeout=60_000)
        peer.evaluate("window.tjsReady")
        pages = {"wasmagent": ours, "transformers_js": peer}
        for name, page in pages.items():  # warm-up
            _call(page, THROUGHPUT_JS, name, texts[:64])
        for _ in range(rounds):
            for name, page in pages.items():
                rates[name].append(_call(page, THROUGHPUT_JS, name, texts))
                latency[name].extend(_call(page, LATENCY_JS, name, questions))
        context.close()

    def lat(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"p50": round(statistics.median(values), 1),
                "p95": round(ordered[int(len(ordered) * 0.95)], 1)}

    result: dict[str, Any] = {
        "inputs": f"{len(texts)} documentation chunks in calls of 32; {len(questions)} questions",
        "throughput_per_s": {k: summary(v) for k, v in rates.items()},
        "latency_ms": {k: lat(v) for k, v in latency.items()},
    }
    result["throughput_ratio"] = round(result["throughput_per_s"]["wasmagent"]["median"]
                                       / result["throughput_per_s"]["transformers_js"]["median"], 2)
    return result


def render(section: dict[str, Any]) -> list[str]:
    t, lat = section["throughput_per_s"], section["latency_ms"]
    ratio = section["throughput_ratio"]
    better = lat["wasmagent"]["p50"] < lat["transformers_js"]["p50"]
    return ["## Peer: transformers.js (same model, same texts, same Chromium)", "",
            f"Inputs: {section['inputs']}. Interleaved runs, served with COOP/COEP (2 threads).",
            "", "| | wasmagent | transformers.js 4.3.1 | ratio |", "|---|---|---|---|",
            f"| throughput | {t['wasmagent']['median']:.0f} chunks/s | "
            f"{t['transformers_js']['median']:.0f} chunks/s | {ratio:.2f}× |",
            f"| query latency p50 | {lat['wasmagent']['p50']:.1f} ms | "
            f"{lat['transformers_js']['p50']:.1f} ms | |",
            f"| query latency p95 | {lat['wasmagent']['p95']:.1f} ms | "
            f"{lat['transformers_js']['p95']:.1f} ms | |", "",
            f"Goal: ≥ 1.5× transformers.js throughput ({'met' if ratio >= 1.5 else 'not met'}) "
            f"and lower latency ({'met' if better else 'not met'}).", ""]
