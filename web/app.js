// The page: starts the agent worker through bridge.js, shows boot progress, and runs the chat.
// Everything from documents, questions and answers is inserted as text, never as HTML.
import { AgentClient } from "./bridge.js";

const $ = (id) => document.getElementById(id);
const log = $("log");

function say(role, text, meta = "") {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  if (meta) {
    const span = document.createElement("span");
    span.className = "meta";
    span.textContent = meta;
    div.append(span);
  }
  log.append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function setPill(id, state, text) {
  const el = $(id);
  el.dataset.state = state;
  el.textContent = text;
}

function showNetwork() {
  setPill("net", navigator.onLine ? "online" : "offline", navigator.onLine ? "online" : "offline");
}
addEventListener("online", showNetwork);
addEventListener("offline", showNetwork);
showNetwork();

const STAGES = {
  runtime: "Loading the Python runtime…",
  download: null,
  packages: "Loading the wasmagent package…",
  model: "Loading the embedding model…",
};

function onBootEvent(event) {
  if (event.id !== null) return;
  if (event.type === "progress") {
    if (STAGES[event.stage]) $("boot-label").textContent = STAGES[event.stage];
    if (event.total) {
      $("boot-progress").max = event.total;
      $("boot-progress").value = event.loaded ?? 0;
      const mb = (n) => (n / 1048576).toFixed(1);
      $("boot-bytes").textContent = `${mb(event.loaded ?? 0)} / ${mb(event.total)} MB`;
    }
    if (event.stage === "ready") {
      $("boot").hidden = true;
      setPill("engine", "ready", "ready");
      document.body.dataset.ready = "true";
    }
  } else if (event.type === "error") {
    $("boot-label").textContent = `The agent could not start: ${event.message}`;
    setPill("engine", "failed", "failed");
  }
}

const client = await AgentClient.create({ onEvent: onBootEvent });
window.wasmagentClient = client;

$("ask-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("ask");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  say("user", text);
  const reply = say("agent", "…");
  $("send").disabled = true;
  let streamed = "";
  try {
    const { answer } = await client.ask(text, {
      onEvent: (ev) => {
        if (ev.type === "delta") {
          streamed += ev.text;
          reply.textContent = streamed;
        }
      },
    });
    reply.textContent = answer ? answer.text : streamed;
  } catch (err) {
    reply.classList.add("error");
    reply.textContent = `${err.message} (${err.code})`;
  } finally {
    $("send").disabled = false;
    input.focus();
  }
});
