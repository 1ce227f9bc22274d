"""The watchdog: notices a stage that stops making progress while work waits for it.

A stuck stage is an outage that looks healthy from outside: the process answers `/healthz`,
the in-flight gauges drain as callers give up, and every request that needs the stage just
times out. So each stage reports two numbers, read whenever the watchdog checks:

- `backlog()`: how much work is in the stage now (queued or running);
- `progress()`: a counter that grows each time the stage *finishes* a piece of work (with a
  result or with its own error). Work that merely leaves because its caller cancelled or ran
  out of time is not progress: a wedged stage still sheds work that way.

Rules of this module:

- A stage is stalled when it has had a backlog, and no progress, for `stall_after_s` seconds
  of the clock's monotonic time. Choose `stall_after_s` above the longest a single piece of
  work may take (the request deadline): a slow request is not a stuck stage.
- `check()` is pure bookkeeping over the clock (no I/O, no task): call it from a periodic
  task (`run`), from a health endpoint, or from a test that moves the clock. Transitions are
  reported once each, through `on_change(stall, stalled)`: True when a stage stalls, False
  when it makes progress again or empties.
- Backlog that arrives while a stage was idle starts its clock at the first check that sees it,
  so detection may come up to one check interval late, never early.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..ports import Clock

Counter = Callable[[], int]


@dataclass(frozen=True, slots=True)
class Stall:
    """A stage with work waiting and no progress since `since_wall` (wall-clock seconds)."""

    stage: str
    backlog: int
    stalled_for_s: float
    since_wall: float

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "backlog": self.backlog,
                "stalled_for_s": round(self.stalled_for_s, 3), "since": round(self.since_wall, 3)}


class _Stage:
    __slots__ = ("backlog", "busy_since", "last_count", "last_progress", "name", "progress",
                 "stalled")

    def __init__(self, name: str, backlog: Counter, progress: Counter, now: float) -> None:
        self.name = name
        self.backlog = backlog
        self.progress = progress
        self.last_count = progress()
        self.last_progress = now
        self.busy_since: float | None = None
        self.stalled = False


class Watchdog:
    """Watches named stages; see the module docstring."""

    def __init__(self, clock: Clock, *, stall_after_s: float,
                 on_change: Callable[[Stall, bool], None] | None = None) -> None:
        if stall_after_s <= 0:
            raise ValueError(f"stall_after_s must be > 0, got {stall_after_s}")
        self.clock = clock
        self.stall_after_s = stall_after_s
        self._on_change = on_change
        self._stages: dict[str, _Stage] = {}
        self.stalls = 0
        """Transitions into the stalled state so far, over all stages."""

    def watch(self, name: str, *, backlog: Counter, progress: Counter) -> None:
        """Watch one stage (a name may be watched once)."""
        if name in self._stages:
            raise ValueError(f"stage {name!r} is already watched")
        self._stages[name] = _Stage(name, backlog, progress, self.clock.monotonic())

    @property
    def stages(self) -> list[str]:
        return list(self._stages)

    def check(self) -> list[Stall]:
        """Update every stage's state; the stages stalled now, in the order watched."""
        now = self.clock.monotonic()
        stalls: list[Stall] = []
        for stage in self._stages.values():
            stall = self._check(stage, now)
            if stall is not None:
                stalls.append(stall)
        return stalls

    def _check(self, stage: _Stage, now: float) -> Stall | None:
        count = stage.progress()
        backlog = stage.backlog()
        if count != stage.last_count:
            stage.last_count = count
            stage.last_progress = now
        if backlog <= 0:
            stage.busy_since = None
        elif stage.busy_since is None:
            stage.busy_since = now
        quiet_since = max(stage.last_progress, stage.busy_since or now)
        stalled_for = now - quiet_since
        stuck = backlog > 0 and stalled_for >= self.stall_after_s
        stall = Stall(stage.name, backlog, stalled_for,
                      self.clock.wall() - stalled_for) if stuck else None
        if stuck != stage.stalled:
            stage.stalled = stuck
            if stuck:
                self.stalls += 1
            if self._on_change is not None:
                report = stall or Stall(stage.name, backlog, 0.0, self.clock.wall())
                self._on_change(report, stuck)
        return stall

    async def run(self, every_s: float) -> None:
        """Check every `every_s` seconds until cancelled."""
        while True:
            await self.clock.sleep(every_s)
            self.check()
