"""The agent loop's overhead per step, excluding model time: natively and in Pyodide (the
browser's Python runtime, under Node: the worker adds nothing to the loop itself, whose
steps never leave Python)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import loop_probe

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
    return {"native": native, "pyodide": pyodide, "steps": 5}


def render(section: dict[str, Any]) -> list[str]:
    lines = ["## Agent loop: overhead per step (no model time)", "",
             "A scripted model that answers at once calls the calculator (1 or 3 calls per "
             f"step) for {section['steps']} steps, then answers: what remains is the loop's own "
             "work per step — tool-call parsing, argument checks, running the calls, events and "
             "message building. Per step, median (min–max, n).", "",
             "| where | 1 call per step | 3 calls per step | goal |", "|---|---|---|---|"]
    for where, key, goal in (("native (CPython)", "native", NATIVE_GOAL_MS),
                             ("Pyodide (Node)", "pyodide", BROWSER_GOAL_MS)):
        row = section[key]
        cells = [f"{r['median']:.2f} ms ({r['min']:.2f}–{r['max']:.2f}, {r['n']})"
                 for r in (row["1_call"], row["3_call"])]
        worst = max(row["1_call"]["median"], row["3_call"]["median"])
        verdict = "met" if worst <= goal else "not met"
        lines.append(f"| {where} | {cells[0]} | {cells[1]} | ≤ {goal:g} ms: {verdict} |")
    lines.append("")
    return lines
