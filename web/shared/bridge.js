// The only way a page talks to the agent worker: promise-based requests and a stream of events
// over postMessage, following the versioned protocol (protocol.js, generated from
// wasmagent/protocol). Every message is validated on this side too: a bad request is refused
// before it leaves, and a malformed event is reported instead of being trusted.
import { ERROR_CODES, SCHEMA, event as wireEvent, isTerminal, request } from "./protocol.js";
import { validate } from "./schema.js";

export class AgentError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "AgentError";
    this.code = code;
  }
}

let counter = 0;
const nextId = () => `r${Date.now().toString(36)}-${(++counter).toString(36)}`;

export class AgentClient {
  // Start the worker; `ready` settles when the agent reports it can answer.
  // `threads` sets onnxruntime-web's thread count (only used when crossOriginIsolated); `kb`
  // names the shipped knowledge base (kb/<name>.kv) the worker installs on first boot;
  // `localModel: false` keeps the worker from ever loading the local model, even if installed.
  static async create({ base = new URL("./", import.meta.url), workerUrl, onEvent, threads, kb, localModel = true } = {}) {
    const url = new URL(workerUrl ?? new URL("../worker/worker.js", base));
    if (threads) url.searchParams.set("threads", String(threads));
    if (kb) url.searchParams.set("kb", kb);
    if (!localModel) url.searchParams.set("llm", "off");
    // A worker the page's first script (page/start.js, widget/start.js) already started for this
    // very URL is adopted with what it sent meanwhile; one for another URL is not ours to use.
    const key = Symbol.for("wasmagent.earlyWorker");
    const early = globalThis[key];
    delete globalThis[key];
    if (early && early.url !== url.href) early.worker.terminate();
    const adopted = early?.url === url.href ? early : null;
    const worker = adopted?.worker ?? new Worker(url, { type: "module" });
    return new AgentClient(worker, SCHEMA, onEvent, adopted);
  }

  constructor(worker, schema, onEvent, early = null) {
    this.worker = worker;
    this.schema = schema;
    this.listeners = new Set(onEvent ? [onEvent] : []);
    this.pending = new Map();
    // Boot and other unattributed events, kept for the diagnostics panel and tests.
    this.bootLog = [];
    this.ready = new Promise((resolve, reject) => {
      this._ready = { resolve, reject };
    });
    // Callers that never await `ready` must not see an unhandled rejection when boot fails.
    this.ready.catch(() => {});
    const listen = () => {
      worker.onmessage = (e) => this._receive(e.data);
      worker.onerror = (e) => this._fail(new AgentError(ERROR_CODES.INTERNAL, e.message || "the worker crashed"));
    };
    if (!early) return void listen();
    // What an adopted worker sent so far is replayed in a later task, once the caller holds
    // this client (its listeners may use it); the early handlers keep queueing until then.
    setTimeout(() => {
      listen();
      for (const data of early.messages.splice(0)) this._receive(data);
      for (const e of early.errors.splice(0)) worker.onerror(e);
    });
  }

  // Listen to every event (including boot progress, whose id is null). Returns an unsubscribe.
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // Send a request. Resolves with {events, result, answer} on `done`; rejects with AgentError on
  // `error`. `onEvent` sees this request's events as they stream; `signal` cancels it.
  request(type, params = {}, { onEvent, signal } = {}) {
    const message = request(type, nextId(), params);
    const def = this.schema.$defs.requests[type];
    const problem = def ? validate(def, message) : `unknown request type ${type}`;
    if (problem) return Promise.reject(new AgentError("bad_message", problem));
    return new Promise((resolve, reject) => {
      const entry = { events: [], onEvent, resolve, reject, result: undefined, answer: undefined };
      this.pending.set(message.id, entry);
      if (signal) {
        if (signal.aborted) queueMicrotask(() => this.cancel(message.id));
        else signal.addEventListener("abort", () => this.cancel(message.id), { once: true });
      }
      this.worker.postMessage(JSON.stringify(message));
    });
  }

  cancel(target) {
    if (!this.pending.has(target)) return;
    this.worker.postMessage(JSON.stringify(request("cancel", nextId(), { target })));
  }

  // Post a raw message as is, bypassing validation: for tests of the worker's own checks.
  postRaw(data) {
    this.worker.postMessage(data);
  }

  ask(text, options = {}) {
    const { kb, top_k, ...rest } = options;
    const params = { text };
    if (kb) params.kb = kb;
    if (top_k) params.top_k = top_k;
    return this.request("ask", params, rest);
  }

  status() {
    return this.request("status").then((r) => r.result);
  }

  embed(texts) {
    return this.request("embed", { texts }).then((r) => r.result.vectors);
  }

  terminate() {
    this.worker.terminate();
    this._fail(new AgentError(ERROR_CODES.CANCELLED, "the agent was shut down"));
  }

  _receive(data) {
    let event;
    try {
      event = typeof data === "string" ? JSON.parse(data) : data;
    } catch {
      return this._emit(wireEvent("error", null, { code: ERROR_CODES.BAD_JSON, message: "worker sent invalid JSON" }));
    }
    const def = this.schema.$defs.events[event?.type];
    const problem = def ? validate(def, event, "event") : `unknown event type ${event?.type}`;
    if (problem) {
      event = wireEvent("error", event?.id ?? null, { code: ERROR_CODES.BAD_MESSAGE, message: `invalid event: ${problem}` });
    }
    this._emit(event);
  }

  _emit(event) {
    for (const listener of this.listeners) listener(event);
    if (event.id === null) {
      this.bootLog.push({ ...event, at: Math.round(performance.now()) });
      if (event.type === "progress" && event.stage === "ready") this._ready.resolve(event);
      if (event.type === "error" && event.code === ERROR_CODES.NOT_READY) this._fail(new AgentError(event.code, event.message));
      return;
    }
    const entry = this.pending.get(event.id);
    if (!entry) return;
    entry.events.push(event);
    if (event.type === "result") entry.result = event.data;
    if (event.type === "answer") entry.answer = event;
    entry.onEvent?.(event);
    if (!isTerminal(event)) return;
    this.pending.delete(event.id);
    if (event.type === "error") entry.reject(new AgentError(event.code, event.message));
    else entry.resolve({ events: entry.events, result: entry.result, answer: entry.answer });
  }

  _fail(error) {
    this._ready.reject(error);
    for (const entry of this.pending.values()) entry.reject(error);
    this.pending.clear();
  }
}
