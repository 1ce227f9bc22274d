"""The agent loop's own cost per step, with a model that answers at once (no model time):
parsing, validating and running the calls (the calculator), events, message building.

Runs unchanged natively and inside Pyodide (`agent_loop.py` drives both); `measure()` returns
per-step milliseconds for each shape."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wasmagent.pipeline.tool_loop import ToolLoop
from wasmagent.ports import LoopClock, ToolCallRequest
from wasmagent.protocol import Event, PassageIn
from wasmagent.runtime.context import Context
from wasmagent.tools import default_tools

PASSAGES = [PassageIn("docs/a.md", "A", "", "Some passage text about the question. " * 20)
            for _ in range(5)]


class Instant:
    """A model that calls `calls` calculator tools per turn for `steps` turns, then answers."""

    name = "instant"

    def __init__(self, steps: int, calls: int) -> None:
        self.left = steps
        self.calls = calls

    def available(self) -> bool:
        return True

    def details(self) -> dict[str, Any]:
        return {}

    def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
        raise NotImplementedError

    async def chat(self, messages: Sequence[Mapping[str, Any]],
                   tools: Sequence[Mapping[str, Any]], ctx: Context
                   ) -> AsyncIterator[str | ToolCallRequest]:
        if self.left == 0:
            yield "Done."
            return
        self.left -= 1
        for n in range(self.calls):
            yield ToolCallRequest(f"c{self.left}-{n}", "calculator",
                                  json.dumps({"expression": f"{n} * 17.5 / 100"}))


async def _per_step(steps: int, calls: int) -> float:
    events: list[Event] = []
    loop = ToolLoop(Instant(steps, calls), default_tools(), LoopClock(), max_steps=steps + 1)
    t0 = time.perf_counter()
    await loop.run("r", "a question", PASSAGES, Context("r"), events.append)
    return (time.perf_counter() - t0) * 1000 / (steps + 1)


async def measure(rounds: int = 30, steps: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for calls in (1, 3):
        await _per_step(steps, calls)  # warm up
        samples = sorted([await _per_step(steps, calls) for _ in range(rounds)])
        out[f"{calls}_call"] = {"median": statistics.median(samples), "min": samples[0],
                                "max": samples[-1], "n": rounds}
    return out


def run_native(rounds: int) -> dict[str, Any]:
    # (a thread of its own: the bench's Playwright already runs an event loop in this one)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, measure(rounds)).result()
