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

// Resolves to {api, vocab, labels} once the embedding session exists (or failed: that is not
// fatal, the agent still answers from keyword search and says why in `api.modelError`).
export async function startHost({
  files = createFetch(APP),
  threads,
  kb = "default",
  localModel = true,
  post = () => {},
  onLinkState = () => {},
  span = () => {},
  started = performance.now(),
} = {}) {
  ortHost.configure({ threads });
  const modelStart = performance.now();
  const fetchModel = (url) => files.fetchBytes(url).finally(() => span("modelFetch", modelStart));
  const model = ortHost.warm("minilm", fetchModel).then(
    () => {
      span("model", modelStart);
      return null;
    },
    (err) => err?.message || String(err),
  );
  // The intent head is needed by the first question too: its session is made meanwhile.
  ortHost.warm("intent", files.fetchBytes).catch(() => {});
  const vocab = files.fetchText("models/all-minilm-l6-v2/vocab.txt");
  const stored = openStore().catch((err) => ({ error: String(err) }));
  const labels = files.fetchText("models/intent/labels.json").catch(() => null);
  const api = {
    link: createLink({ onState: onLinkState }),
    post,
    run: (name, feeds) => ortHost.run(name, feeds, files.fetchBytes),
    models: ortHost.knownModels(),
    modelError: await model,
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
  return { api, vocab: await vocab, labels: await labels };
}
