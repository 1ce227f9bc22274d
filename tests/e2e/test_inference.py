"""The browser computes the same MiniLM embeddings as native onnxruntime and PyTorch."""

from __future__ import annotations

import asyncio
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wasmagent.hosts.native import native_host
from wasmagent.inference.embedder import Embedder
from wasmagent.text.tokenizer import WordPieceTokenizer

from .conftest import Booted

REFERENCE = json.loads(
    (Path(__file__).resolve().parents[1] / "reference/minilm_reference.json").read_text())


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _native(texts: list[str]) -> list[list[float]]:
    async def run() -> list[list[float]]:
        host = native_host(":memory:")
        assert host.inference is not None
        assert host.vocab is not None
        embedder = Embedder(host.inference, WordPieceTokenizer.from_vocab_text(host.vocab))
        # One text per call, as in the browser below: int8 outputs depend on batch makeup.
        out = [list(await embedder.embed_one(t)) for t in texts]
        await embedder.aclose()
        return out

    # Playwright's sync API keeps an event loop running in this thread: use another one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def test_browser_embeddings_match_native_and_pytorch(app: Booted) -> None:
    texts = [item["text"] for item in REFERENCE["items"]]
    browser = app.page.evaluate("""async (texts) => {
        const out = [];
        for (const t of texts) out.push((await wasmagentClient.embed([t]))[0]);
        return out;
    }""", texts)
    native = _native(texts)
    assert len(browser) == len(texts)
    assert all(len(v) == 384 for v in browser)
    browser_vs_native = [_cos(b, n) for b, n in zip(browser, native, strict=True)]
    # Same ids in, same graph: most texts agree to 1e-9. A few inputs land on int8 rounding
    # boundaries where x86 onnxruntime and the wasm kernels round differently (measured: 2 of
    # 40 texts, worst cosine 0.9964; quantising with 7-bit weights removes the gap but costs
    # accuracy against PyTorch, see models/MODEL_CARD.md). This pins today's behaviour.
    worst = min(range(len(texts)), key=lambda i: browser_vs_native[i])
    assert browser_vs_native[worst] >= 0.995, (texts[worst], sorted(browser_vs_native)[:5])
    identical = sum(c >= 0.99999 for c in browser_vs_native)
    assert identical >= 0.9 * len(texts), sorted(browser_vs_native)[:5]
    reference = [item["embedding"] for item in REFERENCE["items"]]
    for vectors in (browser, native):
        cosines = [_cos(v, r) for v, r in zip(vectors, reference, strict=True)]
        assert min(cosines) >= 0.97, min(cosines)
        assert sum(cosines) / len(cosines) >= 0.985


def test_the_intent_head_runs_in_the_browser(app: Booted) -> None:
    routes = app.page.evaluate("""async () => {
        const out = {};
        for (const q of ['write me a poem about the sea', 'nice to meet you, who made you'])
            out[q] = (await wasmagentClient.ask(q)).answer.route;
        return out;
    }""")
    assert routes == {"write me a poem about the sea": "canned",
                      "nice to meet you, who made you": "canned"}
