"""The agent loop's overhead per step, excluding model time: natively, in Pyodide under Node,
and in Pyodide in Chromium (a page of dist/, the runtime and wasmagent from the app's own
precompiled stdlib zip; the app's worker adds nothing to the loop itself, whose steps never
leave Python)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import loop_probe
from boot import DIST, serving

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NATIVE_GOAL_MS = 2.0
BROWSER_GOAL_MS = 5.0


def run(ctx: Any) -> dict[str, Any]:
    rounds = ctx.repeats(30, 10)
    native = loop_probe.run_native(rounds)
    done = subprocess.run(["node", str(HERE / "pyodide_probe.mjs"), str(HERE / "loop_probe.py"),
                           str(rounds)], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=600)
    pyodide = json.loads(done.stdout.strip().splitlines()[-1])
    with serving(DIST, isolate=True) as url:
        page = ctx.browser.new_page()
        try:
            page.goto(url + "models/intent/labels.json")  # any page of the app's origin
            chromium = json.loads(page.evaluate(IN_PAGE, [
                (HERE / "loop_probe.py").read_text(), rounds]))
        finally:
            page.close()
    return {"native": native, "pyodide": pyodide, "chromium": chromium, "steps": 5}


IN_PAGE = """async ([code, rounds]) => {
  const { loadPyodide } = await import('/pyodide/pyodide.mjs');
  const py = await loadPyodide({indexURL: '/pyodide/', stdLibURL: '/pyodide/wasmagent-stdlib.zip'});
  py.FS.writeFile('/tmp/probe.py', code);
  return await py.runPythonAsync(`
import sys, json
sys.path.insert(0, "/tmp")
import probe
json.dumps(await probe.measure(${rounds}))
`);
}"""


def render(section: dict[str, Any]) -> list[str]:
    lines = ["## Agent loop: overhead per step (no model time)", "",
             "A scripted model that answers at once calls the calculator (1 or 3 calls per "
             f"step) for {section['steps']} steps, then answers: what remains is the loop's own "
             "work per step — tool-call parsing, argument checks, running the calls, events and "
             "message building. Per step, median (min–max, n).", "",
             "| where | 1 call per step | 3 calls per step | goal |", "|---|---|---|---|"]
    for where, key, goal in (("native (CPython)", "native", NATIVE_GOAL_MS),
                             ("Pyodide (Node)", "pyodide", BROWSER_GOAL_MS),
                             ("Pyodide in Chromium", "chromium", BROWSER_GOAL_MS)):
        row = section.get(key)
        if row is None:
            continue
        cells = [f"{r['median']:.2f} ms ({r['min']:.2f}–{r['max']:.2f}, {r['n']})"
                 for r in (row["1_call"], row["3_call"])]
        worst = max(row["1_call"]["median"], row["3_call"]["median"])
        verdict = "met" if worst <= goal else "not met"
        lines.append(f"| {where} | {cells[0]} | {cells[1]} | ≤ {goal:g} ms: {verdict} |")
    lines.append("")
    return lines
