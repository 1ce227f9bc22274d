"""asyncio helpers the runtime tests share (plain functions: they run in Pyodide too)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from wasmagent.protocol import Event


async def no_leaked_tasks(before: set[asyncio.Task[Any]], within: float = 30.0) -> None:
    """Wait until every task started since `before` has ended (`within`: a safety net)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while extra := asyncio.all_tasks() - before:
        assert loop.time() < end, f"leaked tasks: {extra}"
        await asyncio.sleep(0.001)


async def ticks(n: int = 5) -> None:
    """Let every ready task run a few steps."""
    for _ in range(n):
        await asyncio.sleep(0)


def of(events: list[dict[str, Any]], rid: str) -> list[dict[str, Any]]:
    """The events of request `rid`, in order."""
    return [e for e in events if e["id"] == rid]


def collect(events: list[dict[str, Any]]) -> Callable[[Event], None]:
    """An agent sink that keeps each event's wire form, as a client would receive it."""
    return lambda event: events.append(event.to_wire())
