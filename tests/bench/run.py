"""`./build.sh bench [--quick]`: run every benchmark, write bench-results.json and BENCHMARKS.md.

Each section is a module in tests/bench with `run(ctx) -> dict`; sections that fail are
recorded as failed (with the error) instead of aborting the others. Numbers are medians over
repeated runs with min/max, measured in this run on this machine: nothing is copied in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "app"), str(ROOT)]  # ROOT: tests.support

import report  # noqa: E402
from playwright.sync_api import Browser, sync_playwright  # noqa: E402

CHROME_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class BenchContext:
    browser: Browser
    quick: bool

    def repeats(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def machine() -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "unavailable"

    pkg = json.loads((ROOT / "package.json").read_text())
    cpu = "unknown"
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    # int8 inference speed and numerics depend on these (models/MODEL_CARD.md): onnxruntime's
    # u8s8 kernels are exact and fast only with VNNI, so the native host picks its weights by them
    simd = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"),
                                    ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"),
                                    ("amx_int8", "AMX-INT8")) if flag in flags]
    if simd and not {"avx512_vnni", "avx_vnni"} & flags:
        simd.append("no VNNI")
    return {
        "cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
        "cpu_flags": ", ".join(simd) if simd else "unknown",
        "python": platform.python_version(), "node": version(["node", "--version"]),
        "chromium": version(["/usr/bin/chromium", "--version"]),
        "packages": {**pkg["dependencies"], **pkg.get("devDependencies", {})},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def sections() -> dict[str, Callable[[BenchContext], dict[str, Any]]]:
    import boot

    found: dict[str, Callable[[BenchContext], dict[str, Any]]] = {
        "boot": lambda ctx: boot.run(ctx.browser, ctx.repeats(5, 2)),
    }
    for name in ("embed", "e2e", "quality", "ingest", "peers", "server", "agent_loop",
                 "local_model", "local_quality"):  # e2e: KB
        path = HERE / f"{name}.py"
        if path.exists():
            module = __import__(name)
            found[name] = module.run
    if "server" in found:
        found["churn"] = __import__("server").run_churn  # reported under the server section
    return found


def selected(name: str, only: list[str] | None) -> bool:
    """`--only server` takes the server's churn section along; `--only churn` runs it alone."""
    return not only or name in only or (name == "churn" and "server" in only)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under 5 minutes)")
    parser.add_argument("--only", nargs="*", help="run only these sections")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "sections": {}}
    if args.only and args.out.exists():
        # Re-running some sections keeps the others' figures from the previous full run.
        results["sections"] = json.loads(args.out.read_text()).get("sections", {})
    started = time.perf_counter()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROME_ARGS)
        ctx = BenchContext(browser, args.quick)
        for name, fn in sections().items():
            if not selected(name, args.only):
                continue
            print(f"bench: {name} ...", flush=True)
            t0 = time.perf_counter()
            try:
                results["sections"][name] = fn(ctx)
            except Exception as exc:
                traceback.print_exc()
                results["sections"][name] = {"failed": f"{type(exc).__name__}: {exc}"}
            print(f"bench: {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
        browser.close()
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(results, indent=1))
    (ROOT / "BENCHMARKS.md").write_text(report.render(results))
    print(f"bench: wrote {args.out.name} and BENCHMARKS.md in {results['seconds']} s")
    failed = [n for n, s in results["sections"].items() if "failed" in s]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
