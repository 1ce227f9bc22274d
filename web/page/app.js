// The page: boots the agent worker through bridge.js and wires the panels — the chat (chat.js,
// shared with the embedded widget), knowledge bases (knowledge.js), the optional agent server
// (server.js), diagnostics (diagnostics.js) and offline updates (updates.js). Everything that
// comes from documents, questions or answers is inserted with textContent, never as HTML.
import { AgentClient } from "../shared/bridge.js";
import { Chat, bootView } from "../shared/chat.js";
import { diagnosticsPanel } from "./diagnostics.js";
import { knowledgePanel } from "./knowledge.js";
import { modelPanel } from "./model.js";
import { setPill, storageProblem, watchNetwork } from "./pills.js";
import { serverPanel } from "./server.js";
import { registerServiceWorker } from "./updates.js";

const $ = (id) => document.getElementById(id);
// What the panels share: the knowledge base questions go to, the list of them, the ingestion
// under way, the agent server this page configured and its link's state.
const state = { kb: "default", kbs: [], ingesting: null, server: null, link: "off" };
let server = null;

watchNetwork();

const bootEvents = bootView(document, {
  onReady: () => {
    setPill("engine", "ready", "ready");
    document.body.dataset.ready = "true";
    showModelState();
  },
  onFail: () => setPill("engine", "failed", "failed"),
});

// Boot progress drives the #boot section; the optional server link reports its state the same
// way (unattributed progress events with stage "server").
function onBootEvent(event) {
  if (event.id === null && event.type === "progress" && event.stage === "server") {
    server?.onLinkState(event.message);
    return;
  }
  // The embedding model settles after "ready" (the agent does not wait for it).
  if (event.id === null && event.type === "progress" && event.stage === "model" && document.body.dataset.ready) {
    showModelState();
    return;
  }
  bootEvents(event);
}

// "ready" alone would hide that answers come from keyword search only when the model failed,
// or that nothing will be saved because the browser's storage is unavailable. Until the model
// settles the agent answers from keyword search already: that is ready, said in the title.
// body[data-model] (pending, ready, failed) is for tests that need hybrid answers.
async function showModelState() {
  const status = await client.status().catch(() => null);
  if (status?.model_state === "pending") {
    $("engine").title = "Agent: answering from keyword search until the embedding model is loaded";
  } else if (status && !status.model) {
    setPill("engine", "degraded", "keyword search only");
    $("engine").title = `Agent: the embedding model is unavailable (${status.model_error || "not loaded"})`;
  } else if (status) {
    $("engine").title = "Agent: ready (keyword and semantic search)";
  }
  if (status && document.body.dataset.model !== "failed") document.body.dataset.model = status.model_state;
  if (status?.storage_error) storageProblem(status.storage_error);
}

const threads = Number(new URLSearchParams(location.search).get("threads")) || undefined;
const client = await AgentClient.create({ onEvent: onBootEvent, threads });
window.wasmagentClient = client;

const diagnostics = diagnosticsPanel(client);
const knowledge = knowledgePanel(client, state);
server = serverPanel(client, state);
modelPanel();

const chat = new Chat({
  client,
  kb: () => state.kb,
  // The origin an answer may come from: the server this page is linked to as it is asked.
  server: () => (state.server && state.link === "connected" ? state.server.origin : null),
  after: () => diagnostics.refresh(),
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

registerServiceWorker().catch((err) => console.warn("service worker:", err));
client.ready.then(async () => {
  await knowledge.refresh();
  await chat.restoreHistory();
  chat.resumeAnswers();
  knowledge.resume().catch((err) => knowledge.message(`Could not resume adding documents: ${err.message}`));
  await server.reconnect();
});
