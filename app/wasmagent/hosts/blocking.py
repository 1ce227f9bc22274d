"""Blocking native calls kept off the event loop: one dedicated thread per resource.

onnxruntime releases the GIL while it computes and SQLite file I/O can stall, so the native
host runs such calls here and the loop keeps serving. Threads are fine in `hosts/`; they are
ruled out only in shared core code, which must also run on Pyodide's single thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class OneThread:
    """Runs blocking calls in order on a single thread owned by this object (so a resource
    that is not thread-safe, like one SQLite connection, only ever sees that thread)."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
