// The worker's WebSocket to an optional agent server (`python -m wasmagent server`).
// It reconnects with exponential backoff and jitter while a URL is configured, and routes the
// server's events to the request that is waiting for them. Python drives it through
// wasmagent.hosts.browser.JsLink; all decisions (what to ask, when to fall back) stay in Python.
import { SUBPROTOCOL, isTerminal, request } from "../shared/protocol.js";

const MAX_BACKOFF_MS = 30_000;

// Whether a server address may be used: the server receives every question and the top
// passages of the user's documents, so only an encrypted `wss://` address, or `ws://` to this
// computer itself (127.0.0.0/8, localhost, [::1]), is accepted. Returns {url, origin} or
// {error} (a sentence for the user). The page checks before it asks; the link checks again.
export function checkServerUrl(raw) {
  let parsed;
  try {
    parsed = new URL(String(raw ?? "").trim());
  } catch {
    return { error: "This is not a valid server address: it should look like wss://host/v1/ws." };
  }
  const host = parsed.hostname.toLowerCase();
  const loopback = host === "localhost" || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host);
  if (parsed.protocol === "wss:" || (parsed.protocol === "ws:" && loopback)) {
    if (parsed.username || parsed.password) {
      return { error: "A server address must not contain a user name or password: use the access token field." };
    }
    parsed.hash = "";
    return { url: parsed.href, origin: parsed.origin };
  }
  const shown = ["ws:", "wss:", "http:", "https:"].includes(parsed.protocol) ? parsed.origin : parsed.protocol;
  if (parsed.protocol === "ws:") {
    return { error: `${shown} is refused: an unencrypted ws:// address is allowed only to this computer (localhost, 127.0.0.1, [::1]); use wss:// for any other server.` };
  }
  return { error: `${shown} is refused: a server address must start with wss:// (or ws:// to this computer).` };
}

export function createLink({ onState = () => {} } = {}) {
  let url = null;
  let token = null;
  let socket = null;
  let connected = false;
  let attempt = 0;
  let timer = null;
  let lastError = null;
  let waiters = [];
  const streams = new Map();

  const changed = () => {
    if (connected) for (const w of waiters.splice(0)) w(true);
    onState(state());
  };

  function open() {
    clearTimeout(timer);
    if (!url) return;
    const protocols = [SUBPROTOCOL];
    // Browsers cannot set an Authorization header on a WebSocket: the token rides as a
    // subprotocol, which the server reads and never echoes back.
    if (token) protocols.push(`bearer.${token}`);
    let ws;
    try {
      ws = new WebSocket(url, protocols);
    } catch (err) {
      lastError = err.message;
      return schedule();
    }
    socket = ws;
    ws.onopen = () => {
      if (socket !== ws) return;
      connected = true;
      attempt = 0;
      lastError = null;
      changed();
    };
    ws.onmessage = (e) => receive(e.data);
    ws.onclose = (e) => {
      if (socket !== ws) return;
      socket = null;
      connected = false;
      if (e.code !== 1000) lastError = `connection closed (${e.code}${e.reason ? `: ${e.reason}` : ""})`;
      for (const stream of streams.values()) stream.fail(lastError || "the server closed the connection");
      streams.clear();
      changed();
      schedule();
    };
  }

  function receive(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (event.id === null && event.type === "error") {
      lastError = `${event.code}: ${event.message}`;
      return;
    }
    const stream = streams.get(event.id);
    if (!stream) return;
    if (isTerminal(event)) streams.delete(event.id);
    stream.push(data);
  }

  function schedule() {
    if (!url) return;
    const ceiling = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt);
    attempt += 1;
    timer = setTimeout(open, ceiling / 2 + Math.random() * (ceiling / 2));
  }

  // Configure the server and wait (up to `waitMs`) for the first connection.
  function connect(newUrl, newToken = null, waitMs = 5000) {
    disconnect();
    const checked = checkServerUrl(newUrl);
    if (checked.error) {
      lastError = checked.error;
      onState(state());
      return Promise.resolve(false);
    }
    url = newUrl;
    token = newToken;
    attempt = 0;
    const opened = new Promise((resolve) => {
      waiters.push(resolve);
      setTimeout(() => resolve(connected), waitMs);
    });
    open();
    return opened;
  }

  function disconnect() {
    url = null;
    clearTimeout(timer);
    const ws = socket;
    socket = null;
    connected = false;
    waiters.splice(0).forEach((w) => w(false));
    ws?.close(1000);
    onState(state());
  }

  // Send one request; events for its id come back through `next()` (a string, or null once
  // the request ended). `close()` before the end cancels it on the server.
  function exchange(json) {
    if (!connected || !socket) throw new Error(`not connected to a server${lastError ? ` (${lastError})` : ""}`);
    const { id } = JSON.parse(json);
    const queue = [];
    let wake = null;
    let failure = null;
    let ended = false;
    const stream = {
      push(data) {
        queue.push(data);
        wake?.();
      },
      fail(reason) {
        failure = reason;
        wake?.();
      },
    };
    streams.set(id, stream);
    socket.send(json);
    return {
      async next() {
        while (!queue.length && !failure) await new Promise((r) => (wake = r));
        wake = null;
        if (queue.length) {
          const data = queue.shift();
          if (!streams.has(id)) ended = true;
          return data;
        }
        throw new Error(failure);
      },
      close() {
        if (ended || !streams.has(id)) return;
        streams.delete(id);
        if (connected) socket.send(JSON.stringify(request("cancel", `${id}~cancel`, { target: id })));
      },
    };
  }

  function state() {
    return { url, connected, reconnecting: Boolean(url && !connected), attempt, last_error: lastError };
  }

  return { connect, disconnect, exchange, connected: () => connected, state };
}
