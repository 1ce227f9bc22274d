"""The browser computes the same MiniLM embeddings as native onnxruntime and PyTorch."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.vectors import cosine
from wasmagent.hosts.native import MINILM_ENV, native_host
from wasmagent.inference.embedder import Embedder
from wasmagent.text.tokenizer import WordPieceTokenizer

from .conftest import Booted

REFERENCE = json.loads(
    (Path(__file__).resolve().parents[1] / "reference/minilm_reference.json").read_text())


def _native(texts: list[str]) -> tuple[str, list[list[float]]]:
    async def run() -> tuple[str, list[list[float]]]:
        host = native_host(":memory:")
        assert host.inference is not None
        assert host.vocab is not None
        embedder = Embedder(host.inference, WordPieceTokenizer.from_vocab_text(host.vocab))
        # One text per call, as in the browser below: int8 outputs depend on batch makeup.
        out = [list(await embedder.embed_one(t)) for t in texts]
        await embedder.aclose()
        return str((host.info or {}).get("minilm")), out

    # Playwright's sync API keeps an event loop running in this thread: use another one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def test_browser_embeddings_match_native_and_pytorch(app: Booted,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [item["text"] for item in REFERENCE["items"]]
    reference = [item["embedding"] for item in REFERENCE["items"]]
    browser = app.page.evaluate("""async (texts) => {
        const out = [];
        for (const t of texts) out.push((await wasmagentClient.embed([t]))[0]);
        return out;
    }""", texts)
    assert len(browser) == len(texts)
    assert all(len(v) == 384 for v in browser)
    hosts = {"browser": browser}
    # The weights this CPU gets (int8 where onnxruntime's u8s8 kernels are exact, else uint8),
    # and the uint8 file, which every CPU can run (on VNNI machines it is the slower choice).
    weights, hosts["native"] = _native(texts)
    monkeypatch.setenv(MINILM_ENV, "uint8")
    _, hosts["native uint8"] = _native(texts)

    # What users need from each host: close to fp32 PyTorch (sentence-transformers) on every
    # reference text. Under qemu -cpu Haswell (AVX2 only) the int8 file gave min 0.9515.
    for name, vectors in hosts.items():
        cosines = [cosine(v, r) for v, r in zip(vectors, reference, strict=True)]
        worst = min(range(len(texts)), key=lambda i: cosines[i])
        assert cosines[worst] >= 0.97, (name, weights, texts[worst], cosines[worst])
        assert sum(cosines) / len(cosines) >= 0.985, (name, weights)

    # Browser vs native: the knowledge base in dist/ is embedded natively at build time and
    # searched with queries the browser embeds, so a browser query must score chunks as a native
    # one would. The bounds above do not ensure that: each host within acos(0.97) = 14 degrees of
    # PyTorch only puts them within 28 degrees (cosine 2 * 0.97^2 - 1 = 0.88) of each other, by
    # the triangle inequality on angles. What ranking needs is that switching host cost no more
    # than quantisation is allowed to cost, so the same bar applies between the hosts: every
    # text >= 0.97, mean >= 0.985. (The saturation bug, worst 0.9605, fails it.) It holds with a
    # wide margin on every CPU by construction, not by one machine's luck: both hosts run the
    # same int8 weights through the same integer arithmetic, exact int32 sums everywhere (the
    # native host never picks a saturating kernel, see app/wasmagent/hosts/native.py), so they
    # differ only where float rounding in the other ops (LayerNorm, GELU, softmax, scales; FMA or
    # not) tips an activation across a uint8 rounding boundary. Measured over these 40 texts:
    # worst 0.9964, mean 0.99985, 38 texts identical with AVX512-VNNI (int8 or uint8); worst
    # 0.9941, mean 0.9997, 37 identical with uint8 under qemu -cpu Haswell (AVX2 only), where
    # the int8 file gave worst 0.9605, mean 0.9867, none identical (tests/unit/test_native_cpu.py).
    for name in ("native", "native uint8"):
        agree = [cosine(b, n) for b, n in zip(browser, hosts[name], strict=True)]
        worst = min(range(len(texts)), key=lambda i: agree[i])
        assert agree[worst] >= 0.97, (name, weights, texts[worst], sorted(agree)[:5])
        assert sum(agree) / len(agree) >= 0.985, (name, weights, sorted(agree)[:5])


def test_the_intent_head_runs_in_the_browser(app: Booted) -> None:
    routes = app.page.evaluate("""async () => {
        const out = {};
        for (const q of ['write me a poem about the sea', 'nice to meet you, who made you'])
            out[q] = (await wasmagentClient.ask(q)).answer.route;
        return out;
    }""")
    assert routes == {"write me a poem about the sea": "canned",
                      "nice to meet you, who made you": "canned"}
