// The optional agent server (LLM answers). The server receives every question with the top
// passages of the user's documents, and its text is shown as the answer: nothing is sent to a
// server the user did not choose in this page. An address from a link (`?server=`) is only
// offered (#server-confirm, showing its origin); only "Connect" there, or the settings form,
// connects and saves it. The URL and token are kept in this browser's localStorage, marked
// confirmed, so the link comes back after a reload; the token never appears in a URL.
import { checkServerUrl } from "../worker/server-link.js";
import { setPill } from "./pills.js";

const $ = (id) => document.getElementById(id);
const SERVER_KEY = "wasmagent.server";
const MESSAGES = {
  connected: "Connected: questions use the server's LLM, with the local answer as fallback.",
  reconnecting: "Connection lost: answers come from this browser; reconnecting in the background.",
};

// `state.server`: the server this page configured ({url, origin}) or null; `state.link`: its
// link's state as the worker last reported it (off, reconnecting, connected).
export function serverPanel(client, state) {
  const say = (text) => ($("server-message").textContent = text);

  // While a server is configured, its origin is always on show, with its link's state and
  // the one-click way to drop it.
  function show() {
    const server = state.server;
    const link = server ? state.link : "off";
    const labels = { connected: "connected", reconnecting: "reconnecting…", off: "connecting…" };
    $("server").hidden = !server;
    $("server-forget").hidden = !server;
    setPill("server", link === "off" ? "reconnecting" : link,
      server ? `server: ${server.origin} — ${labels[link] ?? link}` : "server");
  }

  // The worker reports the link's state as unattributed progress events (stage "server").
  function onLinkState(linkState) {
    state.link = linkState;
    show();
    // The settings' message follows the link too, or it would still say "Connected" after a drop.
    if (MESSAGES[linkState]) say(MESSAGES[linkState]);
  }

  async function connect(url, token) {
    const checked = checkServerUrl(url);
    if (checked.error) {
      say(checked.error);
      return false;
    }
    state.server = { url: checked.url, origin: checked.origin };
    state.link = "off";
    show();
    localStorage.setItem(SERVER_KEY, JSON.stringify({ url: checked.url, token: token || null, confirmed: true }));
    say(`Connecting to ${checked.origin}…`);
    try {
      const { result } = await client.request("server.connect", { url: checked.url, ...(token ? { token } : {}) });
      if (state.server?.url !== checked.url) return false; // forgotten or replaced meanwhile
      say(result.connected ? MESSAGES.connected
        : `Not connected yet (${result.last_error || "no answer"}); retrying in the background.`);
      return true;
    } catch (err) {
      say(`${err.message} (${err.code})`);
      return false;
    }
  }

  // One click: the link closes and nothing is left in this browser to bring it back.
  async function forget() {
    localStorage.removeItem(SERVER_KEY);
    state.server = null;
    state.link = "off";
    show();
    dropServerParam();
    say("Disconnected: answers come from this browser only.");
    try {
      await client.request("server.connect", {});
    } catch (err) {
      say(`${err.message} (${err.code})`);
    }
  }

  // Ask before using an address the user did not enter here. Resolves once they decided.
  function offer(url, token = null, intro = "The link you opened asks this app to use the server") {
    const checked = checkServerUrl(url);
    const dialog = $("server-confirm");
    const refused = Boolean(checked.error);
    let shown = String(url);
    try {
      shown = new URL(shown).origin;
    } catch { /* not a URL: shown as given */ }
    $("server-confirm-title").textContent = refused ? "This server address is refused" : "Connect to this agent server?";
    $("server-confirm-intro").textContent = refused ? "The link you opened asks this app to use the server" : intro;
    $("server-confirm-origin").textContent = refused ? shown : checked.origin;
    $("server-confirm-what").hidden = refused;
    $("server-confirm-error").hidden = !refused;
    $("server-confirm-error").textContent = refused ? `${checked.error} Nothing was sent to it.` : "";
    $("server-confirm-yes").hidden = refused;
    $("server-confirm-no").textContent = refused ? "Close" : "Don’t connect";
    dialog.returnValue = "";
    dialog.showModal();
    $("server-confirm-no").focus(); // the safe choice has the focus: Enter never connects
    return new Promise((resolve) => {
      dialog.addEventListener("close", async () => {
        dropServerParam();
        if (!refused && dialog.returnValue === "connect") {
          $("server-url").value = checked.url;
          await connect(checked.url, token);
          resolve(true);
        } else {
          if (!refused) say(`Not connected to ${checked.origin}: answers come from this browser.`);
          resolve(false);
        }
      }, { once: true });
    });
  }

  $("server-form").addEventListener("submit", (e) => {
    e.preventDefault();
    connect($("server-url").value, $("server-token").value.trim());
  });
  $("server-disconnect").addEventListener("click", forget);
  $("server-forget").addEventListener("click", forget);
  // Forgotten in another tab of this app (or its storage cleared): forgotten here too.
  addEventListener("storage", (e) => {
    if ((e.key === SERVER_KEY || e.key === null) && !localStorage.getItem(SERVER_KEY) && state.server) forget();
  });

  // Before the agent is ready: a link's server address is offered at once, never used.
  const linked = new URLSearchParams(location.search).get("server");
  const saved = savedServer();
  if (saved && !(saved.confirmed && !checkServerUrl(saved.url).error)) {
    // Saved by an older version without asking (possibly from a link), or no longer allowed:
    // not used until the user confirms it.
    localStorage.removeItem(SERVER_KEY);
  }
  const trusted = saved?.confirmed && !checkServerUrl(saved.url).error ? saved : null;
  if (linked !== null && trusted && checkServerUrl(linked).url === trusted.url) dropServerParam();
  else if (linked !== null) offer(linked);
  else if (saved && !trusted && !checkServerUrl(saved.url).error) {
    offer(saved.url, saved.token, "This browser has a server saved from an earlier version of the app, which did not ask first:");
  }
  if (trusted) {
    state.server = { url: checkServerUrl(trusted.url).url, origin: checkServerUrl(trusted.url).origin };
    $("server-url").value = state.server.url;
    show();
  }

  return {
    onLinkState,
    // Once the agent is ready: reconnect to the server the user confirmed earlier.
    async reconnect() {
      if (trusted && state.server?.url === trusted.url) await connect(trusted.url, trusted.token);
    },
  };
}

function dropServerParam() {
  const here = new URL(location.href);
  if (!here.searchParams.has("server")) return;
  here.searchParams.delete("server");
  history.replaceState(history.state, "", here.href);
}

function savedServer() {
  try {
    const saved = JSON.parse(localStorage.getItem(SERVER_KEY) || "null");
    return typeof saved?.url === "string" ? saved : null;
  } catch {
    return null;
  }
}
