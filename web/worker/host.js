// The JS half of the browser host: everything wasmagent.hosts.browser needs from the browser
// (onnxruntime-web sessions, IndexedDB, vector search, the optional server link, the local
// model), gathered into the one `api` object Python adapts to the core's ports.
//
// Two callers: the agent's own worker (worker.js), which starts this beside Pyodide so model
// sessions are made while Python boots; and Python running on someone else's Pyodide (a PyScript
// page), through wasmagent.hosts.browser.start(), which imports this module by URL.
import * as ortHost from "./ort-host.js";
import { openStore } from "./idb-store.js";
import * as vectors from "./vectors.js";
import { createLink } from "./server-link.js";
import { createLlmHost } from "./llm-host.js";
import { createFetch } from "./fetch.js";

const APP = new URL("../", import.meta.url); // the app root this module was served from

// Resolves to {api, vocab, labels} without waiting for the embedding session: `api.model`
// resolves to null once it exists, or to why it failed (not fatal: the agent answers from
// keyword search until it exists, and for good if it failed).
export async function startHost({
  files = createFetch(APP),
  threads,
  kb = "default",
  localModel = true,
  post = () => {},
  onLinkState = () => {},
  span = () => {},
  started = performance.now(),
  sessionAfter = null,
} = {}) {
  ortHost.configure({ threads });
  const modelStart = performance.now();
  const fetchModel = (url) => files.fetchBytes(url).finally(() => span("modelFetch", modelStart));
  // MiniLM's session is made once `sessionAfter` resolves (the worker: once the agent is ready),
  // its bytes fetched meanwhile: making it is ~0.3-0.5 s of synchronous wasm on the one thread
  // Python boots on, and the agent answers from keyword search without it.
  const model = ortHost.warm("minilm", fetchModel, { after: sessionAfter }).then(
    () => {
      span("model", modelStart);
      return null;
    },
    (err) => err?.message || String(err),
  );
  // The intent head (used only with MiniLM) likewise: its session is the first one, which
  // also instantiates onnxruntime-web's wasm, on this same thread.
  ortHost.warm("intent", files.fetchBytes, { after: sessionAfter }).catch(() => {});
  // The vector search kernel (364 bytes) compiles meanwhile; settled before the host is
  // handed over, so the status Python reports says what searches will run on.
  const kernel = vectors.useKernel(files.versioned("worker/scores.wasm").then((url) => fetch(url)));
  const vocab = files.fetchText("models/all-minilm-l6-v2/vocab.txt");
  const stored = openStore().catch((err) => ({ error: String(err) }));
  const labels = files.fetchText("models/intent/labels.json").catch(() => null);
  const api = {
    link: createLink({ onState: onLinkState }),
    post,
    run: (name, feeds) => ortHost.run(name, feeds, files.fetchBytes),
    models: ortHost.knownModels(),
    model,
    fetchText: files.fetchText,
    fetchBytes: (path) => files.fetchBytes(new URL(path, APP).href),
    store: await stored,
    // The shipped knowledge base (kb/<name>.kv) to install on first boot: the widget's data-kb.
    kb,
    vectors,
    // The opt-in local generative model (wllama in its own worker; absent until installed).
    // Left out (undefined, None in Python) where the page did not offer it.
    ...(localModel ? { llm: createLlmHost() } : {}),
    threads: ortHost.threads(),
    crossOriginIsolated: self.crossOriginIsolated,
    bootMs: () => performance.now() - started,
  };
  await kernel;
  return { api, vocab: await vocab, labels: await labels };
}
