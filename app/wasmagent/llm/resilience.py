"""Retries with exponential backoff and full jitter, and a circuit breaker — pure logic.

Both take time from the core's `Clock`, so tests drive them with a fake clock and the browser
and server use the same code.

Circuit breaker contract: `closed` lets every call through and counts consecutive failures;
`threshold` of them open it. `open` refuses calls (`check` raises `upstream_unavailable`)
until `reset_after` seconds have passed, then becomes `half_open` and lets one trial call
through: success closes the breaker, failure opens it again for another `reset_after`.
A call that ends neither way (its caller cancelled it) `release`s the trial, so the next call
may be the trial: a trial that never reports back must not keep the breaker open forever.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from ..errors import AgentError, ErrorCode
from ..ports import Clock

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` tries in all; the wait before try n+1 is uniform in [0, min(cap, base*2^n)]."""

    attempts: int = 3
    base_s: float = 0.2
    cap_s: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed try `attempt` (1-based), with full jitter (AWS's scheme: it
        spreads retries of many clients so they do not stampede a recovering upstream)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, ceiling)


@dataclass(slots=True)
class CircuitBreaker:
    """See the module docstring."""

    clock: Clock
    threshold: int = 5
    reset_after: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    trial_running: bool = False
    trips: int = field(default=0)

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if self.clock.monotonic() - self.opened_at >= self.reset_after:
            return "half_open"
        return "open"

    def check(self) -> None:
        """Raise `upstream_unavailable` unless a call may go through now."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and not self.trial_running:
            self.trial_running = True
            return
        assert self.opened_at is not None
        wait = max(0.0, self.reset_after - (self.clock.monotonic() - self.opened_at))
        raise AgentError(ErrorCode.UPSTREAM_UNAVAILABLE,
                         f"the LLM upstream is failing; calls resume in {wait:.0f} s")

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_running = False

    def release(self) -> None:
        """The call ended without a verdict on the upstream (cancelled by its caller): count
        nothing, but free the half-open trial slot it may hold."""
        self.trial_running = False

    def failure(self) -> None:
        self.failures += 1
        if self.trial_running or self.failures >= self.threshold:
            if self.opened_at is None or self.trial_running:
                self.trips += 1
            self.opened_at = self.clock.monotonic()
            self.trial_running = False
