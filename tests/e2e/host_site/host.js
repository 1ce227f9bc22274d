// The host site's own script: a long-task observer (installed before anything of the widget
// loads), a counter that ticks and a button, and a record of the widget's events.
window.hostLog = { longTasks: [], frames: [], events: [], clicks: 0, ticks: 0, globals: null };
hostLog.globals = Object.keys(window);
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    hostLog.longTasks.push({ start: e.startTime, duration: e.duration, name: e.name,
      attribution: (e.attribution || []).map((a) => `${a.containerType}:${a.containerSrc}`) });
  }
}).observe({ type: "longtask", buffered: true });
// Long animation frames name the scripts that ran in them: the explanation when a long task
// shows up (the widget's code, or the test harness's own injected scripts).
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    hostLog.frames.push({ start: e.startTime, duration: e.duration, blocking: e.blockingDuration,
      scripts: (e.scripts || []).map((s) => ({ invoker: s.invoker, source: s.sourceURL,
        duration: Math.round(s.duration) })) });
  }
}).observe({ type: "long-animation-frame", buffered: true });
setInterval(() => hostLog.ticks++, 25);
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("buy").addEventListener("click", () => {
    document.getElementById("count").textContent = String(++hostLog.clicks);
  });
  for (const type of ["ready", "answer", "error", "open", "close"]) {
    wasmagent.on(type, (detail) => hostLog.events.push({ type, detail: detail ?? null }));
  }
});
