"""Durable jobs: multi-step work journaled through the `Store`, resumable after any crash.

Contract:
- `Workflows.start(kind, input)` journals the job (meta, input, open marker: one commit) and
  runs its function `fn(run, input)` as a task. The function does its work in `run.step(name,
  fn)` calls, in a deterministic order.
- `run.step` replays: a step already in the journal returns its recorded result without
  running. Otherwise its function runs and gets a `Tx`; the writes it stages there (the step's
  side effects), the step's record and the job's meta are ONE atomic `Store.commit`. So a step
  has either happened completely, recorded once, or not at all: a completed step's effect is
  never applied twice, and nothing half-done survives a crash.
- A step that fails with a retryable error (storage, conflict, overload, deadline, an upstream
  that may recover) runs again after an exponential backoff with full jitter, up to the retry
  policy's attempts; then the job fails with that error (`status` failed, `last_error`).
  `run.step(name, fn, retry=False)` never runs `fn` twice: any failure fails the job at once
  (`retry` may also be a function of the error, saying whether `fn` may run again).
- A running job is leased by one owner (a process or a browser tab) and the lease is renewed
  while it runs. Every write expects the meta bytes its owner last wrote, so when someone else
  cancels the job or takes it over (after the lease ran out) the old owner's next write fails
  and it stops: the meta is the job's lock and its fence.
- `resume()` claims every unfinished job whose lease has run out (or that is ours) and runs it
  from its last recorded step; `aclose()` stops local runs WITHOUT finishing them, so the next
  process (or page load) resumes them.
- A job whose function sets `run.forget_when_finished` (its outcome was delivered elsewhere)
  is deleted from the journal by the commit that would have finished it; `cancel(job_id,
  forget=True)` likewise. `watch` still reports such a job's last record to a local watcher.
- A job may belong to a tenant (`start(..., tenant=)`, kept in its record): one engine and one
  journal serve every tenant, so resumption needs no list of tenants; `recent` lists one
  tenant's jobs, and finished ones are forgotten per tenant (`keep_finished` each).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import AgentError, ErrorCode
from ..llm.resilience import RetryPolicy
from ..ports import Clock, Store
from ..telemetry import Log, failure, fallback_log
from .journal import (
    JOB_PREFIX,
    OPEN_PREFIX,
    JobRecord,
    JobStatus,
    StepRecord,
    input_key,
    meta_key,
    open_key,
)
from .run import SHUTDOWN, STOPPED, JobStopped, Run, Settings

WorkflowFn = Callable[[Run, Any], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class _Local:
    run: Run
    task: asyncio.Task[None]
    heartbeat: asyncio.Task[None] | None = None


class Workflows:
    """Registered job kinds, the jobs this owner runs, and the journal's queries."""

    def __init__(self, store: Store, clock: Clock, *, owner: str | None = None,
                 lease_s: float = 10.0, retry: RetryPolicy | None = None,
                 keep_finished: int = 100, rng: random.Random | None = None,
                 log: Log = fallback_log) -> None:
        self._log = log
        self.store = store
        self.clock = clock
        self.owner = owner or uuid.uuid4().hex[:12]
        self.lease_s = lease_s
        self.retry = retry or RetryPolicy(attempts=4, base_s=0.25, cap_s=4.0)
        self.keep_finished = keep_finished
        self.rng = rng
        self._kinds: dict[str, WorkflowFn] = {}
        self._local: dict[str, _Local] = {}
        self.settings = Settings(store, clock, lease_s, self.retry, rng, log)
        self._closing = False
        self._scanner: asyncio.Task[None] | None = None

    def register(self, kind: str, fn: WorkflowFn) -> None:
        self._kinds[kind] = fn

    @property
    def closing(self) -> bool:
        """True once `aclose` began: runs stopping now are left to resume, not abandoned."""
        return self._closing

    # -- starting and resuming ---------------------------------------------------------------

    async def start(self, kind: str, input: Any, *, title: str = "",
                    tenant: str | None = None) -> str:
        """Journal a new job (of `tenant`) and start running it; returns its id."""
        if kind not in self._kinds:
            raise AgentError(ErrorCode.NOT_FOUND, f"there is no job kind {kind!r}")
        now = self.clock.wall()
        job_id = f"{int(now * 1000):012x}-{uuid.uuid4().hex[:8]}"
        record = JobRecord(job_id, kind, title, JobStatus.RUNNING, now, now, owner=self.owner,
                           lease_until=now + self.lease_s, runs=1, tenant=tenant)
        raw = record.encode()
        await self.store.commit({meta_key(job_id): raw,
                                 input_key(job_id): json.dumps(input).encode(),
                                 open_key(job_id): b""}, expect={meta_key(job_id): None})
        self._spawn(Run(self.settings, record, raw, [], input))
        return job_id

    async def resume(self) -> list[str]:
        """Claim and run every unfinished job that nobody holds; returns their ids."""
        taken = []
        for key in await self.store.keys(OPEN_PREFIX):
            job_id = key[len(OPEN_PREFIX):]
            if job_id not in self._local and not self._closing and await self._claim(job_id):
                taken.append(job_id)
        return taken

    async def _claim(self, job_id: str) -> bool:
        raw = await self.store.get(meta_key(job_id))
        if raw is None:
            return False
        record = JobRecord.decode(raw)
        now = self.clock.wall()
        if not record.claimable(self.owner, now) or record.kind not in self._kinds:
            return False
        claimed = record.evolve(owner=self.owner, lease_until=now + self.lease_s,
                                runs=record.runs + 1, attempts=record.attempts + 1, updated=now)
        fresh = claimed.encode()
        try:
            await self.store.commit({meta_key(job_id): fresh}, expect={meta_key(job_id): raw})
        except AgentError as exc:
            if exc.code is ErrorCode.CONFLICT:
                return False  # another owner claimed it first
            raise
        steps = [StepRecord.decode(value) for value in await self._values(
            f"{JOB_PREFIX}{job_id}/step/")]
        stored_input = await self.store.get(input_key(job_id))
        self._log("job_resumed", job=job_id, owner=self.owner, steps=len(steps))
        self._spawn(Run(self.settings, claimed, fresh, steps,
                        None if stored_input is None else json.loads(stored_input)))
        return True

    async def _values(self, prefix: str) -> list[bytes]:
        values = []
        for key in await self.store.keys(prefix):
            value = await self.store.get(key)
            if value is not None:
                values.append(value)
        return values

    def scan_every(self, seconds: float) -> None:
        """Keep resuming in the background, so jobs whose owner died are taken over."""

        async def scan() -> None:
            while not self._closing:
                try:
                    await self.resume()
                except AgentError as exc:
                    self._log("jobs_not_resumed", level="warning", error=exc.message)
                await self.clock.sleep(seconds)

        self._scanner = asyncio.get_running_loop().create_task(scan())

    # -- running -----------------------------------------------------------------------------

    def _spawn(self, run: Run) -> None:
        loop = asyncio.get_running_loop()
        local = _Local(run, loop.create_task(self._execute(run)))
        local.heartbeat = loop.create_task(self._heartbeat(run, local))
        self._local[run.id] = local

    async def _heartbeat(self, run: Run, local: _Local) -> None:
        while True:
            await self.clock.sleep(self.lease_s / 3)
            try:
                await run.renew()
            except JobStopped:
                local.task.cancel(STOPPED)
                return
            except AgentError as exc:
                self._log("job_lease_not_renewed", level="warning", job=run.id,
                          error=exc.message)

    async def _execute(self, run: Run) -> None:
        fn = self._kinds[run.record.kind]
        try:
            result = await fn(run, run.input)
            await self._finish(run, JobStatus.DONE, result=result)
        except JobStopped:
            self._log("job_stopped", job=run.id, reason="cancelled or taken over")
        except asyncio.CancelledError as exc:
            if self._closing or SHUTDOWN in exc.args or STOPPED in exc.args:
                return  # left unfinished on purpose: it resumes later (or elsewhere)
            raise
        except AgentError as exc:
            await self._finish(run, JobStatus.FAILED, error=exc)
        except Exception as exc:
            self._log("job_failed", level="error", job=run.id, error=failure(exc))
            await self._finish(run, JobStatus.FAILED,
                               error=AgentError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
        finally:
            local = self._local.pop(run.id, None)
            if local is not None and local.heartbeat is not None:
                local.heartbeat.cancel()
            run._signal()

    async def _finish(self, run: Run, status: JobStatus, *, result: dict[str, Any] | None = None,
                      error: AgentError | None = None) -> None:
        record = run.record.evolve(status=status, result=result, owner=None)
        if error is not None:
            record = record.evolve(last_error={"code": error.code.value,
                                               "message": error.message})
        deletes = [open_key(run.id)]
        if status is JobStatus.DONE:
            deletes.append(input_key(run.id))  # a failed job keeps its input for inspection
        try:
            if run.forget_when_finished:
                keys = await self.store.keys(f"{JOB_PREFIX}{run.id}/")
                await run.erase(record, list(dict.fromkeys([*deletes, *keys])))
                return
            await run.write(record, deletes=deletes)
        except (JobStopped, AgentError) as exc:
            self._log("job_not_recorded", level="warning", job=run.id, status=status.value,
                      error=str(exc))
            return
        await self._prune()

    async def _prune(self) -> None:
        """Forget the oldest finished jobs beyond `keep_finished` (ids sort by start time)."""
        metas = [k for k in await self.store.keys(JOB_PREFIX) if k.endswith("/meta")]
        if len(metas) <= self.keep_finished:
            return  # nothing to forget: spare reading every job's meta at each finish
        finished: dict[str | None, list[str]] = {}
        for key in metas:
            raw = await self.store.get(key)
            record = None if raw is None else JobRecord.decode(raw)
            if record is not None and record.finished:
                finished.setdefault(record.tenant, []).append(record.id)
        for ids in finished.values():  # per tenant: one's many jobs never evict another's
            for job_id in ids[:max(0, len(ids) - self.keep_finished)]:
                keys = await self.store.keys(f"{JOB_PREFIX}{job_id}/")
                await self.store.commit({}, keys)

    async def aclose(self) -> None:
        """Stop local runs without finishing them (they resume later) and the scanner."""
        self._closing = True
        tasks = [t for local in self._local.values()
                 for t in (local.task, local.heartbeat) if t is not None]
        if self._scanner is not None:
            tasks.append(self._scanner)
        for task in tasks:
            task.cancel(SHUTDOWN)
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- queries and control -----------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord:
        local = self._local.get(job_id)
        if local is not None:
            return local.run.record
        raw = await self.store.get(meta_key(job_id))
        if raw is None:
            raise AgentError(ErrorCode.NOT_FOUND, f"there is no job {job_id!r}")
        return JobRecord.decode(raw)

    async def recent(self, limit: int = 50, *, tenant: str | None = None) -> list[JobRecord]:
        """The `limit` newest jobs of `tenant`, newest first."""
        metas = [k for k in await self.store.keys(JOB_PREFIX) if k.endswith("/meta")]
        found: list[JobRecord] = []
        for key in reversed(metas):
            if len(found) >= limit:
                break
            try:
                record = await self.get(key[len(JOB_PREFIX):-len("/meta")])
            except AgentError as exc:
                if exc.code is ErrorCode.NOT_FOUND:
                    continue  # pruned meanwhile
                raise
            if record.tenant == tenant:
                found.append(record)
        return found

    async def cancel(self, job_id: str, *, forget: bool = False) -> JobRecord:
        """Cancel a job wherever it runs; a finished job is returned as it is. `forget`: drop
        the cancelled job from the journal (in the same commit) rather than keep its record;
        it is `not_found` from then on."""
        for _ in range(10):
            raw = await self.store.get(meta_key(job_id))
            if raw is None:
                raise AgentError(ErrorCode.NOT_FOUND, f"there is no job {job_id!r}")
            record = JobRecord.decode(raw)
            if record.finished:
                return record
            now = self.clock.wall()
            cancelled = record.evolve(status=JobStatus.CANCELLED, owner=None, updated=now)
            puts = {} if forget else {meta_key(job_id): cancelled.encode()}
            deletes = [open_key(job_id), input_key(job_id)]
            if forget:
                deletes = list(dict.fromkeys(
                    [*deletes, *await self.store.keys(f"{JOB_PREFIX}{job_id}/")]))
            try:
                await self.store.commit(puts, deletes, {meta_key(job_id): raw})
            except AgentError as exc:
                if exc.code is not ErrorCode.CONFLICT:
                    raise
                # The job just wrote a step or its progress: read it again. One running here
                # is stopped first: a busy ingestion reports progress often enough to win
                # every race (seen: "kept changing" on a cancelled 1,200-passage ingest).
                running = self._local.get(job_id)
                if running is not None and not running.task.done():
                    running.task.cancel(STOPPED)
                    await asyncio.wait({running.task})
                continue
            local = self._local.get(job_id)
            if local is not None:
                local.task.cancel(STOPPED)
            return cancelled
        raise AgentError(ErrorCode.CONFLICT, f"job {job_id} kept changing; cancel it again")

    async def watch(self, job_id: str, poll_s: float = 0.5) -> AsyncIterator[JobRecord]:
        """The job's record each time it changes, until it is finished (local runs report at
        once; jobs running elsewhere are polled)."""
        last: JobRecord | None = None
        seen: Run | None = None
        while True:
            local = self._local.get(job_id)
            if local is not None:
                seen = local.run
            if local is None and seen is not None and seen.record.finished:
                record = seen.record  # (what it ended as, even if it was then forgotten)
            else:
                record = local.run.record if local is not None else await self.get(job_id)
            if record != last:
                yield record
                last = record
            if record.finished:
                return
            if local is not None:
                await local.run.changed(poll_s)
            else:
                await self.clock.sleep(poll_s)

    async def ended(self, job_id: str) -> None:
        """Wait until this owner's run of the job has ended (at once when it has none); its
        outcome is the job's record, not an exception here."""
        local = self._local.get(job_id)
        if local is not None:
            await asyncio.wait([local.task])

    def running(self) -> list[str]:
        return list(self._local)
