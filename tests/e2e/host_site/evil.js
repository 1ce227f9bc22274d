// A page on an origin that is not allowed: it tries everything a foreign page can do to the
// widget — forge messages to the host page that opened it, reach into its frames, and frame
// the widget's pages itself — and records what came back.
window.result = { replies: { gate: [], agent: [], opener: [] }, openerFrames: null };
function connect(name, target) {
  const channel = new MessageChannel();
  channel.port1.onmessage = (e) => result.replies[name].push(e.data);
  target.postMessage({ wasmagent: 1, type: "connect", config: { title: "evil" } }, "*", [channel.port2]);
}
window.addEventListener("load", () => {
  for (const name of ["gate", "agent"]) connect(name, document.getElementById(name).contentWindow);
  if (window.opener) {
    result.openerFrames = window.opener.frames.length;
    for (let i = 0; i < window.opener.frames.length; i++) connect("opener", window.opener.frames[i]);
    for (const forged of [
      { type: "ready", threads: 99 },
      { type: "answer", question: "forged", answer: { text: "forged", citations: [] } },
      { type: "reply", id: "h1", answer: { text: "forged" } },
      { wasmagent: 1, type: "connect", config: {} },
    ]) window.opener.postMessage(forged, "*");
  }
  setTimeout(() => { document.title = "done"; }, 2500);
});
