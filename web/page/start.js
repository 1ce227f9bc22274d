// The app's first script, with no imports: it starts the agent worker at once, so Python boots
// while the page's own module graph (app.js and its panels) is still loading. bridge.js adopts
// this worker, and the messages it sent meanwhile, when AgentClient.create asks for the same URL.
// Measured: the worker started ~270 ms after navigation on a warm visit when app.js made it.
const url = new URL("../worker/worker.js", import.meta.url);
const threads = Number(new URLSearchParams(location.search).get("threads"));
if (threads) url.searchParams.set("threads", String(threads));
const early = { url: url.href, worker: new Worker(url, { type: "module" }), messages: [], errors: [] };
early.worker.onmessage = (e) => early.messages.push(e.data);
early.worker.onerror = (e) => early.errors.push(e);
globalThis[Symbol.for("wasmagent.earlyWorker")] = early;
