// The widget frame's first script, with no imports: it starts the agent worker at once, so
// Python boots while embed.js's module graph loads and the host page's handshake is made.
// embed-gate.js passes the cleaned config's kb and model in this page's hash (embed.html is only
// rendered inside an allowed site: the server's frame-ancestors); bridge.js adopts the worker
// only if the handshake asks for the same URL, and ends it otherwise.
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.has("kb")) {
  const url = new URL("../worker/worker.js", import.meta.url);
  url.searchParams.set("kb", hash.get("kb"));
  if (hash.get("model") !== "local") url.searchParams.set("llm", "off");
  const early = { url: url.href, worker: new Worker(url, { type: "module" }), messages: [], errors: [] };
  early.worker.onmessage = (e) => early.messages.push(e.data);
  early.worker.onerror = (e) => early.errors.push(e);
  globalThis[Symbol.for("wasmagent.earlyWorker")] = early;
}
