// The module worker that hosts the agent: it boots Pyodide and the wasmagent package, reports
// boot progress with real byte counts, then hands every message to Python unchanged. All agent
// logic is Python (wasmagent.hosts.browser drives the core); this file only wires JS to it.
import { loadPyodide } from "../pyodide/pyodide.mjs";
// The Emscripten module loadPyodide imports by this same URL once it runs: fetched and parsed
// (1.2 MB) with this worker's other modules instead of after the boot manifest has come.
import "../pyodide/pyodide.asm.mjs";
import { createFetch } from "./fetch.js";
import { startHost } from "./host.js";
import { ERROR_CODES, event, isTerminal, request } from "../shared/protocol.js";
// host.js's own imports, listed here too so they are fetched with the ones above instead of one
// level later each (a worker has no modulepreload; the widget's frame revalidates every module).
import "../ort/ort.wasm.min.mjs";
import "./ort-host.js";
import "./idb-store.js";
import "./vectors.js";
import "./server-link.js";
import "./llm-host.js";

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
const appFiles = createFetch(base, { onChunk: (url, bytes) => count(url, bytes) });
const { manifest, relative, versioned, fetchBytes } = appFiles;
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

let setAgentReady;
const agentReady = new Promise((resolve) => (setAgentReady = resolve));

async function boot() {
  const t0 = performance.now();
  const params = new URL(import.meta.url).searchParams;
  progress("runtime", { message: "Loading the Python runtime" });
  // The model files, the vocabulary and IndexedDB are fetched and opened while Python boots; the
  // ORT sessions (synchronous wasm work on this one thread) are made after ready (host.js):
  // measured interleaved on the loaded 2-core box, warm ready 1.93 s vs 3.16 s when they were
  // made before it, the embedding model ready at about the time ready used to come.
  const host = startHost({
    files: appFiles,
    threads: Number(params.get("threads")) || undefined,
    kb: params.get("kb") || "default",
    localModel: params.get("llm") !== "off",
    post: (json) => (warming && typeof json === "string" && json.includes(WARMUP) ? warmed(json) : self.postMessage(json)),
    // Connection changes of the optional agent server reach the page as unattributed progress.
    onLinkState: (s) => progress("server", { message: s.connected ? "connected" : s.url ? "reconnecting" : "off" }),
    span,
    started: t0,
    sessionAfter: agentReady,
  });
  const pyodide = await startPython();
  progress("packages", { message: "Starting the agent" });
  // Not waiting for the embedding session: the agent answers from keyword search until it
  // exists, then switches to hybrid search by itself (the core's ModelState).
  const { api, vocab, labels } = await host;
  api.modelSettled = modelSettled;
  const browser = pyodide.pyimport("wasmagent.hosts.browser");
  const agentStart = performance.now();
  agent = await browser.boot(api, vocab, labels);
  span("agent", agentStart);
  const { total } = await manifest;
  progress("ready", { loaded: total, total, message: `Ready in ${Math.round(performance.now() - t0)} ms` });
  timings.ready = performance.now();
  for (const raw of pending.splice(0)) agent.submit(raw);
  for (const fn of afterReady.splice(0)) fn();
  // Only now MiniLM's session is made (host.js): Python's boot had the thread until here.
  setAgentReady();
}

// Called by Python once the core knows the embedding model's fate (it may come before or after
// "ready"; announced only after it, so the page's boot log ends in ready, then model).
let announced = false;
function modelSettled(error) {
  timings.modelSettled = performance.now();
  const announce = () => {
    if (announced) return;
    announced = true;
    if (error) progress("model", { message: `Embedding model unavailable (${error}); using keyword search only` });
    else progress("model", { message: "Embedding model ready" });
    // One embedding right after, its events kept in the worker: the first real question
    // otherwise pays for first-use work (wasm code compiled on first call, ORT's buffers),
    // measured ~300 ms of its ~400 ms. A question asked meanwhile queues behind this one text.
    if (!error) agent.submit(JSON.stringify(request("embed", WARMUP, { texts: ["warm up"] })));
  };
  if (agent) announce();
  else afterReady.push(announce);
}
const afterReady = [];

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
