"""The opt-in local model in Chromium: SmolLM2-135M Q4_1 in wllama, at 1 and 2 threads.

Each run opens a fresh cross-origin isolated page of dist/ (same origin as the app, so the same
wllama files and GGUF), loads the model from a Blob as the app does from Cache Storage, warms it
with one token as the app does, then answers one grounded question with the app's prompt
shape (system prompt + 2 passages of 400 characters): load time, time to first token, and
wllama's own prompt and decode speeds. Answer quality against extractive answers is the
`local_quality` section (local_quality.py), which reuses this module's page scripts.
"""

from __future__ import annotations

import statistics
from typing import Any

from boot import DIST, serving

from wasmagent.llm.wire import build_messages
from wasmagent.protocol import PassageIn

LOAD = """async (threads) => {
  const { Wllama } = await import('/wllama/index.js');
  const w = new Wllama({default: new URL('/wllama/wllama.wasm', location.href).href},
                       {suppressNativeLog: true});
  const blob = await (await fetch('/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf')).blob();
  const t0 = performance.now();
  await w.loadModel([blob], {n_ctx: 2048, n_threads: threads});
  await w.createChatCompletion({messages: [{role: 'user', content: 'Hi'}], max_tokens: 1});
  self.benchWllama = w;
  return {load_ms: performance.now() - t0, threads: w.getNumThreads()};
}"""
"""Loads the model as llm-host.js does (n_ctx 2048, a 1-token warm-up) and keeps it in the page."""

GENERATE = """async ([messages, maxTokens]) => {
  const t0 = performance.now();
  let first = null, timings = null, text = '';
  const pieces = [];
  const chunks = await self.benchWllama.createChatCompletion({stream: true,
    max_tokens: maxTokens, temperature: 0, messages});
  for await (const c of chunks) {
    if (c.timings) timings = c.timings;
    const d = c.choices?.[0]?.delta?.content;
    if (d) { first ??= performance.now() - t0; text += d; pieces.push(d); }
  }
  return {first_token_ms: first, ms: performance.now() - t0, text, pieces,
          prompt_tokens: timings?.prompt_n, prompt_tps: timings?.prompt_per_second,
          decode_tokens: timings?.predicted_n, decode_tps: timings?.predicted_per_second};
}"""
"""One greedy, streamed answer as llm-host.js's `generate` asks for it."""

EXIT = "self.benchWllama.exit()"

PASSAGE = ("The embeddings come from sentence-transformers/all-MiniLM-L6-v2, exported to ONNX "
           "with opset 17 and quantized to int8 per channel: 23 MB, cosine to PyTorch 0.991 on "
           "average. The browser runs it in onnxruntime-web's wasm build; the native host in "
           "onnxruntime. Its tokenizer is a pure-Python BERT WordPiece over vocab.txt.")[:400]


def _messages() -> tuple[str, str]:
    passages = [PassageIn("models/MODEL_CARD.md", "all-MiniLM-L6-v2", "", PASSAGE),
                PassageIn("README.md", "Performance", "", PASSAGE[::-1][:400])]
    system, user = build_messages("Which embedding model does wasmagent use?", passages)
    return system["content"], user["content"]


def run(ctx: Any) -> dict[str, Any]:
    system, user = _messages()
    out: dict[str, Any] = {"runs": {}}
    with serving(DIST, isolate=True) as url:
        for threads in (1, 2):
            samples = []
            for _ in range(ctx.repeats(2, 1)):
                page = ctx.browser.new_page()
                try:
                    page.goto(url + "models/smollm2/model.json")
                    loaded = page.evaluate(LOAD, threads)
                    messages = [{"role": "system", "content": system},
                                {"role": "user", "content": user}]
                    answer = page.evaluate(GENERATE, [messages, 64])
                    answer.pop("pieces")
                    page.evaluate(EXIT)
                    samples.append({**loaded, **answer})
                finally:
                    page.close()
            out["runs"][str(threads)] = samples
    return out


def _median(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(s[key] or 0) for s in samples)


def render(section: dict[str, Any]) -> list[str]:
    lines = ["## Local model: SmolLM2-135M Q4_1 in wllama (Chromium)", "",
             "Opt-in generation (Knowledge → Model). One grounded question with the app's prompt "
             "shape (system prompt, 2 passages of 400 characters), greedy, at most 64 tokens; "
             "load includes a 1-token warm-up. Medians over the runs. The 2-core box is shared: "
             "2 threads compete with everything else running.", "",
             "| threads | load | first token | prompt | decode | runs |", "|---|---|---|---|---|---|"]
    for threads, samples in section["runs"].items():
        lines.append(
            f"| {threads} | {_median(samples, 'load_ms') / 1000:.1f} s "
            f"| {_median(samples, 'first_token_ms') / 1000:.1f} s "
            f"| {_median(samples, 'prompt_tps'):.1f} tok/s "
            f"({_median(samples, 'prompt_tokens'):.0f} tokens) "
            f"| {_median(samples, 'decode_tps'):.1f} tok/s | {len(samples)} |")
    # (The sample answer stays in bench-results.json, not here: BENCHMARKS.md is part of the
    # app's own knowledge base, and a 135M model's loose sentences would be quoted as facts.)
    lines += ["",
              "Answer quality against extractive answers: section \"Local model vs "
              "extractive: answer quality\".", ""]
    return lines
