"""Collection for the whole suite, however pytest is started (`pytest`, `pytest tests`,
`pytest tests/e2e tests/server`, `./build.sh test`).

- Only the test packages are collected: tests/pyodide (its `pytest.py` is the slice of pytest's
  API the core tests get inside Pyodide), tests/bench, tests/reference and tests/support hold
  programs and helpers, not tests.
- Tests that drive the browser run last. Playwright's sync API keeps its asyncio event loop
  running on the main thread from its first use until the end of the session (the `playwright`
  fixture is session-scoped), and every asyncio test or `asyncio.run` after that would fail
  ("cannot be called from a running event loop", "coroutine ... was never awaited").
"""

from __future__ import annotations

import pytest

collect_ignore = ["bench", "pyodide", "reference", "support"]


def _drives_the_browser(item: pytest.Item) -> bool:
    return "playwright" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_drives_the_browser)  # stable: otherwise in the order collected
