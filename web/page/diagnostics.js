// The Diagnostics panel: the watchdog's verdict, per-stage latency and the agent's recent
// structured log lines, all from one `status` request, refreshed while the panel is open.
import { el } from "../shared/chat.js";

const $ = (id) => document.getElementById(id);

export function diagnosticsPanel(client) {
  async function refresh() {
    if (!$("diagnostics").open) return;
    const status = await client.status();
    // The watchdog's verdict: a stage with work waiting and no progress is named here.
    const stalled = status.health?.stalled ?? [];
    $("health").textContent = stalled.length
      ? `Stuck: ${stalled.map((s) => `${s.stage} (${s.backlog} waiting for ${Math.round(s.stalled_for_s)} s)`).join(", ")}`
      : "Every stage is making progress.";
    $("health").classList.toggle("problem", stalled.length > 0);
    const cell = (text) => el("td", { textContent: text });
    const rows = Object.entries(status.metrics.stages).map(([stage, s]) =>
      el("tr", {}, cell(stage), cell(s.count), cell(s.p50_ms.toFixed(1)), cell(s.p95_ms.toFixed(1))));
    $("stages").tBodies[0].replaceChildren(...rows);
    $("log-lines").textContent = status.log.slice(-30).map((l) => JSON.stringify(l)).join("\n");
  }
  $("diagnostics").addEventListener("toggle", refresh);
  return { refresh };
}
