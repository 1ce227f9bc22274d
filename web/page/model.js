// Knowledge → Model: install, cancel, remove the opt-in local model. The download runs here
// (web/llm-host.js keeps it in Cache Storage, whole or not at all); the agent worker loads it
// when told over the model channel and reports its state back on the same channel.
import { CHANNEL, canStore, installModel, modelInstalled, removeModel } from "../worker/llm-host.js";

const $ = (id) => document.getElementById(id);
const MB = 1048576;
const EXTRACTS = "Answers stay cited extracts.";

const STATES = {
  absent: "Not installed: answers are cited extracts.",
  loading: "Installed; loading the model… (answers are cited extracts meanwhile)",
  ready: "Installed and ready: answers are written by the local model, with citations, offline.",
};

export function modelPanel() {
  const install = $("model-install");
  const remove = $("model-remove");
  const box = $("model-download");
  const bar = $("model-progress");
  const label = $("model-label");
  const message = $("model-message");
  let download = null;
  let keep = true; // false where this page may not store files (see canStore)
  let loaded = false; // a model used for this visit only, never stored
  const channel = new BroadcastChannel(CHANNEL);

  const show = (installed) => {
    install.hidden = installed || Boolean(download);
    remove.hidden = !installed;
    document.body.dataset.localModel = installed ? "installed" : "absent";
  };
  const say = (text) => { message.textContent = text; };

  channel.onmessage = ({ data }) => {
    if (data?.kind !== "state") return;
    document.body.dataset.localModelState = data.state;
    if (data.state === "failed") say(`${data.error}. ${EXTRACTS}`);
    else if (data.state === "ready" && loaded) say("Loaded for this visit (not stored): answers are written by the local model, with citations.");
    else say(STATES[data.state] || "");
  };

  install.addEventListener("click", async () => {
    download = new AbortController();
    show(false);
    box.hidden = false;
    say("");
    try {
      await installModel({
        keep,
        signal: download.signal,
        onProgress: (got, total) => {
          bar.max = total;
          bar.value = got;
          label.textContent = `${(got / MB).toFixed(1)} of ${(total / MB).toFixed(1)} MB`;
        },
      });
      loaded = !keep;
      say(keep ? "Installed; loading the model…" : "Loading the model for this visit…");
      show(true);
    } catch (err) {
      say(err.code === "cancelled" ? "Download cancelled; nothing was stored." : `${err.message}. ${EXTRACTS}`);
      show(false);
    } finally {
      download = null;
      box.hidden = true;
      show(loaded || (keep && (await modelInstalled().catch(() => false))));
    }
  });
  $("model-cancel").addEventListener("click", () => download?.abort());
  remove.addEventListener("click", async () => {
    await removeModel();
    loaded = false;
    show(false);
    say("Removed. Answers are cited extracts.");
  });

  canStore().then(async (allowed) => {
    keep = allowed;
    if (!allowed) say("This browser does not let this site keep files here: the model would be downloaded for this visit only.");
    show(allowed && (await modelInstalled()));
    channel.postMessage({ kind: "query" });
  }).catch((err) => say(`The local model is unavailable here: ${err.message}`));
}
