// The Knowledge panel: choose, create and delete knowledge bases, add documents (file picker
// or drag and drop) as a durable ingestion with progress and cancel, resume an ingestion a
// reload interrupted, and clear everything.
import { el } from "../shared/chat.js";
import { storageProblem } from "./pills.js";

const $ = (id) => document.getElementById(id);
const KINDS = { html: "html", htm: "html", md: "markdown", markdown: "markdown", rst: "rst", txt: "text", text: "text" };

// `state.kb` is the knowledge base questions go to; this panel owns `kbs` and `ingesting`.
export function knowledgePanel(client, state) {
  const message = (text) => ($("kb-message").textContent = text);

  async function refresh() {
    const { result } = await client.request("kb.list");
    state.kbs = result.kbs;
    const names = result.kbs.map((k) => k.name);
    if (!names.includes(state.kb)) names.push(state.kb);
    // Names only: counts in the options would be cut off in a narrow select.
    $("kb-select").replaceChildren(...names.map((name) =>
      el("option", { value: name, textContent: name, selected: name === state.kb })));
    showInfo();
  }

  function showInfo() {
    const info = state.kbs.find((k) => k.name === state.kb);
    $("kb-info").textContent = info
      ? `${info.chunks} passages from ${info.sources} document(s)`
      : "Empty: add documents to fill it.";
  }

  function showPanel(open) {
    $("kb-panel").hidden = !open;
    $("toggle-kb").setAttribute("aria-expanded", String(open));
  }

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
    await follow(`Reading ${documents.length} document(s)…`, (options) =>
      client.request("ingest", { kb: state.kb, documents }, options));
  }

  // Shows an ingestion's progress, its cancel button and its outcome. `run(options)` is the
  // request that streams the progress: a new `ingest`, or `jobs.watch` on a job that resumed
  // after a reload (ingestion is a durable job in the worker).
  async function follow(label, run, cancelJob, prefix = "") {
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
          // `loaded`/`total` count passages (`total` is an estimate until the last document);
          // the message says so, with the time left.
          $("ingest-label").textContent = `${prefix}${ev.message || `${ev.loaded} of about ${ev.total} passages`}`;
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
      } else message(`Could not add the documents: ${err.message}`);
    } finally {
      state.ingesting = null;
      $("ingest").hidden = true;
      await refresh();
    }
  }

  // An ingestion the page was reloaded (or closed) in the middle of: the worker resumes it
  // from its journal; show it as if it had never stopped.
  async function resume() {
    const { result } = await client.request("jobs.list", { limit: 20 });
    for (const job of result.jobs.filter((j) => j.kind === "ingest" && j.status === "running")) {
      await follow(`Resuming: ${job.title}…`,
        (options) => client.request("jobs.watch", { job: job.id }, options),
        () => client.request("jobs.cancel", { job: job.id }), "Resumed after a reload · ");
    }
  }

  $("kb-select").addEventListener("change", (e) => {
    state.kb = e.target.value;
    showInfo();
    message(`Questions now go to “${state.kb}”.`);
  });
  $("kb-new").addEventListener("click", async () => {
    const name = (prompt("Name of the new knowledge base") || "").trim();
    if (!name) return;
    state.kb = name.slice(0, 128);
    await refresh();
    message(`“${state.kb}” is selected: add documents to fill it.`);
  });
  $("toggle-kb").addEventListener("click", () => showPanel($("kb-panel").hidden));
  $("files").addEventListener("change", (e) => {
    ingestFiles([...e.target.files]);
    e.target.value = "";
  });
  $("ingest-cancel").addEventListener("click", () => state.ingesting?.abort());
  acceptDrops(ingestFiles);

  $("kb-delete").addEventListener("click", async () => {
    if (!confirm(`Delete the knowledge base “${state.kb}” and its documents?`)) return;
    try {
      await client.request("kb.delete", { kb: state.kb });
      message(`Deleted “${state.kb}”.`);
    } catch (err) {
      message(err.code === "not_found" ? `“${state.kb}” has nothing stored.` : err.message);
    }
    state.kb = "default";
    await refresh();
  });
  $("clear-all").addEventListener("click", async () => {
    if (!confirm("Delete every knowledge base and the conversation history from this browser?")) return;
    const { result } = await client.request("data.clear");
    $("log").replaceChildren();
    state.kb = "default";
    message(`Cleared ${result.knowledge_bases} knowledge base(s) and ${result.history} conversation entries.`);
    await refresh();
  });

  return { refresh, resume, message };
}

// Files dropped anywhere on the page go to `ingest`, with a full-page drop hint while dragging.
function acceptDrops(ingest) {
  let depth = 0;
  addEventListener("dragenter", (e) => {
    if (![...(e.dataTransfer?.types || [])].includes("Files")) return;
    depth++;
    $("drop").hidden = false;
  });
  addEventListener("dragleave", () => {
    if (--depth <= 0) $("drop").hidden = true;
  });
  addEventListener("dragover", (e) => e.preventDefault());
  addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    $("drop").hidden = true;
    if (e.dataTransfer?.files?.length) ingest([...e.dataTransfer.files]);
  });
}
