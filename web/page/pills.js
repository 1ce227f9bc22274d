// The status pills in the header: network, agent engine, agent server.
const $ = (id) => document.getElementById(id);

export function setPill(id, state, text) {
  const node = $(id);
  node.dataset.state = state;
  node.textContent = text;
}

export function watchNetwork() {
  const show = () => setPill("net", navigator.onLine ? "online" : "offline", navigator.onLine ? "online" : "offline");
  addEventListener("online", show);
  addEventListener("offline", show);
  show();
}

// Shown whenever the browser cannot keep what the user adds (quota, private mode).
export function storageProblem(detail) {
  const notice = $("storage");
  notice.textContent = "This browser’s storage is full or unavailable: documents you add and "
    + "this conversation are kept only until you close the page. Questions are still answered.";
  notice.title = detail;
  notice.hidden = false;
}
