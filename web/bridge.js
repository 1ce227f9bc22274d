// The only way a page talks to the agent worker: promise-based requests and a stream of events
// over postMessage, following the versioned protocol (protocol.schema.json, generated from
// wasmagent/protocol.py). Every message is validated on this side too: a bad request is refused
// before it leaves, and a malformed event is reported instead of being trusted.
import { validate } from "./schema.js";

export const PROTOCOL_VERSION = 1;

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
  // Start the worker and load the schema; `ready` settles when the agent reports it can answer.
  // `threads` sets onnxruntime-web's thread count (only used when crossOriginIsolated); `kb`
  // names the shipped knowledge base (kb/<name>.kv) the worker installs on first boot.
  static async create({ base = new URL("./", import.meta.url), workerUrl, onEvent, threads, kb } = {}) {
    const schema = await fetch(new URL("protocol.schema.json", base)).then((r) => r.json());
    const url = new URL(workerUrl ?? new URL("worker.js", base));
    if (threads) url.searchParams.set("threads", String(threads));
    if (kb) url.searchParams.set("kb", kb);
    const worker = new Worker(url, { type: "module" });
    return new AgentClient(worker, schema, onEvent);
  }

  constructor(worker, schema, onEvent) {
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
    worker.onmessage = (e) => this._receive(e.data);
    worker.onerror = (e) => this._fail(new AgentError("internal", e.message || "the worker crashed"));
  }

  // Listen to every event (including boot progress, whose id is null). Returns an unsubscribe.
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // Send a request. Resolves with {events, result, answer} on `done`; rejects with AgentError on
  // `error`. `onEvent` sees this request's events as they stream; `signal` cancels it.
  request(type, params = {}, { onEvent, signal } = {}) {
    const message = { v: PROTOCOL_VERSION, type, id: nextId(), ...params };
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
    this.worker.postMessage(JSON.stringify({ v: PROTOCOL_VERSION, type: "cancel", id: nextId(), target }));
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
    this._fail(new AgentError("cancelled", "the agent was shut down"));
  }

  _receive(data) {
    let event;
    try {
      event = typeof data === "string" ? JSON.parse(data) : data;
    } catch {
      return this._emit({ v: 1, type: "error", id: null, code: "bad_json", message: "worker sent invalid JSON" });
    }
    const def = this.schema.$defs.events[event?.type];
    const problem = def ? validate(def, event, "event") : `unknown event type ${event?.type}`;
    if (problem) {
      event = { v: 1, type: "error", id: event?.id ?? null, code: "bad_message", message: `invalid event: ${problem}` };
    }
    this._emit(event);
  }

  _emit(event) {
    for (const listener of this.listeners) listener(event);
    if (event.id === null) {
      this.bootLog.push({ ...event, at: Math.round(performance.now()) });
      if (event.type === "progress" && event.stage === "ready") this._ready.resolve(event);
      if (event.type === "error" && event.code === "not_ready") this._fail(new AgentError(event.code, event.message));
      return;
    }
    const entry = this.pending.get(event.id);
    if (!entry) return;
    entry.events.push(event);
    if (event.type === "result") entry.result = event.data;
    if (event.type === "answer") entry.answer = event;
    entry.onEvent?.(event);
    if (event.type === "done") {
      this.pending.delete(event.id);
      entry.resolve({ events: entry.events, result: entry.result, answer: entry.answer });
    } else if (event.type === "error") {
      this.pending.delete(event.id);
      entry.reject(new AgentError(event.code, event.message));
    }
  }

  _fail(error) {
    this._ready.reject(error);
    for (const entry of this.pending.values()) entry.reject(error);
    this.pending.clear();
  }
}
