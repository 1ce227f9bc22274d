"""The worker pool: bounded concurrency, a bounded queue, deadlines and cancellation.

Design: the pool is an admission controller, not a set of worker tasks. `submit` waits for one
of the `workers` slots and then runs the job *in the submitting task*, bound to the request's
context. So the pool itself owns no task at all (nothing to leak, nothing to clean up), the
job shares the caller's task-local state, and cancelling the caller cancels the job.

Rules of this module:

- At most `workers` jobs run at once. Slots are granted in submission (FIFO) order.
- At most `queue_size` jobs wait for a slot. A submit that finds the queue full waits up to
  `queue_wait` seconds for room in it, then raises AgentError(OVERLOADED): `queue_wait=0` (the
  default) rejects at once, `queue_wait=None` waits as long as the job's context allows
  (backpressure instead of load shedding).
- A job leaves the pool (queue or slot) on every outcome, so a failing, cancelled or timed-out
  job never costs the next one anything.

Contracts of `await pool.submit(ctx, fn, *args, **kwargs)`:

- returns `await fn(*args, **kwargs)`; `fn` is called only once the job holds a slot;
- raises whatever the job raises, to this caller only;
- raises AgentError(CANCELLED) / AgentError(DEADLINE) when `ctx` is cancelled or expires before
  or while the job waits or runs: a queued job is removed from the queue, a running job is
  cancelled (it receives `CancelledError` at its current await);
- raises AgentError(OVERLOADED) when the queue is full (after `queue_wait`);
- raises AgentError(CANCELLED, "worker pool closed") after `close()`, and for jobs still queued
  or running when `aclose(cancel=True)` cancels them;
- a plain cancellation of the submitting task propagates as `CancelledError`.

`close()` stops accepting jobs; accepted jobs (running and queued) still complete.
`await aclose(cancel=False)` closes and waits until every accepted job has left; with
`cancel=True` it first cancels them all. Either way nothing is left running afterwards.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal, ParamSpec, TypeVar

from ..errors import AgentError, ErrorCode
from .context import Context

P = ParamSpec("P")
R = TypeVar("R")

_Where = Literal["queue", "overflow", "granted", "rejected", "gone"]
_CLOSED = "worker pool closed"


class _Waiter:
    """One job waiting for a slot: in the bounded queue, or in the overflow behind it."""

    __slots__ = ("future", "timer", "where")

    def __init__(self, future: asyncio.Future[None], where: _Where) -> None:
        self.future = future
        self.where: _Where = where
        self.timer: asyncio.TimerHandle | None = None


class WorkerPool:
    """Runs async jobs with at most `workers` at once and at most `queue_size` waiting."""

    def __init__(
        self,
        workers: int,
        queue_size: int = 64,
        *,
        queue_wait: float | None = 0.0,
        name: str = "pool",
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.name = name
        self._workers = workers
        self._queue_size = queue_size
        self._queue_wait = queue_wait
        self._queue: deque[_Waiter] = deque()
        self._overflow: deque[_Waiter] = deque()
        self._running = 0
        self._jobs: set[Context] = set()
        self._idle: list[asyncio.Future[None]] = []
        self._closed = False
        self.completed = 0
        """Jobs that returned a result."""
        self.failed = 0
        """Jobs that raised after being accepted (their own error, cancellation or deadline)."""
        self.rejected = 0
        """Submits refused with OVERLOADED."""

    def __repr__(self) -> str:
        return (
            f"<WorkerPool {self.name} {self._running}/{self._workers} running,"
            f" {self.queued} queued{' closed' if self._closed else ''}>"
        )

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def in_flight(self) -> int:
        """Jobs holding a slot now."""
        return self._running

    @property
    def queued(self) -> int:
        """Jobs waiting for a slot now (in the queue, or waiting for room in it)."""
        return len(self._queue) + len(self._overflow)

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(
        self,
        ctx: Context,
        fn: Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run `await fn(*args, **kwargs)` in a slot, bound to `ctx`. See the module docstring."""
        if self._closed:
            raise AgentError(ErrorCode.CANCELLED, _CLOSED)
        ctx.raise_if_done()
        waiter = self._admit()
        job = ctx.child()
        self._jobs.add(job)
        try:
            if waiter is not None:
                await self._wait_for_slot(job, waiter)
            try:
                result = await job.run(fn(*args, **kwargs))
            finally:
                self._running -= 1
                self._pump()
        except BaseException:
            if waiter is None or waiter.where != "rejected":
                self.failed += 1
            raise
        finally:
            self._jobs.discard(job)
            self._notify_idle()
        self.completed += 1
        return result

    def close(self) -> None:
        """Stop accepting jobs. Accepted jobs still run to completion."""
        self._closed = True

    async def aclose(self, *, cancel: bool = False) -> None:
        """Close, optionally cancel every accepted job, and wait until none is left."""
        self.close()
        if cancel:
            for job in list(self._jobs):
                job.cancel(_CLOSED)
        while self._jobs:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(fut)
            try:
                await fut
            finally:
                if fut in self._idle:
                    self._idle.remove(fut)

    # -- slots -------------------------------------------------------------------------------

    def _admit(self) -> _Waiter | None:
        """Take a free slot (None) or a place in line (the waiter); OVERLOADED if none."""
        if self._running < self._workers and not self._queue and not self._overflow:
            self._running += 1
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if len(self._queue) < self._queue_size:
            waiter = _Waiter(future, "queue")
            self._queue.append(waiter)
            return waiter
        if self._queue_wait is not None and self._queue_wait <= 0:
            self.rejected += 1
            raise AgentError(ErrorCode.OVERLOADED, self._full_message())
        waiter = _Waiter(future, "overflow")
        self._overflow.append(waiter)
        if self._queue_wait is not None:
            waiter.timer = loop.call_later(self._queue_wait, self._overflow_timeout, waiter)
        return waiter

    async def _wait_for_slot(self, job: Context, waiter: _Waiter) -> None:
        """Wait in line until `_pump` grants a slot; raises as `submit` documents."""
        try:
            await job.run(waiter.future)
        except BaseException:
            self._abandon(waiter)
            raise
        finally:
            if waiter.timer is not None:
                waiter.timer.cancel()

    def _full_message(self) -> str:
        return f"{self.name}: queue full ({self._queue_size} waiting)"

    def _overflow_timeout(self, waiter: _Waiter) -> None:
        if waiter.where != "overflow" or waiter.future.done():
            return
        self._overflow.remove(waiter)
        waiter.where = "rejected"
        self.rejected += 1
        waiter.future.set_exception(AgentError(ErrorCode.OVERLOADED, self._full_message()))

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter leaves without running: give back its slot or its place in line."""
        future = waiter.future
        if future.done() and not future.cancelled():
            future.exception()  # mark retrieved: the caller is leaving with another error
        if waiter.where == "granted":
            self._running -= 1
        elif waiter.where == "queue":
            self._queue.remove(waiter)
        elif waiter.where == "overflow":
            self._overflow.remove(waiter)
        if waiter.where != "rejected":
            waiter.where = "gone"
        self._pump()

    def _pump(self) -> None:
        """Grant free slots to the oldest waiters, then refill the queue from the overflow.

        A waiter whose future is already cancelled (its task is on the way out, `_abandon`
        not yet run) is dropped here and marked gone, never granted.
        """
        while self._running < self._workers and (self._queue or self._overflow):
            waiter = self._queue.popleft() if self._queue else self._overflow.popleft()
            if waiter.future.done():
                waiter.where = "gone"
                continue
            waiter.where = "granted"
            self._running += 1
            waiter.future.set_result(None)
        while self._overflow and len(self._queue) < self._queue_size:
            waiter = self._overflow.popleft()
            if waiter.future.done():
                waiter.where = "gone"
                continue
            waiter.where = "queue"
            self._queue.append(waiter)

    def _notify_idle(self) -> None:
        if self._jobs:
            return
        for fut in self._idle:
            if not fut.done():
                fut.set_result(None)
        self._idle.clear()
