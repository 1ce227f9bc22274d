"""One owner's execution of a durable job: step replay, atomic step commits, retries, and the
fenced meta writes that hold the job's lease. See `engine.py` for the whole contract."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import AgentError, ErrorCode, UpstreamError
from ..llm.resilience import RetryPolicy
from ..ports import Clock, Store
from ..telemetry import Log, fallback_log
from .journal import JobRecord, StepRecord, meta_key, step_key


@dataclass(frozen=True, slots=True)
class Settings:
    """What every run of one `Workflows` shares."""

    store: Store
    clock: Clock
    lease_s: float
    retry: RetryPolicy
    rng: random.Random | None = None
    log: Log = fallback_log


StepFn = Callable[["Tx"], Awaitable[Any]]
RETRYABLE = {ErrorCode.STORAGE, ErrorCode.CONFLICT, ErrorCode.OVERLOADED, ErrorCode.DEADLINE,
             ErrorCode.NOT_READY, ErrorCode.UPSTREAM_UNAVAILABLE}
SHUTDOWN = "wasmagent: the runtime is shutting down"
STOPPED = "wasmagent: the job was cancelled or taken over"


def retryable(exc: AgentError) -> bool:
    if isinstance(exc, UpstreamError):
        return exc.retryable
    return exc.code in RETRYABLE


class JobStopped(Exception):
    """This owner may not continue the job (cancelled, or another owner took it over)."""


@dataclass(slots=True)
class Tx:
    """The writes a step stages; they commit atomically with the step's journal record.
    `on_commit` callbacks run after that commit (to update in-memory state to match it)."""

    puts: dict[str, bytes] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    expect: dict[str, bytes | None] = field(default_factory=dict)
    after: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def put(self, key: str, value: bytes) -> None:
        self.puts[key] = value

    def delete(self, key: str) -> None:
        self.deletes.append(key)

    def expect_value(self, key: str, value: bytes | None) -> None:
        self.expect[key] = value

    def on_commit(self, fn: Callable[[], Awaitable[None]]) -> None:
        self.after.append(fn)


class Run:
    """One owner's execution of one job: replays the journal, then runs and records steps."""

    def __init__(self, settings: Settings, record: JobRecord, meta: bytes,
                 steps: list[StepRecord], input: Any) -> None:
        self._settings = settings
        self.record = record
        self._meta = meta
        self._steps = steps
        self.input = input
        self._next = 0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.forget_when_finished = False
        """Set by the job's function: once it is done or failed, drop the job from the
        journal (its outcome was delivered elsewhere) instead of keeping its record."""

    @property
    def id(self) -> str:
        return self.record.id

    def progress(self, done: int, total: int, message: str) -> None:
        """Report progress: watchers see it now, the journal with the next write."""
        self.record = self.record.evolve(progress={"done": done, "total": total,
                                                   "message": message})
        self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), within)

    @property
    def replaying(self) -> bool:
        """Whether the next `step` comes from the journal (recorded by an earlier run)."""
        return self._next < len(self._steps)

    async def step(self, name: str, fn: StepFn, *,
                   retry: bool | Callable[[AgentError], bool] = True) -> Any:
        """Run (or replay) the next step; see the module docstring. `retry=False` (or a
        function of the error saying False): a failure fails the job at once, for a step
        whose function must not run again (it had an effect the journal cannot undo, such as
        a non-idempotent tool call or text already shown to a user)."""
        n = self._next
        self._next += 1
        if n < len(self._steps):
            recorded = self._steps[n]
            if recorded.name != name:
                raise AgentError(ErrorCode.INTERNAL, f"job {self.id}: step {n} is "
                                 f"{recorded.name!r} in the journal but {name!r} now")
            return recorded.result
        policy = self._settings.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                tx = Tx()
                result = await fn(tx)
                record = StepRecord(name, result, attempt)
                await asyncio.shield(self._commit_step(n, record, tx))
                return result
            except AgentError as exc:
                allowed = retry(exc) if callable(retry) else retry
                if not allowed or not retryable(exc) or attempt >= policy.attempts:
                    raise
                await self._failed_attempt(exc)
                await self._settings.clock.sleep(policy.delay(attempt, self._settings.rng))

    async def _commit_step(self, n: int, step: StepRecord, tx: Tx) -> None:
        # Shielded: once the commit is under way, the in-memory state must follow it even if
        # the job is being cancelled, or memory and store would disagree.
        record = self.record.evolve(steps_done=n + 1)
        await self.write(record, {**tx.puts, step_key(self.id, n): step.encode()},
                         tx.deletes, tx.expect)
        for fn in tx.after:
            await fn()

    async def _failed_attempt(self, exc: AgentError) -> None:
        self._settings.log("job_step_retry", level="warning", job=self.id, error=exc.message)
        record = self.record.evolve(attempts=self.record.attempts + 1,
                                    last_error={"code": exc.code.value, "message": exc.message})
        try:
            await self.write(record)
        except AgentError as unrecorded:  # the store is failing: the retry matters more
            self.record = record
            self._settings.log("job_attempt_not_recorded", level="warning", job=self.id,
                               error=unrecorded.message)

    async def erase(self, record: JobRecord, keys: list[str]) -> None:
        """Delete `keys` (the job's own) in one commit fenced like `write`; `record` becomes
        the record watchers see last."""
        settings = self._settings
        async with self._lock:
            key = meta_key(self.id)
            try:
                await settings.store.commit({}, keys, {key: self._meta})
            except AgentError as exc:
                if exc.code is ErrorCode.CONFLICT and await settings.store.get(key) != self._meta:
                    raise JobStopped(self.id) from None
                raise
            self.record = record.evolve(updated=settings.clock.wall())
            self._signal()

    async def renew(self) -> None:
        await self.write(self.record)

    async def write(self, record: JobRecord, puts: dict[str, bytes] | None = None,
                    deletes: list[str] | None = None,
                    expect: dict[str, bytes | None] | None = None) -> None:
        """Save `record` (lease renewed) with extra writes, fenced by the meta we last wrote."""
        settings = self._settings
        async with self._lock:
            now = settings.clock.wall()
            if not record.finished:
                record = record.evolve(lease_until=now + settings.lease_s)
            record = record.evolve(updated=now)
            raw = record.encode()
            key = meta_key(self.id)
            try:
                await settings.store.commit({**(puts or {}), key: raw}, deletes or [],
                                          {**(expect or {}), key: self._meta})
            except AgentError as exc:
                if exc.code is ErrorCode.CONFLICT and await settings.store.get(key) != self._meta:
                    raise JobStopped(self.id) from None
                raise
            self._meta = raw
            self.record = record
            self._signal()
