// The module worker that hosts the agent: it boots Pyodide and the wasmagent package, reports
// boot progress with real byte counts, then hands every message to Python unchanged. All agent
// logic is Python (wasmagent.hosts.browser drives the core); this file only wires JS to it.
import { loadPyodide } from "./pyodide/pyodide.mjs";
import * as ortHost from "./ort-host.js";
import { openStore } from "./idb-store.js";
import * as vectors from "./vectors.js";
import { createLink } from "./server-link.js";

const base = new URL("./", import.meta.url);
const post = (event) => self.postMessage(JSON.stringify(event));
const progress = (stage, extra = {}) => post({ v: 1, type: "progress", id: null, stage, ...extra });

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
  post({ v: 1, type: "error", id, code: "not_ready", message: `the agent failed to start: ${bootError}` });
}

// Count the bytes of every boot file as it streams in, against the sizes the build recorded.
const manifest = fetch(new URL("boot-manifest.json", base))
  .then((r) => (r.ok ? r.json() : { files: {}, total: 0 }))
  .catch(() => ({ files: {}, total: 0 }));
let loaded = 0;
let lastReport = 0;
const realFetch = self.fetch.bind(self);

async function countingFetch(input, init) {
  const response = await realFetch(input, init);
  const { total } = await manifest;
  if (!response.ok || !response.body || !total) return response;
  const reader = response.body.getReader();
  const stream = new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) {
        progress("download", { loaded: Math.min(loaded, total), total });
        return controller.close();
      }
      loaded += value.byteLength;
      const now = performance.now();
      if (now - lastReport > 50) {
        lastReport = now;
        progress("download", { loaded: Math.min(loaded, total), total });
      }
      controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return new Response(stream, { status: response.status, statusText: response.statusText, headers: response.headers });
}
self.fetch = countingFetch;

async function fetchBytes(url) {
  const response = await countingFetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function fetchText(url) {
  const response = await countingFetch(new URL(url, base));
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.text();
}

async function boot() {
  const t0 = performance.now();
  const params = new URL(import.meta.url).searchParams;
  const threads = Number(params.get("threads")) || undefined;
  ortHost.configure({ threads });
  progress("runtime", { message: "Loading the Python runtime" });
  // The embedding session is created while Python boots: its ~0.6 s hides behind the runtime.
  // A model that fails to load is not fatal: the agent still answers from keyword search.
  const model = ortHost.warm("minilm", fetchBytes).then(
    () => null,
    (err) => err?.message || String(err),
  );
  const vocab = fetchText("models/all-minilm-l6-v2/vocab.txt");
  const labels = fetchText("models/intent/labels.json").catch(() => null);
  const pyodide = await loadPyodide({ indexURL: new URL("pyodide/", base).href });
  progress("packages", { message: "Loading the wasmagent package" });
  await pyodide.loadPackage("wasmagent", { messageCallback: () => {}, errorCallback: console.warn });
  progress("model", { message: "Loading the embedding model" });
  const modelError = await model;
  if (modelError) progress("model", { message: `Embedding model unavailable (${modelError}); using keyword search only` });
  const store = await openStore().catch((err) => ({ error: String(err) }));
  // Connection changes of the optional agent server reach the page as unattributed progress.
  const link = createLink({
    onState: (s) => progress("server", { message: s.connected ? "connected" : s.url ? "reconnecting" : "off" }),
  });
  const api = {
    link,
    post: (json) => self.postMessage(json),
    run: (name, feeds) => ortHost.run(name, feeds, fetchBytes),
    models: ortHost.knownModels(),
    modelError,
    fetchText,
    fetchBytes: (path) => fetchBytes(new URL(path, base).href),
    store,
    // The shipped knowledge base (kb/<name>.kv) to install on first boot: the widget's data-kb.
    kb: params.get("kb") || "default",
    vectors,
    threads: ortHost.threads(),
    crossOriginIsolated: self.crossOriginIsolated,
    bootMs: () => performance.now() - t0,
  };
  const browser = pyodide.pyimport("wasmagent.hosts.browser");
  agent = await browser.boot(api, await vocab, await labels);
  const { total } = await manifest;
  progress("ready", { loaded: total, total, message: `Ready in ${Math.round(performance.now() - t0)} ms` });
  for (const raw of pending.splice(0)) agent.submit(raw);
}

boot().catch((err) => {
  bootError = err?.message || String(err);
  post({ v: 1, type: "error", id: null, code: "not_ready", message: `the agent failed to start: ${bootError}` });
  for (const raw of pending.splice(0)) agent_unavailable(raw);
});
