// The page: boots the agent worker through bridge.js and runs the chat (chat.js, shared with
// the embedded widget), knowledge bases, diagnostics and offline updates. Everything that comes
// from documents, questions or answers is inserted with textContent, never as HTML.
import { AgentClient } from "./bridge.js";
import { Chat, bootView, el } from "./chat.js";

const $ = (id) => document.getElementById(id);
const state = { kb: "default", ingesting: null };
const KINDS = { html: "html", htm: "html", md: "markdown", markdown: "markdown", rst: "rst", txt: "text", text: "text" };

function setPill(id, st, text) {
  const node = $(id);
  node.dataset.state = st;
  node.textContent = text;
}

function showNetwork() {
  setPill("net", navigator.onLine ? "online" : "offline", navigator.onLine ? "online" : "offline");
}
addEventListener("online", showNetwork);
addEventListener("offline", showNetwork);
showNetwork();

// ---- boot ----------------------------------------------------------------------------------
const onBootEvent = bootView(document, {
  onReady: () => {
    setPill("engine", "ready", "ready");
    document.body.dataset.ready = "true";
  },
  onFail: () => setPill("engine", "failed", "failed"),
});

const threads = Number(new URLSearchParams(location.search).get("threads")) || undefined;
const client = await AgentClient.create({ onEvent: onBootEvent, threads });
window.wasmagentClient = client;

// ---- answers and citations -----------------------------------------------------------------
const chat = new Chat({ client, kb: () => state.kb, after: () => refreshDiagnostics() });

// ---- knowledge bases -----------------------------------------------------------------------
function message(text) {
  $("kb-message").textContent = text;
}

async function refreshKbs() {
  const { result } = await client.request("kb.list");
  const select = $("kb-select");
  const names = result.kbs.map((k) => k.name);
  if (!names.includes(state.kb)) names.push(state.kb);
  select.replaceChildren(...names.map((name) => {
    const info = result.kbs.find((k) => k.name === name);
    const label = info ? `${name} (${info.chunks} passages, ${info.sources} documents)` : `${name} (empty)`;
    return el("option", { value: name, textContent: label, selected: name === state.kb });
  }));
}

$("kb-select").addEventListener("change", (e) => {
  state.kb = e.target.value;
  message(`Questions now go to “${state.kb}”.`);
});

$("kb-new").addEventListener("click", async () => {
  const name = (prompt("Name of the new knowledge base") || "").trim();
  if (!name) return;
  state.kb = name.slice(0, 128);
  await refreshKbs();
  message(`“${state.kb}” is selected: add documents to fill it.`);
});

$("toggle-kb").addEventListener("click", () => {
  const panel = $("kb-panel");
  panel.hidden = !panel.hidden;
  $("toggle-kb").setAttribute("aria-expanded", String(!panel.hidden));
});

async function ingestFiles(files) {
  const documents = [];
  for (const file of files) {
    const kind = KINDS[file.name.split(".").pop().toLowerCase()];
    if (!kind) {
      message(`${file.name}: not a supported document type.`);
      continue;
    }
    documents.push({ source: file.name, text: await file.text(), kind });
  }
  if (!documents.length) return;
  const controller = new AbortController();
  state.ingesting = controller;
  $("ingest").hidden = false;
  $("ingest-label").textContent = `Reading ${documents.length} document(s)…`;
  try {
    const { result } = await client.request("ingest", { kb: state.kb, documents }, {
      signal: controller.signal,
      onEvent: (ev) => {
        if (ev.type !== "progress") return;
        $("ingest-progress").max = ev.total || 1;
        $("ingest-progress").value = ev.loaded || 0;
        $("ingest-label").textContent = ev.message || "";
      },
    });
    const skipped = result.skipped.length ? `, ${result.skipped.length} skipped` : "";
    message(`Added ${result.chunks_added} passages from ${result.documents} document(s) to “${result.kb}”${skipped}.`);
  } catch (err) {
    if (err.code === "cancelled") message("Adding documents was cancelled; what was already indexed is kept.");
    else if (err.code === "storage_failed") message(`Storage is full or unavailable (${err.message}). The documents stay usable until you close this page.`);
    else message(`Could not add the documents: ${err.message}`);
  } finally {
    state.ingesting = null;
    $("ingest").hidden = true;
    await refreshKbs();
  }
}

$("files").addEventListener("change", (e) => {
  ingestFiles([...e.target.files]);
  e.target.value = "";
});
$("ingest-cancel").addEventListener("click", () => state.ingesting?.abort());

let dragDepth = 0;
addEventListener("dragenter", (e) => {
  if (![...(e.dataTransfer?.types || [])].includes("Files")) return;
  dragDepth++;
  $("drop").hidden = false;
});
addEventListener("dragleave", () => {
  if (--dragDepth <= 0) $("drop").hidden = true;
});
addEventListener("dragover", (e) => e.preventDefault());
addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  $("drop").hidden = true;
  if (e.dataTransfer?.files?.length) ingestFiles([...e.dataTransfer.files]);
});

$("kb-delete").addEventListener("click", async () => {
  if (!confirm(`Delete the knowledge base “${state.kb}” and its documents?`)) return;
  try {
    await client.request("kb.delete", { kb: state.kb });
    message(`Deleted “${state.kb}”.`);
  } catch (err) {
    message(err.code === "not_found" ? `“${state.kb}” has nothing stored.` : err.message);
  }
  state.kb = "default";
  await refreshKbs();
});

$("clear-all").addEventListener("click", async () => {
  if (!confirm("Delete every knowledge base and the conversation history from this browser?")) return;
  const { result } = await client.request("data.clear");
  $("log").replaceChildren();
  state.kb = "default";
  message(`Cleared ${result.knowledge_bases} knowledge base(s) and ${result.history} conversation entries.`);
  await refreshKbs();
});

// ---- diagnostics ---------------------------------------------------------------------------
async function refreshDiagnostics() {
  if (!$("diagnostics").open) return;
  const status = await client.status();
  const rows = Object.entries(status.metrics.stages).map(([stage, s]) =>
    el("tr", {}, el("td", { textContent: stage }), el("td", { textContent: s.count }), el("td", { textContent: s.p50_ms.toFixed(1) }), el("td", { textContent: s.p95_ms.toFixed(1) })));
  $("stages").tBodies[0].replaceChildren(...rows);
  $("log-lines").textContent = status.log.slice(-30).map((l) => JSON.stringify(l)).join("\n");
}
$("diagnostics").addEventListener("toggle", refreshDiagnostics);

// ---- offline updates -----------------------------------------------------------------------
async function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  const registration = await navigator.serviceWorker.register("sw.js");
  const offer = (worker) => {
    $("update").hidden = false;
    $("reload").onclick = () => worker.postMessage({ type: "SKIP_WAITING" });
  };
  if (registration.waiting && navigator.serviceWorker.controller) offer(registration.waiting);
  registration.addEventListener("updatefound", () => {
    const worker = registration.installing;
    worker?.addEventListener("statechange", () => {
      if (worker.state === "installed" && navigator.serviceWorker.controller) offer(worker);
    });
  });
  let reloading = false;
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    if (reloading || $("update").hidden) return;
    reloading = true;
    location.reload();
  });
  window.wasmagentUpdate = () => registration.update();
}

registerServiceWorker().catch((err) => console.warn("service worker:", err));
client.ready.then(async () => {
  await refreshKbs();
  await chat.restoreHistory();
});
