"""Run plain test functions from tests/unit inside Pyodide and report like a test runner.

Sync tests are called; async tests are awaited on Pyodide's running event loop (WebLoop in
the browser, Node's loop here), which is exactly how the core runs in the browser.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
import traceback
from typing import Any


async def run(modules: list[str]) -> dict[str, Any]:
    # The tests assert on outcomes; the errors they provoke on purpose need not be printed.
    logging.disable(logging.CRITICAL)
    from wasmagent.telemetry import FALLBACK

    FALLBACK.writer = None
    passed: list[str] = []
    failed: list[tuple[str, str]] = []
    skipped: list[str] = []
    started = time.perf_counter()
    for name in modules:
        try:
            module = importlib.import_module(f"unit.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"unit.{name}":
                skipped.append(name)
                continue
            failed.append((name, traceback.format_exc()))
            continue
        for attr, fn in vars(module).items():
            if not attr.startswith("test_") or not callable(fn):
                continue
            if inspect.signature(fn).parameters:
                failed.append((f"{name}::{attr}", "takes fixtures; not runnable in Pyodide"))
                continue
            try:
                result = fn()
                if inspect.isawaitable(result):
                    await result
                passed.append(f"{name}::{attr}")
            except Exception:
                failed.append((f"{name}::{attr}", traceback.format_exc()))
    return {"passed": passed, "failed": failed, "missing_modules": skipped,
            "seconds": round(time.perf_counter() - started, 2)}
