// The conversation view that the app (index.html) and the embedded widget (embed.html) share:
// boot progress, questions with streamed and cited answers, the citation viewer and history.
// Both pages use the same element ids (#log, #ask-form, #ask, #send, #viewer..., #boot...).
// Everything that comes from documents, questions or answers is inserted with textContent,
// never as HTML.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

const STAGES = { runtime: "Loading the Python runtime…", packages: "Loading the wasmagent package…", model: "Loading the embedding model…" };
const mb = (n) => (n / 1048576).toFixed(1);

// A listener for the agent's boot events (id null) that drives the #boot section of `root`.
export function bootView(root, { onReady = () => {}, onFail = () => {} } = {}) {
  const $ = (id) => root.getElementById(id);
  return (event) => {
    if (event.id !== null) return;
    if (event.type === "progress") {
      if (STAGES[event.stage]) $("boot-label").textContent = event.message || STAGES[event.stage];
      if (event.total) {
        $("boot-progress").max = event.total;
        $("boot-progress").value = event.loaded ?? 0;
        $("boot-bytes").textContent = `${mb(event.loaded ?? 0)} / ${mb(event.total)} MB`;
      }
      if (event.stage === "ready") {
        $("boot").hidden = true;
        onReady(event);
      }
    } else if (event.type === "error") {
      $("boot-label").textContent = `The agent could not start: ${event.message}`;
      onFail(event);
    }
  };
}

function highlighted(text, quote) {
  const p = el("p");
  const probe = quote.slice(0, 80);
  const at = probe ? text.indexOf(probe) : -1;
  if (at < 0) {
    p.textContent = text;
    return p;
  }
  const end = Math.min(text.length, at + quote.length);
  p.append(text.slice(0, at), el("mark", { textContent: text.slice(at, end) }), text.slice(end));
  return p;
}

// Consecutive passages of one section, with the text each repeats from the one before it
// (at least a few words, never a coincidental letter) left out.
function withoutOverlap(texts) {
  const out = [];
  for (const text of texts) {
    const prev = out.at(-1);
    let cut = 0;
    for (let k = Math.min(prev?.length ?? 0, text.length); k >= 20; k--) {
      if (prev.endsWith(text.slice(0, k))) {
        cut = k;
        break;
      }
    }
    if (cut) out[out.length - 1] = prev + text.slice(cut);
    else out.push(text);
  }
  return out;
}

const SERVER_ROUTES = new Set(["llm", "llm_fallback"]);

export class Chat {
  // `kb()` names the knowledge base questions go to. `ready` is awaited before a question is
  // sent (the widget holds questions until the owner's tools are loaded). `onAnswer(question,
  // answer)` and `onError(question, error)` see every outcome, typed or asked through `ask`.
  // `contained`: the log scrolls itself (the widget), so a new message scrolls only the log;
  // scrollIntoView could also scroll the pages around the frame.
  // `server()` names the origin of the agent server answers may come from now (or null): an
  // answer the server wrote (route llm, llm_fallback) is labelled with it, so its text is never
  // taken for one computed from the user's documents in this browser.
  constructor({ client, root = document, kb = () => "default", server = () => null, ready = Promise.resolve(), onAnswer, onError, after, contained = false } = {}) {
    this.client = client;
    this.server = server;
    this.contained = contained;
    this.root = root;
    this.kb = kb;
    this.ready = ready;
    this.onAnswer = onAnswer;
    this.onError = onError;
    this.$ = (id) => root.getElementById(id);
    this.$("ask-form").addEventListener("submit", (e) => this._submit(e, after));
  }

  say(role, text) {
    const div = el("div", { className: `msg ${role}` });
    div.append(el("span", { className: "text", textContent: text }));
    this.$("log").append(div);
    this._reveal(div);
    return div;
  }

  // Label `reply` as written by a server: `origin` while it streams (null: not from a server),
  // then by the answer's route.
  markOrigin(reply, origin, route) {
    reply.querySelector(".from")?.remove();
    const local = { local_llm: "Written by the local model in this browser",
      local_llm_fallback: "Started by the local model, finished without it in this browser" }[route];
    if (local) {
      reply.prepend(el("span", { className: "from", textContent: local }));
      return;
    }
    const fromServer = route === undefined ? Boolean(origin) : SERVER_ROUTES.has(route);
    reply.classList.toggle("remote", fromServer);
    if (!fromServer) return;
    const where = origin ? `the server ${origin}` : "an agent server";
    const text = route === "llm_fallback"
      ? `Started by ${where}, finished in this browser`
      : `Answer from ${where}`;
    reply.prepend(el("span", { className: "from", textContent: text }));
  }

  _reveal(node) {
    const log = this.$("log");
    if (this.contained) log.scrollTop = log.scrollHeight;
    else node.scrollIntoView({ block: "end" });
  }

  renderSources(container, citations, kb) {
    if (!citations.length) return;
    const list = el("div", { className: "sources" });
    citations.forEach((c, i) => {
      const label = `[${i + 1}] ${c.title || c.source}`;
      const link = el("a", { href: `#${encodeURIComponent(c.source)}`, textContent: label, title: `${c.source}${c.anchor ? "#" + c.anchor : ""}` });
      link.addEventListener("click", (e) => {
        e.preventDefault();
        this.openViewer(kb, c);
      });
      list.append(link);
    });
    container.append(list);
  }

  async openViewer(kb, citation) {
    const $ = this.$;
    $("viewer-title").textContent = citation.title || citation.source;
    $("viewer-source").textContent = `${citation.source}${citation.anchor ? "#" + citation.anchor : ""}`;
    const body = $("viewer-body");
    body.replaceChildren(el("p", { textContent: citation.text || citation.snippet || "" }));
    $("viewer").showModal();
    try {
      const { result } = await this.client.request("kb.passage", { kb, source: citation.source, anchor: citation.anchor || "" });
      const quote = (citation.text || citation.snippet || "").replace(/^…|…$/g, "").trim();
      // The section's passages overlap (chunking repeats a sentence or two at each cut): shown
      // joined, so no text appears twice, with the quote marked where it first appears.
      let marked = false;
      body.replaceChildren(...withoutOverlap(result.texts).map((t) => {
        const p = marked ? el("p", { textContent: t }) : highlighted(t, quote);
        marked ||= p.querySelector("mark") !== null;
        return p;
      }));
      // On a small screen the cited sentence can sit far below the top of a long passage.
      body.querySelector("mark")?.scrollIntoView({ block: "center" });
    } catch {
      /* the snippet shown above is all we have (e.g. the knowledge base was deleted) */
    }
  }

  // Show the question and its streamed answer; resolves with the answer event, or rejects
  // with the AgentError after showing it.
  async ask(text) {
    this.say("user", text);
    const reply = this.say("agent", "…");
    const body = reply.querySelector(".text");
    let streamed = "";
    let answered = null;
    const kb = this.kb();
    const origin = this.server();
    this.markOrigin(reply, origin);
    try {
      await this.ready;
      const { answer } = await this.client.ask(text, {
        kb,
        onEvent: (ev) => {
          if (ev.type === "delta") body.textContent = streamed += ev.text;
          if (ev.type === "tool_call" || ev.type === "tool_result") showStep(reply, ev);
          if (ev.type === "answer") answered = ev;
        },
      });
      body.textContent = answer.text;
      this.markOrigin(reply, origin, answer.route);
      this.renderSources(reply, answer.citations, kb);
      this._reveal(reply);
      this.onAnswer?.(text, answer);
      return answer;
    } catch (err) {
      if (answered) {
        // The answer arrived but could not be saved (full storage): keep it, and say so.
        body.textContent = answered.text;
        this.markOrigin(reply, origin, answered.route);
        this.renderSources(reply, answered.citations, kb);
        reply.append(el("p", { className: "note", textContent: `${err.message} (${err.code})` }));
        this.onError?.(text, err);
        return answered;
      }
      reply.classList.add("error");
      this.markOrigin(reply, null, "error"); // the error is this browser's own words
      body.textContent = `${err.message} (${err.code})`;
      this.onError?.(text, err);
      throw err;
    }
  }

  async _submit(e, after) {
    e.preventDefault();
    const input = this.$("ask");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    this.$("send").disabled = true;
    try {
      await this.ask(text);
    } catch {
      /* shown in the conversation */
    } finally {
      this.$("send").disabled = false;
      input.focus();
      after?.();
    }
  }

  // Earlier questions and answers go after a welcome message and before anything asked while
  // they were loading.
  async restoreHistory() {
    const log = this.$("log");
    const later = [...log.children].filter((node) => !node.classList.contains("welcome"));
    try {
      const { result } = await this.client.request("history.list", { limit: 50 });
      for (const item of result.items) {
        this.say("user", item.question);
        const reply = this.say("agent", item.answer);
        this.markOrigin(reply, null, item.route);
        this.renderSources(reply, item.citations, this.kb());
      }
    } catch {
      /* no storage: nothing to restore */
    }
    log.append(...later);
  }

  // Answers the page was reloaded (or closed) in the middle of: an agent run with tools is a
  // durable job in the worker, which resumes it from its journal with nobody to stream to.
  // Each shows under its question, its progress as it goes, then its answer and its steps.
  async resumeAnswers() {
    let jobs = [];
    try {
      ({ result: { jobs } } = await this.client.request("jobs.list", { limit: 20 }));
    } catch {
      return; // no storage, no journal
    }
    for (const job of jobs.filter((j) => j.kind === "answer" && j.status === "running")) {
      // (A job's title is "answer: " and the question, shortened; the result has it whole.)
      const asked = this.say("user", job.title.replace(/^answer: /, ""));
      this._finishResumed(asked, this.say("agent", "Resuming this answer after the reload…"), job);
    }
  }

  async _finishResumed(asked, reply, job) {
    const text = reply.querySelector(".text");
    reply.classList.add("resuming");
    try {
      const { result } = await this.client.request("jobs.watch", { job: job.id }, {
        onEvent: (ev) => {
          if (ev.type === "progress" && ev.message) text.textContent = `Resuming this answer after the reload: ${ev.message}…`;
        },
      });
      const record = result.result ? result : { status: "done", result };
      if (record.status !== "done") throw new Error(record.last_error?.message || record.status);
      const answered = record.result;
      asked.querySelector(".text").textContent = answered.question;
      text.textContent = answered.answer;
      this.markOrigin(reply, null, answered.route);
      this.renderSources(reply, answered.citations, this.kb());
      answered.calls.forEach((call, i) => {
        const id = `resumed-${i}`;
        showStep(reply, { type: "tool_call", call_id: id, name: call.name, arguments: call.arguments ?? "{}" });
        showStep(reply, { type: "tool_result", call_id: id, name: call.name, ok: call.ok, text: call.text });
      });
    } catch (err) {
      text.textContent = `This answer could not be finished after the reload: ${err.message}`;
      reply.classList.add("error");
    } finally {
      reply.classList.remove("resuming");
    }
  }
}

// The agent's tool steps, compact ("calculator(17 * 23) → 391"), above the answer: one line
// per call, filled in when its result comes; a details element keeps them out of the way.
function showStep(reply, ev) {
  let steps = reply.querySelector(".steps");
  if (!steps) {
    steps = el("details", { className: "steps" }, el("summary", { textContent: "Steps" }), el("ol"));
    reply.querySelector(".text").before(steps);
  }
  let line = [...steps.querySelectorAll("li")].find((li) => li.dataset.call === ev.call_id);
  if (!line) {
    line = el("li", {});
    line.dataset.call = ev.call_id;
    steps.querySelector("ol").append(line);
  }
  if (ev.type === "tool_call") {
    line.textContent = `${ev.name}(${shownArguments(ev.arguments)}) → …`;
  } else {
    line.textContent = `${line.textContent.replace(/ → …$/, "") || ev.name} → ${ev.ok ? ev.text : `failed: ${ev.text}`}`;
    line.classList.toggle("failed", !ev.ok);
  }
  const count = steps.querySelectorAll("li").length;
  steps.querySelector("summary").textContent = `${count} tool call${count === 1 ? "" : "s"}`;
}

// `{"expression": "17 * 23"}` reads better as `17 * 23`; several arguments as `a=1, b=2`.
function shownArguments(json) {
  try {
    const args = JSON.parse(json);
    const values = Object.entries(args);
    if (values.length === 1) return String(values[0][1]);
    return values.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
  } catch {
    return json;
  }
}
