/* wasmagent widget: <script src="https://APP/widget.js" data-kb="default" data-title="Help" defer></script>
 *
 * The only code that runs on the host page. It puts a launcher button and a panel in one
 * <wasmagent-widget> element (a shadow root, so the page's CSS cannot reach in and ours cannot
 * leak out) and, only when the panel is first opened (or preloaded when idle, or asked through
 * the API), a frame from the app's origin that runs the agent with its own worker, storage and
 * CSP. The page and the frame talk through one MessagePort handed over with the app's origin as
 * the explicit target origin: this script never listens to window messages at all.
 *
 * data-server="wss://agent.example.com/v1/ws": answers come from the site owner's agent server
 * (its LLM decides, the owner's tools still run in the visitor's browser); checked in the frame.
 *
 * API: wasmagent.open(), .close(), .toggle(), .preload(), .ask(text) -> Promise<answer>,
 * .on("ready" | "answer" | "error" | "open" | "close", fn) -> unsubscribe.
 */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || window.wasmagent) return console.warn("wasmagent: widget.js is loaded twice or as a module; ignoring this copy");
  const app = new URL("./", script.src);
  const d = script.dataset;
  const accent = d.accent && CSS.supports("color", d.accent) ? d.accent : "";
  const title = (d.title || "Assistant").slice(0, 80);
  const config = { kb: d.kb || "default", title, welcome: d.welcome || "", accent, tools: !!d.tools, model: d.model === "local" ? "local" : "", server: d.server || "" };

  const listeners = {};
  const emit = (type, detail) => (listeners[type] || []).forEach((fn) => {
    try { fn(detail); } catch (err) { console.error(err); }
  });
  const failure = (code, message) => Object.assign(new Error(message), { name: "WasmagentError", code });

  // ---- the container ------------------------------------------------------------------------
  const h = (tag, props = {}, ...kids) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...kids);
    return node;
  };
  const aria = (node, values) => {
    for (const [key, value] of Object.entries(values)) node.setAttribute(`aria-${key}`, value);
    return node;
  };
  const icon = (path) => {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    const p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    svg.append(p);
    return svg;
  };
  const BUBBLE = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z";
  const CROSS = "M6 6l12 12M18 6L6 18";

  const host = document.createElement("wasmagent-widget");
  const root = host.attachShadow({ mode: "open" });
  const css = `:host{all:initial!important;display:contents!important}
.w{--accent:#1a5fb4;--bg:#fff;--fg:#1d1f21;--muted:#5f6368;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg)}
@media (prefers-color-scheme:dark){.w{--bg:#1f2226;--fg:#e8eaed;--muted:#9aa0a6}}
button{font:inherit;margin:0;cursor:pointer}
.launcher{position:fixed;z-index:2147483000;bottom:max(16px,env(safe-area-inset-bottom));right:16px;width:56px;height:56px;padding:0;border:0;border-radius:50%;background:var(--accent);color:#fff;box-shadow:0 4px 14px rgb(0 0 0/.28);display:grid;place-items:center}
.left .launcher,.left .panel{right:auto;left:16px}
svg{width:26px;height:26px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}
.launcher:focus-visible{outline:3px solid var(--accent);outline-offset:3px}
.panel{position:fixed;z-index:2147483001;right:16px;bottom:88px;width:min(400px,calc(100vw - 32px));height:min(640px,calc(100vh - 112px));display:flex;flex-direction:column;background:var(--bg);border-radius:14px;box-shadow:0 12px 40px rgb(0 0 0/.3);overflow:hidden}
.panel[hidden]{display:none}
.head{display:flex;align-items:center;gap:8px;padding:8px 8px 8px 16px;background:var(--accent);color:#fff}
.title{flex:1;margin:0;font-size:16px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.close{width:40px;height:40px;padding:0;border:0;border-radius:8px;background:none;color:inherit;display:grid;place-items:center}
.close:hover{background:rgb(255 255 255/.18)}.close:focus-visible{outline:2px solid #fff;outline-offset:-4px}
.body{position:relative;flex:1;min-height:0}
.status{position:absolute;inset:0;margin:0;padding:24px;display:grid;place-items:center;text-align:center;color:var(--muted);font-size:14px}
iframe{position:absolute;inset:0;width:100%;height:100%;border:0;display:block}
@media (max-width:480px),(max-height:560px){.panel{inset:0!important;width:auto;height:auto;border-radius:0}.open .launcher{display:none}}
@media (prefers-reduced-motion:no-preference){.panel{animation:rise .18s ease-out}@keyframes rise{from{opacity:0;transform:translateY(12px)}}}`;
  // A constructed stylesheet is not an inline <style>, so a host's strict style-src allows it.
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
  } catch {
    root.append(h("style", { textContent: css }));
  }

  const launcher = aria(h("button", { className: "launcher", type: "button" }, icon(BUBBLE)), { label: title, expanded: "false" });
  const close = aria(h("button", { className: "close", type: "button" }, icon(CROSS)), { label: "Close" });
  const status = h("p", { className: "status", textContent: "Starting the assistant…" });
  const body = h("div", { className: "body" }, status);
  const panel = aria(h("div", { className: "panel", hidden: true, role: "dialog" },
    h("div", { className: "head" }, h("h2", { className: "title", textContent: title }), close), body), { label: title });
  const wrap = h("div", { className: `w ${d.position === "bottom-left" ? "left" : "right"}` }, launcher, panel);
  if (accent) wrap.style.setProperty("--accent", accent);
  root.append(wrap);
  (document.body || document.documentElement).append(host);

  // ---- the frame and its port ---------------------------------------------------------------
  let frame = null;
  let port = null;
  let state = "idle"; // idle -> connecting -> app (the agent page answered) -> ready | refused | failed
  let fatal = null;
  let watchdog = 0;
  let seq = 0;
  const pending = new Map(); // ask id -> {text, resolve, reject, sent}
  let toolsFile = null;

  function loadTools() {
    const url = new URL(d.tools, location.href);
    if (url.origin !== location.origin) return Promise.resolve({ source: d.tools, error: "data-tools must be a file on this site" });
    return fetch(url, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text().then((code) => ({ source: url.pathname, code })) : { source: url.pathname, error: `HTTP ${r.status}` }))
      .catch((err) => ({ source: url.pathname, error: String(err?.message || err) }));
  }

  function fail(code, message) {
    if (fatal) return;
    fatal = failure(code, message);
    state = code === "origin_refused" ? "refused" : "failed";
    clearTimeout(watchdog);
    status.textContent = message;
    for (const ask of pending.values()) ask.reject(fatal);
    pending.clear();
    console.error(`wasmagent: ${message}`);
    emit("error", { code, message });
  }

  function ensureFrame() {
    if (frame) return;
    state = "connecting";
    if (d.tools) toolsFile = loadTools();
    frame = h("iframe", { title, src: new URL("embed-gate.html", app).href });
    frame.addEventListener("load", connect);
    body.append(frame);
  }

  // Every page the frame loads (the gate, then the agent) gets a fresh channel. The target
  // origin makes the browser drop the message, port and all, if the frame is not the app.
  function connect() {
    if (fatal) return;
    port?.close();
    const channel = new MessageChannel();
    port = channel.port1;
    port.onmessage = (e) => receive(e.data || {});
    frame.contentWindow.postMessage({ wasmagent: 1, type: "connect", config }, app.origin, [channel.port2]);
    // A reloaded frame lost the questions it had: they go again once it is up.
    for (const ask of pending.values()) ask.sent = false;
    clearTimeout(watchdog);
    watchdog = setTimeout(() => fail("unreachable", `The assistant at ${app.origin} did not answer.`), 20000);
  }

  function sendAsks() {
    for (const [id, ask] of pending) {
      if (!ask.sent) port.postMessage({ type: "ask", id, text: ask.text });
      ask.sent = true;
    }
  }

  function receive(m) {
    if (m.type === "hello") {
      clearTimeout(watchdog);
      if (m.page !== "app") return;
      state = "app";
      toolsFile?.then((file) => port.postMessage({ type: "tools", ...file }));
      if (!panel.hidden) port.postMessage({ type: "focus" });
      sendAsks();
    } else if (m.type === "refused") {
      fail("origin_refused", String(m.message));
    } else if (m.type === "ready") {
      state = "ready";
      const { type, ...detail } = m;
      emit("ready", detail);
    } else if (m.type === "answer") {
      emit("answer", { question: m.question, ...m.answer });
    } else if (m.type === "error") {
      if (m.question === undefined) console.error(`wasmagent: ${m.message}`);
      emit("error", { code: m.code, message: m.message, question: m.question });
    } else if (m.type === "reply") {
      const ask = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) ask?.reject(failure(m.error.code, m.error.message));
      else ask?.resolve(m.answer);
    } else if (m.type === "close") {
      hide();
    }
  }

  // ---- open, close, ask ---------------------------------------------------------------------
  // Showing the panel only writes to the DOM. The frame is created, then focused, in later
  // tasks, after the panel has painted: a forced layout with a new frame in it can cost tens of
  // milliseconds on a slow device, and each step must stay far below a 50 ms long task.
  const later = (fn) => requestAnimationFrame(() => setTimeout(fn));
  function show() {
    if (!panel.hidden) return;
    panel.hidden = false;
    wrap.classList.add("open");
    aria(launcher, { expanded: "true" });
    launcher.replaceChildren(icon(CROSS));
    emit("open");
    later(() => {
      ensureFrame();
      later(() => {
        if (panel.hidden) return;
        frame.focus({ preventScroll: true });
        if (state === "app" || state === "ready") port.postMessage({ type: "focus" });
      });
    });
  }

  function hide() {
    if (panel.hidden) return;
    const inside = root.activeElement !== null;
    panel.hidden = true;
    wrap.classList.remove("open");
    aria(launcher, { expanded: "false" });
    launcher.replaceChildren(icon(BUBBLE));
    if (inside) launcher.focus();
    emit("close");
  }

  launcher.addEventListener("click", () => (panel.hidden ? show() : hide()));
  close.addEventListener("click", hide);
  wrap.addEventListener("keydown", (e) => {
    if (e.key === "Escape") hide();
  });

  function ask(text) {
    if (typeof text !== "string" || !text.trim()) {
      const err = failure("bad_message", "ask() needs a question (a non-empty string)");
      emit("error", { code: err.code, message: err.message });
      return Promise.reject(err);
    }
    if (fatal) return Promise.reject(fatal);
    ensureFrame();
    return new Promise((resolve, reject) => {
      const id = `h${++seq}`;
      pending.set(id, { text, resolve, reject, sent: false });
      if (state === "app" || state === "ready") sendAsks();
    });
  }

  if (d.preload === "idle") (window.requestIdleCallback || ((fn) => setTimeout(fn, 2000)))(ensureFrame, { timeout: 10000 });

  window.wasmagent = Object.freeze({
    open: show,
    close: hide,
    toggle: () => (panel.hidden ? show() : hide()),
    preload: ensureFrame,
    ask,
    on(type, fn) {
      (listeners[type] ||= new Set()).add(fn);
      return () => listeners[type].delete(fn);
    },
    get isOpen() {
      return !panel.hidden;
    },
    get state() {
      return state;
    },
  });
})();
