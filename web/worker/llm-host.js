// The local generative model: SmolLM2-135M-Instruct (GGUF) run by wllama (llama.cpp in wasm).
//
// Two halves share the file so that they agree on where the model lives:
// - the page installs and removes it (installModel/removeModel/modelInstalled): a byte-counted
//   download kept in Cache Storage, verified against the build's sha256 before it is stored in
//   one `cache.put`, so a failure (network, cancel, full quota) never leaves half a model;
// - the Pyodide worker runs it (createLlmHost): wllama decodes in its own worker, so a long
//   answer never blocks Python; `generate()` hands out a token stream that Python pulls piece
//   by piece and aborts by `close()` (wllama checks the abort signal between tokens).
// Page and workers learn of installs, removals and load states over one BroadcastChannel.

const base = new URL("../", import.meta.url); // the app root
const MANIFEST = new URL("models/smollm2/model.json", base);
const CACHE = "wasmagent-models";
export const CHANNEL = "wasmagent-model";

async function manifest() {
  const response = await fetch(MANIFEST);
  if (!response.ok) throw new Error(`the model manifest is missing (${response.status})`);
  const found = await response.json();
  return { ...found, url: new URL(found.path, base).href };
}

async function cachedResponse() {
  const { url } = await manifest();
  return (await caches.open(CACHE)).match(url);
}

export async function modelInstalled() {
  return Boolean(await cachedResponse());
}

// Whether this page may keep the model: a frame on another site in a browser that blocks
// third-party storage (private windows, strict settings) gets no Cache Storage at all. There
// the model can still be used for the visit (installModel({keep: false})), never stored.
export async function canStore() {
  try {
    await caches.open(CACHE);
    return true;
  } catch {
    return false;
  }
}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class ModelError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// Downloads and stores the model; `onProgress(received, total)`; `signal` cancels. With
// `keep: false` nothing is stored: the verified bytes go straight to the workers for this visit.
// Throws ModelError with code "cancelled", "quota", "download" or "integrity".
export async function installModel({ onProgress = () => {}, signal, keep = true } = {}) {
  const info = await manifest();
  // Where the estimate is real (Firefox) a full quota is refused before downloading. Chromium
  // reports usage + 10 GiB whatever the quota (tests/e2e/test_local_model_quota.py): there the
  // refusal comes from `cache.put` below, after the download, and nothing is stored either.
  const estimate = keep ? await navigator.storage?.estimate?.() : null;
  if (estimate && estimate.quota - estimate.usage < info.bytes) {
    const free = Math.max(0, (estimate.quota - estimate.usage) / 1048576).toFixed(0);
    throw new ModelError("quota", `not enough storage for the model: it needs ${(info.bytes / 1048576).toFixed(0)} MB, this browser allows ${free} MB more`);
  }
  await navigator.storage?.persist?.();
  const parts = [];
  let received = 0;
  try {
    const response = await fetch(info.url, { signal, cache: "no-store" });
    if (!response.ok) throw new ModelError("download", `the model download failed (HTTP ${response.status})`);
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      received += value.byteLength;
      onProgress(received, info.bytes);
    }
  } catch (err) {
    if (signal?.aborted) throw new ModelError("cancelled", "the download was cancelled");
    if (err instanceof ModelError) throw err;
    throw new ModelError("download", `the model download failed: ${err.message || err}`);
  }
  const blob = new Blob(parts, { type: "application/octet-stream" });
  const digest = hex(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  if (blob.size !== info.bytes || digest !== info.sha256) {
    throw new ModelError("integrity", "the downloaded model does not match its checksum; nothing was stored");
  }
  if (signal?.aborted) throw new ModelError("cancelled", "the download was cancelled");
  if (!keep) {
    new BroadcastChannel(CHANNEL).postMessage({ kind: "installed", blob });
    return;
  }
  try {
    await (await caches.open(CACHE)).put(info.url, new Response(blob, { headers: { "Content-Length": String(blob.size) } }));
  } catch (err) {
    const full = err?.name === "QuotaExceededError";
    throw new ModelError(full ? "quota" : "download", full
      ? `the browser's storage is full: the ${(info.bytes / 1048576).toFixed(0)} MB model was not stored (free some space or remove other site data)`
      : `the model could not be stored: ${err.message || err}`);
  }
  new BroadcastChannel(CHANNEL).postMessage({ kind: "installed" });
}

export async function removeModel() {
  if (await canStore()) {
    const { url } = await manifest();
    await (await caches.open(CACHE)).delete(url);
  }
  new BroadcastChannel(CHANNEL).postMessage({ kind: "removed" });
}

// The worker half. `state`: absent | loading | ready | failed (with `error`).
export function createLlmHost({ threads } = {}) {
  const channel = new BroadcastChannel(CHANNEL);
  let wllama = null;
  let loading = null;
  const status = { state: "absent", error: null, load_ms: null, threads: null, generating: false, last: null };

  const announce = () => channel.postMessage({ kind: "state", ...status });
  const set = (fields) => { Object.assign(status, fields); announce(); };

  // From the bytes handed over for this visit, or else from Cache Storage (none there, or no
  // Cache Storage at all: absent, and answers stay extracts).
  async function load(blob) {
    const started = performance.now();
    const response = blob ? null : await cachedResponse().catch(() => null);
    if (!blob && !response) { set({ state: "absent", error: null }); return; }
    set({ state: "loading", error: null });
    try {
      const { Wllama } = await import(new URL("wllama/index.js", base).href);
      // Half the cores (wllama's own default): the other half keeps Pyodide and the page
      // responsive; on a busy 2-core box 2 threads measured slower than 1.
      const n = threads || (self.crossOriginIsolated ? Math.max(1, Math.floor((navigator.hardwareConcurrency || 2) / 2)) : 1);
      wllama = new Wllama({ default: new URL("wllama/wllama.wasm", base).href }, { suppressNativeLog: true });
      // A short context keeps memory and prompt time low: five passages of ~200 words fit.
      await wllama.loadModel([blob ?? (await response.blob())], { n_ctx: 2048, n_threads: n });
      // The first decode pays one-off set-up (~10 s measured on a loaded 2-core box): pay it
      // here, while answers are still extracts, not in the user's first question.
      await wllama.createChatCompletion({ messages: [{ role: "user", content: "Hi" }], max_tokens: 1, temperature: 0 });
      set({ state: "ready", load_ms: Math.round(performance.now() - started), threads: n });
    } catch (err) {
      wllama = null;
      set({ state: "failed", error: `the local model failed to load: ${err.message || err}` });
    }
  }

  async function unload() {
    const old = wllama;
    wllama = null;
    loading = null;
    set({ state: "absent", error: null, load_ms: null });
    if (old) await old.exit().catch(() => {});
  }

  function ensure(blob) {
    loading ??= load(blob).finally(() => { if (status.state !== "ready") loading = null; });
    return loading;
  }

  channel.onmessage = ({ data }) => {
    if (data?.kind === "installed") ensure(data.blob);
    else if (data?.kind === "removed") unload();
    else if (data?.kind === "query") announce();
  };

  // A stream of text pieces: next() resolves to a string, or undefined at the end; close() aborts.
  // With `grammar` (GBNF, llm/grammar.py), decoding is constrained to what it allows: the
  // agent loop's tool calls always parse.
  function generate(messagesJson, maxTokens, grammar) {
    if (!wllama || status.state !== "ready") throw new Error("the local model is not loaded");
    const abort = new AbortController();
    const queue = [];
    let waiting = null;
    let ended = false;
    let failure = null;
    const wake = () => { if (waiting) { const w = waiting; waiting = null; w(); } };
    status.generating = true;
    (async () => {
      try {
        const chunks = await wllama.createChatCompletion({
          messages: JSON.parse(messagesJson), stream: true, max_tokens: maxTokens,
          temperature: 0, abortSignal: abort.signal,
          // (wllama 3.8 passes OpenAI `tools` to a chat template that ignores them for this
          // model; a grammar is what actually holds the model to them.)
          ...(grammar ? { grammar } : {}),
        });
        for await (const chunk of chunks) {
          const text = chunk.choices?.[0]?.delta?.content;
          // Speed on this device, for `status` (is the model usable here?).
          if (chunk.timings) status.last = { prompt_per_second: chunk.timings.prompt_per_second, predicted_per_second: chunk.timings.predicted_per_second };
          if (text) { queue.push(text); wake(); }
        }
      } catch (err) {
        if (!abort.signal.aborted) failure = err;
      } finally {
        ended = true;
        status.generating = false;
        wake();
      }
    })();
    return {
      async next() {
        while (!queue.length && !ended) await new Promise((resolve) => { waiting = resolve; });
        if (queue.length) return queue.shift();
        if (failure) throw new Error(`the local model failed: ${failure.message || failure}`);
        return undefined; // Python sees None (a JS null would arrive as pyodide's jsnull)
      },
      close() { abort.abort(); },
    };
  }

  return {
    ensure,
    remove: unload,
    ready: () => status.state === "ready",
    state: () => ({ ...status }),
    generate,
  };
}
