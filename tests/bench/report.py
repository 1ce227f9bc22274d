"""Render bench-results.json as BENCHMARKS.md: tables per section, goals met or not."""

from __future__ import annotations

from typing import Any


def _ms(stat: dict[str, Any]) -> str:
    return f"{stat['median']:.0f} ms ({stat['min']:.0f}–{stat['max']:.0f}, n={stat['n']})"


GOALS = {"cold": 2500, "warm": 1000, "widget_warm": 1500, "widget_preloaded": 300}
STEP_NAMES = {
    "worker": "page -> worker started",
    "fetch": "fetch (versioned boot files: zip, snapshot, model, vocab)",
    "pyodide_wasm": "pyodide.asm.wasm compile + instantiate",
    "ort_wasm": "onnxruntime-web wasm compile + instantiate",
    "python": "Python runtime (loadPyodide: snapshot restore or boot)",
    "imports": "import wasmagent (only without the snapshot)",
    "model_fetch": "MiniLM bytes fetched",
    "model": "MiniLM ORT session ready (fetch + wasm + create; created after ready)",
    "agent": "agent built + knowledge base loaded (browser.boot)",
    "ready": "ready to answer (keyword search until the model session is ready)",
    "hybrid": "embedding model ready: hybrid search from here",
}


def _goal(stat: dict[str, Any], goal: float) -> str:
    over = stat["median"] - goal
    return "met" if over <= 0 else f"not met by {over:.0f} ms"


WIDGET_STEP_NAMES = {
    **STEP_NAMES,
    "worker": "open -> the frame's worker started (gate page, frame page, worker script)",
    "answer": "first cited answer (asked at once: waits for ready, then loads the KB)",
}


def _steps(steps: dict[str, Any], names: dict[str, str] = STEP_NAMES,
           since: str = "navigation") -> list[str]:
    warm, cold = steps["warm"], steps["cold"]
    lines = [
        f"| step (ms since {since}, medians) | warm: from – to | cold: from – to |",
        "|---|---|---|",
    ]
    for key, label in names.items():
        cells = [f"{d[key][0]} – {d[key][1]} ({d[key][1] - d[key][0]})" if key in d else "—"
                 for d in (warm, cold)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    lines += ["", f"Boots from the memory snapshot: warm {warm['snapshot_runs']}/{warm['n']}, "
              f"cold {cold['snapshot_runs']}/{cold['n']}. Steps overlap: onnxruntime-web and "
              "Python share the worker's one thread, so durations do not add up.", ""]
    return lines


def _boot(section: dict[str, Any]) -> list[str]:
    lines = ["## Boot", ""]
    iso = section.get("isolated", {})
    if "app_ready" in iso:
        cold, warm = iso["app_ready"], iso["warm"]["app_ready"]
        lines += [
            "Navigation to \"ready to answer\" (runtime, wasmagent, storage, knowledge base), "
            "served with COOP/COEP. Ready does not wait for the embedding model's session: "
            "questions until then are answered from keyword search (BM25), with citations, and "
            "the agent switches to hybrid search by itself once the model is ready (its own "
            "rows below). Cold: a fresh browser context; warm: a second visit (HTTP cache and "
            "the service worker's precache). Run interleaved with the other variants below, on "
            "a machine others were loading too.",
            "",
            "| | median (min–max, n) | goal |",
            "|---|---|---|",
            f"| app, warm | {_ms(warm)} | ≤ 1.0 s: {_goal(warm, GOALS['warm'])} |",
            f"| app, cold | {_ms(cold)} | ≤ 2.5 s: {_goal(cold, GOALS['cold'])} |",
        ]
        if "app_model_ready" in iso:
            lines += [
                f"| app, warm: embedding model ready (hybrid search) | "
                f"{_ms(iso['warm']['app_model_ready'])} | |",
                f"| app, cold: embedding model ready (hybrid search) | "
                f"{_ms(iso['app_model_ready'])} | |",
            ]
        widget = section.get("widget")
        if widget:
            lines += [
                f"| widget on another site, open → first cited answer, warm (HTTP cache) | "
                f"{_ms(widget['warm'])} | ≤ 1.5 s: {_goal(widget['warm'], GOALS['widget_warm'])} |",
                f"| same, with `data-preload=\"idle\"` (opened once the frame is ready) | "
                f"{_ms(widget['warm_preloaded'])} | ≤ 0.3 s: "
                f"{_goal(widget['warm_preloaded'], GOALS['widget_preloaded'])} |",
                f"| widget, first visit (cold) | {_ms(widget['cold'])} | |",
            ]
        plain = section.get("not_isolated", {})
        if "app_ready" in plain:
            lines.append(f"| app without COOP/COEP: warm / cold | "
                         f"{_ms(plain['warm']['app_ready'])} / {_ms(plain['app_ready'])} | |")
        lines.append("")
        if "steps" in iso:
            lines += ["Where the time goes (with COOP/COEP; `self.bootTimings` in the worker "
                      "and Resource Timing):", "", *_steps(iso["steps"])]
        if widget and "steps" in widget:
            lines += ["The widget, where the time goes from `wasmagent.open()` to the first "
                      "cited answer (the frame's worker, without a service worker on another "
                      "site: its files come from the HTTP cache):", "",
                      *_steps(widget["steps"], WIDGET_STEP_NAMES, "open")]
    lines += [
        "### PyScript named worker vs bare module worker",
        "",
        "Navigation to \"Python ready with `wasmagent` imported\" in a fresh browser context",
        "(cold HTTP cache), both loading the same Pyodide files and the wheel through the lock",
        "(as a site owner's own Pyodide would), run interleaved. Rule (issue 2): host the agent",
        "in PyScript only if within 10%.",
        "",
        "| served | module worker | PyScript worker | PyScript / module | foreign requests | "
        "module worker, warm |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in section.items():
        if not isinstance(row, dict) or "module_worker" not in row:
            continue
        mw, ps = row["module_worker"], row["pyscript_worker"]
        foreign = len(mw["foreign_requests"]) + len(ps["foreign_requests"])
        served = "with COOP/COEP" if label == "isolated" else "without COOP/COEP"
        warm_mw = _ms(row["warm"]["module_worker"]) if "warm" in row else "—"
        lines.append(f"| {served} | {_ms(mw)} | {_ms(ps)} | "
                     f"{row['pyscript_over_module_worker']:.2f}× | {foreign} | {warm_mw} |")
    lines.append("")
    worst = max((r["pyscript_over_module_worker"] for r in section.values()
                 if isinstance(r, dict) and "pyscript_over_module_worker" in r), default=0)
    verdict = "within" if worst <= 1.10 else "outside"
    lines.append(f"PyScript is {verdict} the 10% rule here (worst {worst:.2f}×): the agent runs "
                 f"in a {'PyScript' if worst <= 1.10 else 'plain module'} worker.")
    lines.append("")
    return lines


def _churn(section: dict[str, Any]) -> list[str]:
    """The server section's churn subsection (rendered right after it)."""
    lines: list[str] = __import__("server").render_churn(section)
    return lines


RENDERERS = {"boot": _boot, "churn": _churn}


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Every figure below is produced by `./build.sh bench` (or `./build.sh bench --quick`)",
        "in one run on the machine described here; `bench-results.json` holds the raw numbers.",
        "Medians with (min–max, n runs).",
        "",
        f"- machine: {m['cpu']}" + (f" ({m['cpu_flags']})" if "cpu_flags" in m else "")
        + f", {m['cores']} cores, {m['platform']}",
        f"- {m['chromium']}, Node {m['node']}, Python {m['python']} (native side)",
        "- npm packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- run: {m['date']}{' (quick mode)' if results['quick'] else ''}, "
        f"{results.get('seconds', '?')} s",
        "",
    ]
    for name, section in results["sections"].items():
        if "failed" in section:
            lines += [f"## {name}", "", f"**This section failed:** `{section['failed']}`", ""]
            continue
        renderer = RENDERERS.get(name)
        if renderer is None:
            module = __import__(name)
            renderer = module.render
        lines += renderer(section)
    return "\n".join(lines) + "\n"
