// The agent inside the widget's frame (embed.html, on the app's origin, inside a host page).
// It boots its own worker through bridge.js, renders the conversation with chat.js (the app's
// own view), loads the site owner's tools file, and talks to the host page only through the
// MessagePort of the handshake (embed-link.js).
//
// Port messages, frame -> host: hello {page}, ready {threads, crossOriginIsolated, storage, kb,
// tools, version, server}, answer {question, answer}, error {code, message, question?}, reply {id,
// answer | error}, close. Host -> frame: tools {source, code | error}, ask {id, text}, focus.
import { AgentClient } from "../shared/bridge.js";
import { ERROR_CODES, SCHEMA } from "../shared/protocol.js";
import { validate } from "../shared/schema.js";
import { Chat, bootView } from "../shared/chat.js";
import { connectHost } from "./embed-link.js";
import { modelPanel } from "../page/model.js";

const $ = (id) => document.getElementById(id);
const { port, config } = await connectHost();
const send = (message) => port.postMessage(message);

document.title = config.title;
if (config.accent) document.documentElement.style.setProperty("--accent", config.accent);
$("boot").hidden = false;
$("chat").hidden = false;

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
}

// What the host sees of an answer (not the protocol's envelope).
const plain = ({ text, citations, confident, route }) => ({ text, citations, confident, route });

function report(code, message, question) {
  send({ type: "error", code, message, ...(question === undefined ? {} : { question }) });
}

// data-model="local": the same install / cancel / remove controls as the app's Knowledge → Model.
if (config.model === "local") {
  $("model-settings").hidden = false;
  modelPanel();
}

// data-server: the owner's agent server. Its state is on show in the frame (the visitor's
// questions go there), and answers it wrote are labelled with its origin.
const server = config.server?.url ? config.server : null;
let link = "off";
function showLink(state) {
  link = state;
  if (!server) return;
  const words = { connected: "connected", reconnecting: "reconnecting…", off: "connecting…" };
  $("server-note").hidden = false;
  $("server-note").textContent = `Questions go to this site's agent server ${server.origin} (${words[link] ?? link}); ` +
    "answers come from this browser when it cannot be reached.";
}
const bootEvents = bootView(document, { onFail: (event) => report(event.code, event.message) });

const client = await AgentClient.create({
  kb: config.kb,
  localModel: config.model === "local",
  onEvent: (event) => {
    const progress = event.id === null && event.type === "progress";
    if (progress && event.stage === "server") showLink(event.message);
    else if (progress && event.stage === "model" && document.body.dataset.ready) showModel();
    else bootEvents(event);
  },
});

// The embedding model settles after "ready" (keyword answers meanwhile): body[data-model]
// (ready, failed) is for the owner's tests and ours, which expect hybrid answers.
async function showModel() {
  const status = await client.status().catch(() => null);
  if (status) document.body.dataset.model = status.model_state;
}

// The owner's tools file comes from the host page (it is on the owner's origin, not ours).
let toolsArrived;
const toolsFile = config.tools ? new Promise((resolve) => (toolsArrived = resolve)) : Promise.resolve(null);

// Questions wait for this: owner rules must be in place before the first question is routed.
const toolsLoaded = (async () => {
  await client.ready;
  const file = await toolsFile;
  if (!file) return [];
  try {
    if (file.error) throw Object.assign(new Error(`${file.source}: ${file.error}`), { code: "tools_load_failed" });
    const { result } = await client.request("tools.load", { source: file.source, code: file.code });
    return result.tools;
  } catch (err) {
    // For the owner: the whole message (with the traceback) in the host's `error` event and
    // console; for everyone, one line. The assistant goes on with its built-in tools.
    notice(`This site's own tools did not load (${err.message.split("\n")[0]}). The assistant works without them.`);
    report(err.code || "tools_load_failed", err.message);
    return [];
  }
})();
toolsLoaded.catch(() => {});

// The first connection attempt is waited for (server.connect gives up after a few seconds),
// so the visitor's first question does not go around the owner's server just because it was
// typed while the link was opening.
const linked = (async () => {
  if (config.server?.error) report("bad_message", config.server.error);
  if (!server) return null;
  showLink("off");
  await client.ready;
  try {
    await client.request("server.connect", { url: server.url });
  } catch (err) {
    report(err.code || "upstream_failed", `data-server: ${err.message}`);
  }
  return server.origin;
})();
linked.catch(() => {});

const chat = new Chat({
  client,
  kb: () => config.kb,
  server: () => (server && link === "connected" ? server.origin : null),
  ready: Promise.all([toolsLoaded, linked]),
  contained: true,
  onAnswer: (question, answer) => send({ type: "answer", question, answer: plain(answer) }),
  onError: (question, err) => report(err.code, err.message, question),
});
chat.say("agent welcome", config.welcome || (server
  ? "Hello! Ask me a question: I answer from this site's documents, with sources."
  : "Hello! Ask me a question: I answer from this site's documents, with sources, and everything runs privately in your browser."));

port.onmessage = async ({ data }) => {
  // The host page is another origin's code: what it sends must fit the widget schema.
  const def = SCHEMA.$defs.widget[data?.type];
  const problem = def ? validate(def, data, "port message") : `unknown port message ${data?.type}`;
  if (problem) {
    // A host page's `ask` still gets its reply (its promise must settle), as an error.
    if (data?.type === "ask" && typeof data.id === "string") {
      return send({ type: "reply", id: data.id, error: { code: ERROR_CODES.BAD_MESSAGE, message: problem } });
    }
    return report(ERROR_CODES.BAD_MESSAGE, problem);
  }
  if (data.type === "tools") toolsArrived?.(data);
  else if (data.type === "focus") $("ask").focus();
  else if (data.type === "ask") {
    try {
      send({ type: "reply", id: data.id, answer: plain(await chat.ask(data.text)) });
    } catch (err) {
      send({ type: "reply", id: data.id, error: { code: err.code || "internal", message: err.message } });
    }
  }
};
send({ type: "hello", page: "app" });

// Escape closes the panel from inside the frame too (keyboard users), unless a dialog is open.
addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !$("viewer").open) send({ type: "close" });
});

try {
  await client.ready;
  const status = await client.status();
  if (status.seed_error) {
    notice(`The knowledge base “${config.kb}” is not available: ${status.seed_error}`);
    report("not_found", `data-kb="${config.kb}": ${status.seed_error}`);
  }
  send({
    type: "ready",
    threads: status.threads,
    crossOriginIsolated: status.cross_origin_isolated,
    storage: status.storage,
    kb: config.kb,
    tools: await toolsLoaded,
    version: status.version,
    server: await linked,
  });
  document.body.dataset.ready = "true";
  showModel();
  await chat.restoreHistory();
} catch (err) {
  report(err.code || "not_ready", err.message);
}
