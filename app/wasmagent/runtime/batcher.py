"""The micro-batcher: coalesces concurrent requests into calls of one batch function.

`MicroBatcher(run_batch, ...)` turns many concurrent `await batcher.submit(item)` calls into
few `await run_batch(items)` calls, e.g. one ONNX run over 16 sentences instead of 16 runs.

Rules of this module:

- Items are grouped by *bucket*: `length_of(item)` mapped to powers of two (1, 2, 3-4, 5-8,
  9-16, ...) or, with `bucket_width=w`, to runs of `w` lengths (1..w, w+1..2w, ...). A batch
  holds items of one bucket and one priority only, so padding stays small. Without
  `length_of`, every item is in one bucket.
- A bucket's batch is dispatched when it holds `max_batch` items, or when its oldest item has
  waited `max_wait_ms`, whichever comes first; it takes the bucket's oldest `max_batch` items.
  Among ready buckets the one with the oldest item goes first.
- Priority: while any INTERACTIVE item is waiting, no BACKGROUND batch is started. With the
  default `concurrency=1` (one batch running at a time: the model runtime serialises runs
  anyway) an interactive item therefore waits at most for the batch already running plus its
  own coalescing window, however much background work is queued.
- Failure isolation: an exception from `run_batch` fails the requests of that batch only;
  the batcher goes on with the next batch.
- Tasks: one dispatcher task exists only while items are waiting, plus one task per running
  batch. When idle the batcher owns no task; after `aclose()` it owns none either.

Contracts of `await batcher.submit(item, priority, ctx)`:

- returns the result `run_batch` produced for `item` (results are matched by position: the
  batch function gets `list[T]` and must return a list of the same length, in the same order);
- raises AgentError(code) when `run_batch` raised AgentError(code) for its batch, and
  AgentError(INTERNAL) when it raised anything else or returned a list of the wrong length;
  the original exception is the `__cause__`;
- raises AgentError(CANCELLED) / AgentError(DEADLINE) when `ctx` is cancelled or expires
  first; a plain task cancellation propagates as `CancelledError`. Either way the item is
  removed before dispatch, or, if its batch is already running, its result is dropped (and
  the batch task is cancelled when every item in it has been abandoned). Other requests are
  not affected;
- raises AgentError(CANCELLED, "batcher closed") after `aclose()` began, and for items still
  waiting or running when `aclose(cancel=True)` cancels them;
- an exception from `length_of` propagates to the caller before anything is queued.

`await aclose(cancel=False)` stops accepting, dispatches everything still waiting at once
(ignoring `max_wait_ms`) and waits until all batches are done; `cancel=True` fails waiting
items and cancels running batches instead. Afterwards no task of the batcher is left.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Any, Generic, TypeVar

from ..errors import AgentError, ErrorCode
from ..ports import Clock, LoopClock
from .context import Context

T = TypeVar("T")
R = TypeVar("R")

_CLOSED = "batcher closed"


class Priority(IntEnum):
    """Scheduling class of a submitted item: interactive work always goes first."""

    INTERACTIVE = 0
    BACKGROUND = 1


class _Item(Generic[T, R]):
    __slots__ = ("batch", "bucket", "future", "priority", "since", "value")

    def __init__(
        self, value: T, priority: Priority, bucket: int, since: float, future: asyncio.Future[R]
    ) -> None:
        self.value = value
        self.priority = priority
        self.bucket = bucket
        self.since = since
        self.future = future
        self.batch: _Batch[T, R] | None = None


class _Batch(Generic[T, R]):
    __slots__ = ("items", "live", "task")

    def __init__(self, items: list[_Item[T, R]]) -> None:
        self.items = items
        self.live = len(items)
        self.task: asyncio.Task[None] | None = None


def _as_agent_error(exc: BaseException) -> AgentError:
    if isinstance(exc, AgentError):
        err = AgentError(exc.code, exc.message)
    else:
        err = AgentError(ErrorCode.INTERNAL, f"run_batch failed: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


class MicroBatcher(Generic[T, R]):
    """Coalesces concurrent submits into `run_batch` calls. See the module docstring."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        length_of: Callable[[T], int] | None = None,
        bucket_width: int | None = None,
        concurrency: int = 1,
        clock: Clock | None = None,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1 or concurrency < 1 or max_wait_ms < 0:
            raise ValueError("need max_batch >= 1, concurrency >= 1 and max_wait_ms >= 0")
        if bucket_width is not None and bucket_width < 1:
            raise ValueError(f"bucket_width must be >= 1, got {bucket_width}")
        self.name = name
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._length_of = length_of
        self._bucket_width = bucket_width
        self._concurrency = concurrency
        self._clock: Clock = clock or LoopClock()
        # One dict per priority (index = Priority value): bucket -> waiting items, oldest first.
        self._queues: tuple[dict[int, deque[_Item[T, R]]], ...] = ({}, {})
        self._running: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._closed = False
        self._flush = False
        self.batches_run = 0
        """Batches handed to `run_batch`."""
        self.items_run = 0
        """Items handed to `run_batch`."""
        self.failed_batches = 0
        """Batches whose `run_batch` raised or returned a wrong-length list."""
        self.finished_batches = 0
        """Batches that ended with results or with their own error (not cancelled): the
        measure of progress a watchdog reads."""

    def __repr__(self) -> str:
        return f"<MicroBatcher {self.name} {self.pending} pending, {self.running} running>"

    # -- telemetry ---------------------------------------------------------------------------

    @property
    def mean_batch_size(self) -> float:
        """Mean items per batch so far (0.0 before the first batch)."""
        return self.items_run / self.batches_run if self.batches_run else 0.0

    @property
    def pending(self) -> int:
        """Items waiting to be dispatched (counted, not tracked: a count kept beside the queues
        could drift from them, and the dispatcher's loop trusts it)."""
        return sum(len(queue) for queues in self._queues for queue in queues.values())

    @property
    def running(self) -> int:
        """Batches running now."""
        return len(self._running)

    @property
    def closed(self) -> bool:
        return self._closed

    def bucket_of(self, item: T) -> int:
        """The length bucket of `item` (0 without `length_of`)."""
        if self._length_of is None:
            return 0
        length = max(1, self._length_of(item)) - 1
        if self._bucket_width is None:
            return length.bit_length()
        return length // self._bucket_width

    # -- submitting --------------------------------------------------------------------------

    async def submit(
        self, item: T, priority: Priority = Priority.INTERACTIVE, ctx: Context | None = None
    ) -> R:
        """The result of `run_batch` for `item`. See the module docstring for the contract."""
        if self._closed:
            raise AgentError(ErrorCode.CANCELLED, _CLOSED)
        if ctx is not None:
            ctx.raise_if_done()
        bucket = self.bucket_of(item)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        entry = _Item(item, Priority(priority), bucket, self._clock.monotonic(), future)
        self._enqueue(entry)
        try:
            return await (future if ctx is None else ctx.run(future))
        except BaseException:
            if future.done() and not future.cancelled():
                future.exception()  # the batch settled it; we leave with that or another error
            else:
                self._abandon(entry)
            raise

    def _enqueue(self, entry: _Item[T, R]) -> None:
        queue = self._queues[entry.priority].setdefault(entry.bucket, deque())
        queue.append(entry)
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name=f"{self.name}-dispatch"
            )
        elif len(queue) >= self._max_batch:
            self._wake_dispatcher()

    def _abandon(self, entry: _Item[T, R]) -> None:
        """Forget an item whose caller left: unqueue it, or drop it from its running batch."""
        batch = entry.batch
        if batch is None:
            queues = self._queues[entry.priority]
            queue = queues.get(entry.bucket)
            if queue is not None and entry in queue:
                queue.remove(entry)
                if not queue:
                    del queues[entry.bucket]
            return
        batch.live -= 1
        if batch.live == 0 and batch.task is not None:
            batch.task.cancel(f"{self.name}: every request of the batch left")

    # -- dispatching -------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Start batches while items wait; exit as soon as none does.

        Every wait here has something scheduled to end it: a running batch (its done callback
        wakes us) or a timer for the oldest item's coalescing window. `_take` may pop only
        items whose callers already left and so start nothing; then nothing is due, and the
        loop re-checks what is still waiting instead of sleeping with nobody to wake it (that
        sleep once wedged every later request: `_enqueue` wakes a running dispatcher only when
        a bucket fills).
        """
        try:
            while self.pending:
                if len(self._running) >= self._concurrency:
                    await self._sleep(None)  # `_batch_done` wakes us
                    continue
                batch, delay = self._take()
                if batch is not None:
                    self._launch(batch)
                elif delay is not None:
                    await self._sleep(delay)
        finally:
            self._dispatcher = None

    async def _sleep(self, delay: float | None) -> None:
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake
        timer = None if delay is None else loop.call_later(delay, _resolve, wake)
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    def _wake_dispatcher(self) -> None:
        if self._wake is not None:
            _resolve(self._wake)

    def _take(self) -> tuple[list[_Item[T, R]] | None, float | None]:
        """The next batch to start, or None and how long until one is due."""
        now = self._clock.monotonic()
        for queues in self._queues:
            if not queues:
                continue
            bucket, delay = self._ready_bucket(queues, now)
            if bucket is None:
                return None, delay  # the waiting higher-priority items block lower ones
            items = self._pop_live(queues, bucket)
            return (items, None) if items else self._take()
        return None, None

    def _pop_live(self, queues: dict[int, deque[_Item[T, R]]], bucket: int) -> list[_Item[T, R]]:
        """Up to `max_batch` oldest items of a bucket, skipping callers already gone (their
        future is cancelled while their `_abandon` has not run yet)."""
        queue = queues[bucket]
        items: list[_Item[T, R]] = []
        while queue and len(items) < self._max_batch:
            entry = queue.popleft()
            if not entry.future.done():
                items.append(entry)
        if not queue:
            del queues[bucket]
        return items

    def _ready_bucket(
        self, queues: dict[int, deque[_Item[T, R]]], now: float
    ) -> tuple[int | None, float]:
        """The bucket to dispatch now (full, or oldest and due), else the wait until due."""
        full = [key for key, queue in queues.items() if len(queue) >= self._max_batch]
        candidates = full or list(queues)
        oldest = min(candidates, key=lambda key: queues[key][0].since)
        if full or self._flush:
            return oldest, 0.0
        wait = self._max_wait - (now - queues[oldest][0].since)
        return (oldest, 0.0) if wait <= 0 else (None, wait)

    def _launch(self, items: list[_Item[T, R]]) -> None:
        batch = _Batch(items)
        for entry in items:
            entry.batch = batch
        self.batches_run += 1
        self.items_run += len(items)
        task = asyncio.get_running_loop().create_task(
            self._run(batch), name=f"{self.name}-batch-{self.batches_run}"
        )
        batch.task = task
        self._running.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self.pending and self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name=f"{self.name}-dispatch"
            )
        self._wake_dispatcher()

    async def _run(self, batch: _Batch[T, R]) -> None:
        try:
            results = await self._run_batch([entry.value for entry in batch.items])
        except asyncio.CancelledError:
            self._settle(batch, AgentError(ErrorCode.CANCELLED, _CLOSED))
            raise
        except Exception as exc:
            self.finished_batches += 1
            self.failed_batches += 1
            self._settle(batch, _as_agent_error(exc))
            return
        self.finished_batches += 1
        if not isinstance(results, list) or len(results) != len(batch.items):
            self.failed_batches += 1
            got = len(results) if isinstance(results, list) else type(results).__name__
            message = f"run_batch returned {got} results for {len(batch.items)} items"
            self._settle(batch, AgentError(ErrorCode.INTERNAL, message))
            return
        for entry, result in zip(batch.items, results, strict=True):
            if not entry.future.done():
                entry.future.set_result(result)

    def _settle(self, batch: _Batch[T, R], err: AgentError) -> None:
        for entry in batch.items:
            if not entry.future.done():
                failure = AgentError(err.code, err.message)
                failure.__cause__ = err.__cause__
                entry.future.set_exception(failure)

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self, *, cancel: bool = False) -> None:
        """Stop accepting; flush (or with `cancel`, fail) the rest; leave no task behind."""
        self._closed = True
        if cancel:
            self._fail_waiting()
            for task in self._running:
                task.cancel(_CLOSED)
        else:
            self._flush = True
            self._wake_dispatcher()
        while self._dispatcher is not None or self._running:
            tasks: set[asyncio.Task[Any]] = set(self._running)
            if self._dispatcher is not None:
                tasks.add(self._dispatcher)
            await asyncio.wait(tasks)

    def _fail_waiting(self) -> None:
        for queues in self._queues:
            for queue in queues.values():
                for entry in queue:
                    if not entry.future.done():
                        entry.future.set_exception(AgentError(ErrorCode.CANCELLED, _CLOSED))
            queues.clear()
        self._wake_dispatcher()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
