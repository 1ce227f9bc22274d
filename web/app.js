// The page: boots the agent worker through bridge.js and runs the chat (chat.js, shared with
// the embedded widget), knowledge bases, diagnostics and offline updates. Everything that comes
// from documents, questions or answers is inserted with textContent, never as HTML.
import { AgentClient } from "./bridge.js";
import { Chat, bootView, el } from "./chat.js";
import { checkServerUrl } from "./server-link.js";

const $ = (id) => document.getElementById(id);
// `server`: the agent server this page configured ({url, origin}), or null; `link`: its
// link's state as the worker last reported it (off, reconnecting, connected).
const state = { kb: "default", kbs: [], ingesting: null, server: null, link: "off" };
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
const bootEvents = bootView(document, {
  onReady: () => {
    setPill("engine", "ready", "ready");
    document.body.dataset.ready = "true";
    showModelState();
  },
  onFail: () => setPill("engine", "failed", "failed"),
});

const SERVER_MESSAGES = {
  connected: "Connected: questions use the server's LLM, with the local answer as fallback.",
  reconnecting: "Connection lost: answers come from this browser; reconnecting in the background.",
};

// Boot progress drives the #boot section; the optional server link reports its state the same
// way (unattributed progress events with stage "server").
function onBootEvent(event) {
  if (event.id === null && event.type === "progress" && event.stage === "server") {
    state.link = event.message;
    showServer();
    // The settings' message follows the link too, or it would still say "Connected" after a drop.
    if (SERVER_MESSAGES[event.message]) $("server-message").textContent = SERVER_MESSAGES[event.message];
    return;
  }
  bootEvents(event);
}

// While a server is configured, its origin is always on show, with its link's state and the
// one-click way to drop it.
function showServer() {
  const server = state.server;
  const link = server ? state.link : "off";
  const labels = { connected: "connected", reconnecting: "reconnecting…", off: "connecting…" };
  $("server").hidden = !server;
  $("server-forget").hidden = !server;
  setPill("server", link === "off" ? "reconnecting" : link,
    server ? `server: ${server.origin} — ${labels[link] ?? link}` : "server");
}

// "ready" alone would hide that answers come from keyword search only when the model failed,
// or that nothing will be saved because the browser's storage is unavailable.
async function showModelState() {
  const status = await client.status().catch(() => null);
  if (status && !status.model) {
    setPill("engine", "degraded", "keyword search only");
    $("engine").title = `Agent: the embedding model is unavailable (${status.model_error || "not loaded"})`;
  }
  if (status?.storage_error) storageProblem(status.storage_error);
}

function storageProblem(detail) {
  const notice = $("storage");
  notice.textContent = "This browser’s storage is full or unavailable: documents you add and "
    + "this conversation are kept only until you close the page. Questions are still answered.";
  notice.title = detail;
  notice.hidden = false;
}

const threads = Number(new URLSearchParams(location.search).get("threads")) || undefined;
const client = await AgentClient.create({ onEvent: onBootEvent, threads });
window.wasmagentClient = client;

// ---- answers and citations -----------------------------------------------------------------
const chat = new Chat({
  client,
  kb: () => state.kb,
  // The origin an answer may come from: the server this page is linked to as it is asked.
  server: () => (state.server && state.link === "connected" ? state.server.origin : null),
  after: () => refreshDiagnostics(),
  onError: (question, err) => {
    if (err.code === "storage_failed") storageProblem(err.message);
  },
});
for (const button of document.querySelectorAll(".suggestions button")) {
  button.addEventListener("click", () => {
    $("ask").value = button.textContent;
    $("ask-form").requestSubmit();
  });
}

// ---- knowledge bases -----------------------------------------------------------------------
function message(text) {
  $("kb-message").textContent = text;
}

async function refreshKbs() {
  const { result } = await client.request("kb.list");
  state.kbs = result.kbs;
  const names = result.kbs.map((k) => k.name);
  if (!names.includes(state.kb)) names.push(state.kb);
  // Names only: counts in the options would be cut off in a narrow select.
  $("kb-select").replaceChildren(...names.map((name) =>
    el("option", { value: name, textContent: name, selected: name === state.kb })));
  showKbInfo();
}

function showKbInfo() {
  const info = state.kbs.find((k) => k.name === state.kb);
  $("kb-info").textContent = info
    ? `${info.chunks} passages from ${info.sources} document(s)`
    : "Empty: add documents to fill it.";
}

$("kb-select").addEventListener("change", (e) => {
  state.kb = e.target.value;
  showKbInfo();
  message(`Questions now go to “${state.kb}”.`);
});

$("kb-new").addEventListener("click", async () => {
  const name = (prompt("Name of the new knowledge base") || "").trim();
  if (!name) return;
  state.kb = name.slice(0, 128);
  await refreshKbs();
  message(`“${state.kb}” is selected: add documents to fill it.`);
});

function showPanel(open) {
  $("kb-panel").hidden = !open;
  $("toggle-kb").setAttribute("aria-expanded", String(open));
}
$("toggle-kb").addEventListener("click", () => showPanel($("kb-panel").hidden));

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
  await followIngest(`Reading ${documents.length} document(s)…`, (options) =>
    client.request("ingest", { kb: state.kb, documents }, options));
}

// Shows an ingestion's progress, its cancel button and its outcome. `run(options)` is the
// request that streams the progress: a new `ingest`, or `jobs.watch` on a job that resumed
// after a reload (ingestion is a durable job in the worker).
async function followIngest(label, run, cancelJob, prefix = "") {
  showPanel(true); // files dropped on a closed panel: progress, cancel and outcome live there
  const controller = new AbortController();
  state.ingesting = cancelJob ? { abort: cancelJob } : controller;
  $("ingest").hidden = false;
  $("ingest-progress").value = 0;
  $("ingest-label").textContent = label;
  try {
    const { result } = await run({
      signal: controller.signal,
      onEvent: (ev) => {
        if (ev.type !== "progress") return;
        $("ingest-progress").max = ev.total || 1;
        $("ingest-progress").value = ev.loaded || 0;
        $("ingest-label").textContent = `${prefix}Read ${ev.loaded} of ${ev.total} document(s)${ev.message ? ` · ${ev.message}` : ""}`;
      },
    });
    const report = result.result ?? result; // jobs.watch answers with the job's record
    const skipped = report.skipped.length ? `, ${report.skipped.length} skipped` : "";
    message(`Added ${report.chunks_added} passages from ${report.documents} document(s) to “${report.kb}”${skipped}.`);
  } catch (err) {
    if (err.code === "cancelled") message("Adding documents was cancelled; what was already indexed is kept.");
    else if (err.code === "storage_failed") {
      message("Storage is full, so these documents were not saved. You can still ask about them until you close this page.");
      storageProblem(err.message);
    }
    else message(`Could not add the documents: ${err.message}`);
  } finally {
    state.ingesting = null;
    $("ingest").hidden = true;
    await refreshKbs();
  }
}

// An ingestion the page was reloaded (or closed) in the middle of: the worker resumes it from
// its journal; show it as if it had never stopped.
async function resumeIngestions() {
  const { result } = await client.request("jobs.list", { limit: 20 });
  for (const job of result.jobs.filter((j) => j.kind === "ingest" && j.status === "running")) {
    await followIngest(`Resuming: ${job.title}…`,
      (options) => client.request("jobs.watch", { job: job.id }, options),
      () => client.request("jobs.cancel", { job: job.id }), "Resumed after a reload · ");
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
  // The watchdog's verdict: a stage with work waiting and no progress is named here.
  const stalled = status.health?.stalled ?? [];
  $("health").textContent = stalled.length
    ? `Stuck: ${stalled.map((s) => `${s.stage} (${s.backlog} waiting for ${Math.round(s.stalled_for_s)} s)`).join(", ")}`
    : "Every stage is making progress.";
  $("health").classList.toggle("problem", stalled.length > 0);
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

// ---- optional agent server (LLM answers) ---------------------------------------------------
// The server receives every question with the top passages of the user's documents, and its
// text is shown as the answer: nothing is sent to a server the user did not choose in this
// page. An address from a link (`?server=`) is only offered (#server-confirm, showing its
// origin); only "Connect" there, or the settings form, connects and saves it. The URL and token
// are kept in this browser's localStorage, marked confirmed, so the link comes back after a
// reload; the token never appears in a URL.
const SERVER_KEY = "wasmagent.server";

async function connectServer(url, token) {
  const checked = checkServerUrl(url);
  if (checked.error) {
    $("server-message").textContent = checked.error;
    return false;
  }
  state.server = { url: checked.url, origin: checked.origin };
  state.link = "off";
  showServer();
  localStorage.setItem(SERVER_KEY, JSON.stringify({ url: checked.url, token: token || null, confirmed: true }));
  $("server-message").textContent = `Connecting to ${checked.origin}…`;
  try {
    const { result } = await client.request("server.connect", { url: checked.url, ...(token ? { token } : {}) });
    if (state.server?.url !== checked.url) return false; // forgotten or replaced meanwhile
    $("server-message").textContent = result.connected
      ? SERVER_MESSAGES.connected
      : `Not connected yet (${result.last_error || "no answer"}); retrying in the background.`;
    return true;
  } catch (err) {
    $("server-message").textContent = `${err.message} (${err.code})`;
    return false;
  }
}

// One click: the link closes and nothing is left in this browser to bring it back.
async function forgetServer() {
  localStorage.removeItem(SERVER_KEY);
  state.server = null;
  state.link = "off";
  showServer();
  dropServerParam();
  $("server-message").textContent = "Disconnected: answers come from this browser only.";
  try {
    await client.request("server.connect", {});
  } catch (err) {
    $("server-message").textContent = `${err.message} (${err.code})`;
  }
}

$("server-form").addEventListener("submit", (e) => {
  e.preventDefault();
  connectServer($("server-url").value, $("server-token").value.trim());
});
$("server-disconnect").addEventListener("click", forgetServer);
$("server-forget").addEventListener("click", forgetServer);
// Forgotten in another tab of this app (or its storage cleared): forgotten here too.
addEventListener("storage", (e) => {
  if ((e.key === SERVER_KEY || e.key === null) && !localStorage.getItem(SERVER_KEY) && state.server) forgetServer();
});

function dropServerParam() {
  const here = new URL(location.href);
  if (!here.searchParams.has("server")) return;
  here.searchParams.delete("server");
  history.replaceState(history.state, "", here.href);
}

function savedServer() {
  try {
    const saved = JSON.parse(localStorage.getItem(SERVER_KEY) || "null");
    return typeof saved?.url === "string" ? saved : null;
  } catch {
    return null;
  }
}

// Ask before using an address the user did not enter here. Resolves once they decided.
function offerServer(url, token = null, intro = "The link you opened asks this app to use the server") {
  const checked = checkServerUrl(url);
  const dialog = $("server-confirm");
  const refused = Boolean(checked.error);
  let shown = String(url);
  try {
    shown = new URL(shown).origin;
  } catch { /* not a URL: shown as given */ }
  $("server-confirm-title").textContent = refused ? "This server address is refused" : "Connect to this agent server?";
  $("server-confirm-intro").textContent = refused ? "The link you opened asks this app to use the server" : intro;
  $("server-confirm-origin").textContent = refused ? shown : checked.origin;
  $("server-confirm-what").hidden = refused;
  $("server-confirm-error").hidden = !refused;
  $("server-confirm-error").textContent = refused ? `${checked.error} Nothing was sent to it.` : "";
  $("server-confirm-yes").hidden = refused;
  $("server-confirm-no").textContent = refused ? "Close" : "Don’t connect";
  dialog.returnValue = "";
  dialog.showModal();
  $("server-confirm-no").focus(); // the safe choice has the focus: Enter never connects
  return new Promise((resolve) => {
    dialog.addEventListener("close", async () => {
      dropServerParam();
      if (!refused && dialog.returnValue === "connect") {
        $("server-url").value = checked.url;
        await connectServer(checked.url, token);
        resolve(true);
      } else {
        if (!refused) $("server-message").textContent = `Not connected to ${checked.origin}: answers come from this browser.`;
        resolve(false);
      }
    }, { once: true });
  });
}

// Before the agent is ready: a link's server address is offered at once, never used.
const linked = new URLSearchParams(location.search).get("server");
const saved = savedServer();
if (saved && !(saved.confirmed && !checkServerUrl(saved.url).error)) {
  // Saved by an older version without asking (possibly from a link), or no longer allowed:
  // not used until the user confirms it.
  localStorage.removeItem(SERVER_KEY);
}
const trusted = saved?.confirmed && !checkServerUrl(saved.url).error ? saved : null;
if (linked !== null && trusted && checkServerUrl(linked).url === trusted.url) dropServerParam();
else if (linked !== null) offerServer(linked);
else if (saved && !trusted && !checkServerUrl(saved.url).error) {
  offerServer(saved.url, saved.token, "This browser has a server saved from an earlier version of the app, which did not ask first:");
}
if (trusted) {
  state.server = { url: checkServerUrl(trusted.url).url, origin: checkServerUrl(trusted.url).origin };
  $("server-url").value = state.server.url;
  showServer();
}

registerServiceWorker().catch((err) => console.warn("service worker:", err));
client.ready.then(async () => {
  await refreshKbs();
  await chat.restoreHistory();
  resumeIngestions().catch((err) => message(`Could not resume adding documents: ${err.message}`));
  if (trusted && state.server?.url === trusted.url) await connectServer(trusted.url, trusted.token);
});
