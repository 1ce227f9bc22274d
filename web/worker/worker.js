// The module worker that hosts the agent: it boots Pyodide and the wasmagent package, reports
// boot progress with real byte counts, then hands every message to Python unchanged. All agent
// logic is Python (wasmagent.hosts.browser drives the core); this file only wires JS to it.
import { loadPyodide } from "../pyodide/pyodide.mjs";
import * as ortHost from "./ort-host.js";
import { openStore } from "./idb-store.js";
import * as vectors from "./vectors.js";
import { createLink } from "./server-link.js";
import { createLlmHost } from "./llm-host.js";
import { ERROR_CODES, event, isTerminal, request } from "../shared/protocol.js";

const base = new URL("../", import.meta.url); // the app root
const post = (event) => self.postMessage(JSON.stringify(event));
const progress = (stage, extra = {}) => post(event("progress", null, { stage, ...extra }));

let agent = null;
let bootError = null;
const pending = [];

self.onmessage = (e) => {
  let raw = e.data;
  if (typeof raw !== "string") {
    try {
      raw = JSON.stringify(raw);
    } catch {
      raw = "not json";
    }
  }
  if (agent) agent.submit(raw);
  else if (bootError) agent_unavailable(raw);
  else pending.push(raw);
};

function agent_unavailable(raw) {
  let id = null;
  try {
    const msg = JSON.parse(raw);
    if (typeof msg?.id === "string") id = msg.id;
  } catch {
    /* an unparsable message gets an error with a null id */
  }
  post(event("error", id, { code: ERROR_CODES.NOT_READY, message: `the agent failed to start: ${bootError}` }));
}

// Progress counts real bytes against the sizes the build recorded, without touching the
// responses: a `new Response(stream)` wrapper has no URL and no cache handler, so Chromium would
// never keep or reuse the compiled code of pyodide.asm.wasm or the ORT wasm (0.8-2.5 s per warm
// boot, measured). Files read here (model, snapshot) count as their bytes stream in; files the
// runtimes fetch themselves count when Resource Timing reports them complete.
const manifest = fetch(new URL("boot-manifest.json", base))
  .then((r) => (r.ok ? r.json() : {}))
  .catch(() => ({}));
// A file's path in the manifest: relative to the app, without the ?v= version.
const relative = (url) => {
  const u = new URL(url, base);
  return (u.origin + u.pathname).slice(base.href.length);
};
const counted = new Map(); // manifest path -> bytes seen so far
let lastReport = 0;

async function count(url, bytes, { done = false } = {}) {
  const { files = {}, total = 0 } = await manifest;
  const path = relative(url);
  if (!(path in files)) return;
  // Never backwards: Resource Timing may report a file complete before its last chunk is read.
  counted.set(path, Math.max(counted.get(path) || 0, done ? files[path] : Math.min(files[path], bytes)));
  const now = performance.now();
  if (!done && now - lastReport < 50) return;
  lastReport = now;
  let loaded = 0;
  for (const n of counted.values()) loaded += n;
  progress("download", { loaded: Math.min(loaded, total), total });
}

new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) count(entry.name, 0, { done: true });
}).observe({ type: "resource", buffered: true });

// Spans of the boot steps (ms on this worker's clock), read by tests/bench/boot.py.
const timings = (self.bootTimings = { origin: performance.timeOrigin, wasm: {} });
const span = (name, start) => (timings[name] = { start, end: performance.now() });
for (const fn of ["instantiateStreaming", "compileStreaming"]) {
  // Timing only: the response is passed through untouched, so code caching still applies.
  const original = WebAssembly[fn];
  WebAssembly[fn] = async (source, ...rest) => {
    const start = performance.now();
    const response = await source;
    try {
      return await original.call(WebAssembly, response, ...rest);
    } finally {
      timings.wasm[relative(response.url)] = { start, end: performance.now() };
    }
  };
}

// The URL of one version of a file the build listed: cacheable for good (static.py), and a new
// build changes the URL instead of leaving a stale copy in the HTTP cache.
async function versioned(url) {
  const { versions = {} } = await manifest;
  const u = new URL(url, base);
  const version = versions[relative(u.href)];
  if (version && !u.search) u.search = `v=${version}`;
  return u;
}

async function fetchBytes(url) {
  const response = await fetch(await versioned(url));
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  // Read into place, sized by the manifest (Content-Length counts compressed bytes when the
  // server gzipped the body), growing only if the file is not the one the manifest describes.
  const { files = {} } = await manifest;
  let bytes = new Uint8Array(files[relative(response.url)] || Number(response.headers.get("Content-Length")) || 0);
  let at = 0;
  for (const reader = response.body.getReader(); ; ) {
    const { done, value } = await reader.read();
    if (done) break;
    if (at + value.byteLength > bytes.length) {
      const grown = new Uint8Array(Math.max(2 * bytes.length, at + value.byteLength));
      grown.set(bytes.subarray(0, at));
      bytes = grown;
    }
    bytes.set(value, at);
    at += value.byteLength;
    count(response.url, at);
  }
  return at === bytes.length ? bytes : bytes.slice(0, at);
}

async function fetchText(url) {
  const response = await fetch(await versioned(url));
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.text();
}

const INDEX = new URL("pyodide/", base).href;

// The interpreter comes from the build's memory snapshot (wasmagent already imported) when it
// matches this runtime build; anything else (a stale or corrupt snapshot, a Pyodide that
// changed) falls back to a normal boot from the same precompiled zip, which only costs time.
async function startPython() {
  // Both URLs carry the build's version of the file: a snapshot only makes sense with the very
  // zip it was taken with, so neither may come from an older build's cache.
  const { lock } = await manifest;
  const stdLibURL = (await versioned("pyodide/wasmagent-stdlib.zip")).href;
  const snapshot = fetchBytes("pyodide/snapshot.bin");
  snapshot.catch(() => {}); // a failed fetch is handled below, as a snapshot that did not load
  // lockFileContents: nothing to fetch (the worker installs no packages: wasmagent is in the zip).
  const options = { indexURL: INDEX, stdLibURL, lockFileContents: lock };
  const start = performance.now();
  try {
    const pyodide = await loadPyodide({ ...options, _loadSnapshot: snapshot });
    // A snapshot freezes the random module's state: every visitor would draw the same numbers.
    pyodide.runPython("import random; random.seed()");
    timings.snapshot = true;
    return pyodide;
  } catch (err) {
    timings.snapshot = false;
    timings.snapshotError = err?.message || String(err);
    progress("runtime", { message: `Starting without the memory snapshot (${timings.snapshotError.split("\n")[0]})` });
    const pyodide = await loadPyodide(options);
    const imports = performance.now();
    pyodide.pyimport("wasmagent.hosts.browser");
    span("imports", imports);
    return pyodide;
  } finally {
    span("python", start);
  }
}

async function boot() {
  const t0 = performance.now();
  const params = new URL(import.meta.url).searchParams;
  const threads = Number(params.get("threads")) || undefined;
  ortHost.configure({ threads });
  progress("runtime", { message: "Loading the Python runtime" });
  // The embedding session is created while Python boots (interleaved on this one thread).
  // A model that fails to load is not fatal: the agent still answers from keyword search.
  const modelStart = performance.now();
  const fetchModel = (url) => fetchBytes(url).finally(() => span("modelFetch", modelStart));
  const model = ortHost.warm("minilm", fetchModel).then(
    () => {
      span("model", modelStart);
      return null;
    },
    (err) => err?.message || String(err),
  );
  // The intent head is needed by the first question too: its session is made meanwhile.
  ortHost.warm("intent", fetchBytes).catch(() => {});
  const vocab = fetchText("models/all-minilm-l6-v2/vocab.txt");
  const stored = openStore().catch((err) => ({ error: String(err) }));
  const labels = fetchText("models/intent/labels.json").catch(() => null);
  const pyodide = await startPython();
  progress("packages", { message: "Starting the agent" });
  progress("model", { message: "Loading the embedding model" });
  const modelError = await model;
  if (modelError) progress("model", { message: `Embedding model unavailable (${modelError}); using keyword search only` });
  const store = await stored;
  // Connection changes of the optional agent server reach the page as unattributed progress.
  const link = createLink({
    onState: (s) => progress("server", { message: s.connected ? "connected" : s.url ? "reconnecting" : "off" }),
  });
  const api = {
    link,
    post: (json) => (warming && typeof json === "string" && json.includes(WARMUP) ? warmed(json) : self.postMessage(json)),
    run: (name, feeds) => ortHost.run(name, feeds, fetchBytes),
    models: ortHost.knownModels(),
    modelError,
    fetchText,
    fetchBytes: (path) => fetchBytes(new URL(path, base).href),
    store,
    // The shipped knowledge base (kb/<name>.kv) to install on first boot: the widget's data-kb.
    kb: params.get("kb") || "default",
    vectors,
    // The opt-in local generative model (wllama in its own worker; absent until installed).
    llm: createLlmHost(),
    threads: ortHost.threads(),
    crossOriginIsolated: self.crossOriginIsolated,
    bootMs: () => performance.now() - t0,
  };
  const browser = pyodide.pyimport("wasmagent.hosts.browser");
  const agentStart = performance.now();
  agent = await browser.boot(api, await vocab, await labels);
  span("agent", agentStart);
  const { total } = await manifest;
  progress("ready", { loaded: total, total, message: `Ready in ${Math.round(performance.now() - t0)} ms` });
  timings.ready = performance.now();
  for (const raw of pending.splice(0)) agent.submit(raw);
  // One embedding right after ready, its events kept in the worker: the first real question
  // otherwise pays for first-use work (wasm code compiled on first call, ORT's buffers), measured
  // ~300 ms of its ~400 ms. A question asked meanwhile simply queues behind this one text.
  agent.submit(JSON.stringify(request("embed", WARMUP, { texts: ["warm up"] })));
}

const WARMUP = "boot-warmup-7c1d";
let warming = true;
function warmed(json) {
  const reply = JSON.parse(json);
  if (reply.type === "error") console.warn("wasmagent: the warm-up embedding failed:", reply.message);
  if (isTerminal(reply)) warming = false;
}

boot().catch((err) => {
  bootError = err?.message || String(err);
  post(event("error", null, { code: ERROR_CODES.NOT_READY, message: `the agent failed to start: ${bootError}` }));
  for (const raw of pending.splice(0)) agent_unavailable(raw);
});
