// The frame's end of the widget handshake, shared by embed-gate.html and embed.html.
//
// The host page's widget.js posts one `connect` message into this frame, with a MessagePort and
// our origin as its explicit target origin. We take it only from our parent window, only once
// per page, and only if the parent's origin and every ancestor's are in the site owner's
// allowlist (embed.json: the same list the server puts in embed.html's frame-ancestors header).
// Everything after that goes through the port, which only that parent holds: no other window
// message is ever read, so a page from any other origin can post here all it likes.

import { checkServerUrl } from "../worker/server-link.js";

export const HANDSHAKE = 1;
const KB_NAME = /^[A-Za-z0-9_-]{1,64}$/;

// `origin` is allowed by `entry`: the same origin, `*`, or `scheme://*.domain[:port]` (any
// subdomain, as in CSP). The app's own origin is always allowed.
function allows(entry, origin) {
  if (entry === origin) return true;
  if (entry === "*") return /^https?:\/\//.test(origin);
  if (!/^https?:\/\/\*\./.test(entry)) return false;
  try {
    const want = new URL(entry.replace("://*.", "://x."));
    const got = new URL(origin);
    return got.protocol === want.protocol && got.port === want.port && got.hostname.endsWith(want.hostname.slice(1));
  } catch {
    return false;
  }
}

function allowed(list, origin) {
  return origin === location.origin || list.some((entry) => allows(entry, origin));
}

function refuse(heading, text) {
  const section = document.getElementById("refused");
  section.querySelector("h1").textContent = heading;
  section.querySelector("p").textContent = text;
  section.hidden = false;
  document.title = heading;
}

// Only what the host may choose, checked: anything else falls back to a default.
function cleanConfig(raw = {}) {
  const text = (v, max) => (typeof v === "string" ? v.trim().slice(0, max) : "");
  return {
    kb: KB_NAME.test(raw.kb) ? raw.kb : "default",
    title: text(raw.title, 80) || "Assistant",
    welcome: text(raw.welcome, 500),
    accent: CSS.supports("color", text(raw.accent, 64)) ? text(raw.accent, 64) : "",
    tools: raw.tools === true,
    // "local": offer the visitor the opt-in local model; the download stays their choice.
    model: raw.model === "local" ? "local" : "",
    server: cleanServer(raw.server),
  };
}

// data-server: the site owner's own agent server (its LLM, and their tools relayed back here).
// The same rule as the app's: wss://, or ws:// to this computer. null: none chosen; {error}: a
// refused address, reported to the host page once while the widget answers locally.
function cleanServer(raw) {
  if (typeof raw !== "string" || !raw.trim()) return null;
  const checked = checkServerUrl(raw);
  return checked.error ? { error: `data-server="${raw.slice(0, 200)}": ${checked.error}` } : checked;
}

// Resolves with {port, origin, config} once an allowed parent connects. A refused parent gets a
// `refused` message on its port and this page shows why; the promise then never resolves.
export function connectHost() {
  if (window.parent === window) {
    refuse("This page belongs inside the wasmagent widget", "Open the app itself at ./ instead.");
    return new Promise(() => {});
  }
  const list = fetch("embed.json", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : {}))
    .then((config) => (Array.isArray(config.origins) ? config.origins : []))
    .catch(() => []);
  return new Promise((resolve) => {
    const onMessage = async (e) => {
      const data = e.data;
      if (e.source !== window.parent || data?.wasmagent !== HANDSHAKE || data.type !== "connect") return;
      const port = e.ports[0];
      if (!(port instanceof MessagePort)) return;
      removeEventListener("message", onMessage);
      const origins = await list;
      const chain = [e.origin, ...(location.ancestorOrigins ? [...location.ancestorOrigins] : [])];
      const stranger = chain.find((origin) => !allowed(origins, origin));
      if (stranger) {
        const message = `${stranger} is not allowed to embed the assistant of ${location.origin}. ` +
          "The site owner can add it to the app's embed allowlist (serve --embed-origin, or EMBED_ORIGINS when building).";
        refuse("The assistant is not available on this site", message);
        port.postMessage({ type: "refused", origin: stranger, message });
        return;
      }
      resolve({ port, origin: e.origin, config: cleanConfig(data.config) });
    };
    addEventListener("message", onMessage);
  });
}
