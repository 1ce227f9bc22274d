"""Render bench-results.json as BENCHMARKS.md: tables per section, goals met or not."""

from __future__ import annotations

from typing import Any


def _ms(stat: dict[str, Any]) -> str:
    return f"{stat['median']:.0f} ms ({stat['min']:.0f}–{stat['max']:.0f}, n={stat['n']})"


def _boot(section: dict[str, Any]) -> list[str]:
    lines = [
        "## Boot: PyScript named worker vs bare module worker",
        "",
        "Navigation to \"Python ready with `wasmagent` imported\" in a fresh browser context",
        "(cold HTTP cache), both loading the same Pyodide files and wheel from `dist/`, run",
        "interleaved. Rule (issue 2): host the agent in PyScript only if within 10%.",
        "",
        "| served | module worker | PyScript worker | PyScript / module | foreign requests |",
        "|---|---|---|---|---|",
    ]
    for label, row in section.items():
        if not isinstance(row, dict) or "module_worker" not in row:
            continue
        mw, ps = row["module_worker"], row["pyscript_worker"]
        foreign = len(mw["foreign_requests"]) + len(ps["foreign_requests"])
        served = "with COOP/COEP" if label == "isolated" else "without COOP/COEP"
        lines.append(f"| {served} | {_ms(mw)} | {_ms(ps)} | "
                     f"{row['pyscript_over_module_worker']:.2f}× | {foreign} |")
    lines.append("")
    for label, row in section.items():
        if isinstance(row, dict) and "app_ready" in row:
            served = "with COOP/COEP" if label == "isolated" else "without COOP/COEP"
            lines.append(f"- The full app, navigation to ready to answer (runtime, package, "
                         f"model session, storage), cold, {served}: {_ms(row['app_ready'])}.")
            if "warm" in row:
                w = row["warm"]
                met = "met" if w["app_ready"]["median"] <= 1500 else "not met"
                lines.append(f"- Second visit (warm: HTTP cache; the app also has its service "
                             f"worker), {served}: bare Pyodide {_ms(w['module_worker'])}, "
                             f"the app {_ms(w['app_ready'])} (goal ≤ 1.5 s: {met}).")
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
