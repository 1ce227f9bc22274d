"""A clock for durable-job tests: wall time moves only when the test says so."""

from __future__ import annotations

import asyncio


class ManualClock:
    """Wall time the test moves by hand; sleeping does not move it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Retry backoffs (milliseconds here) pass; a lease heartbeat (seconds) waits for the
        # test to move the clock, which it never does for a heartbeat: runs stay deterministic.
        await asyncio.sleep(seconds if seconds < 0.1 else 3600)
