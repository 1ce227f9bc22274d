"""The ask pipeline, wired CSP style: stages are tasks joined by bounded channels.

    ask() --inbox--> router x R --work--> worker pool (N slots) --out--> aggregator --> events
                                                                     \\--persist--> store (async)

- `ask()` is the input edge: it admits a job (or refuses with `overloaded` when `max_in_flight`
  questions are already in flight), then waits for the job bound to its context, so a cancel or
  a deadline frees every stage's work for it.
- Every stage catches per job: an `AgentError` fails that job with its code; anything else is
  logged and fails the job with `internal`. A stage never dies of one bad job.
- The aggregator streams the reply (`delta` pieces, `citation`s, then `answer`) and only then
  hands a record to the persistence stage, so storage latency never delays an answer. The
  request's terminal event waits for that write, though: `done` means the turn is saved (so a
  conversation can continue on another server process at once), and a failed write is that
  request's `storage_failed` error after its answer — shown to the user, never silent.
- A turn of a conversation is saved with an index entry `conv/<conversation>/<at>/<id>` in
  the same commit, so `conversation_turns` finds it from any process sharing the store.
- A question asked with a `Scope` (a tenant's: `tenancy.py`) is answered from that scope's
  knowledge bases and saved to that scope's history store; without one, to the pipeline's.
- Each stage counts the work it *finishes* (a result or the job's own error; not a job that
  left because it was cancelled or ran out of time) and exposes its backlog, so a `Watchdog`
  can tell a stuck stage from a slow request (`watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from typing import Any

from .. import keyspace
from ..errors import AgentError, ErrorCode
from ..ports import Clock, LoopClock, Store
from ..protocol import Answer, Ask, Citation, Delta, Event
from ..runtime.channels import Channel, ChannelClosed, ChannelEmpty
from ..runtime.context import Context
from ..runtime.pool import WorkerPool
from ..runtime.watchdog import Watchdog
from ..telemetry import Log, failure, fallback_log
from ..tenancy import Scope
from .jobs import Job, Reply, Route
from .router import Router

Worker = Callable[[Job], Awaitable[Reply]]
Observer = Callable[[str, float, str], None]


def split_stream(text: str, size: int = 24) -> list[str]:
    """Cut text into small pieces on spaces (for `delta` events); joined, they equal `text`."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        space = text.find(" ", end)
        end = len(text) if space == -1 or space - start > size * 3 else space + 1
        pieces.append(text[start:end])
        start = end
    return pieces


class Pipeline:
    """Owns the stage tasks and channels; `ask` is the handler the agent routes `ask` to."""

    def __init__(self, router: Router, workers: dict[Route, Worker], *,
                 store: Store | None = None, clock: Clock | None = None,
                 pool_size: int = 8, routers: int = 4, max_in_flight: int = 1024,
                 timeout_s: float = 30.0, observe: Observer | None = None,
                 log: Log = fallback_log) -> None:
        self._log = log
        self._router = router
        self._workers = workers
        self._store = store
        self._clock = clock or LoopClock()
        self._routers = routers
        self._timeout = timeout_s
        self._max_in_flight = max_in_flight
        self._observe = observe or (lambda stage, ms, rid: None)
        self.pool = WorkerPool(pool_size, queue_size=max_in_flight, queue_wait=None,
                               name="workers")
        self.inbox: Channel[Job] = Channel(max_in_flight)
        self.work: Channel[Job] = Channel(max_in_flight)
        self.out: Channel[Job] = Channel(max_in_flight)
        self.persist: Channel[Saving] = Channel(4096)
        self._tasks: list[asyncio.Task[None]] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.persist_failures = 0
        self.finished = dict.fromkeys(STAGES, 0)
        """Per stage: jobs (or, for `persist`, commits) it finished, with a result or an error
        of their own; the watchdog's measure of progress."""
        self._routing = 0
        self._saving = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        stages = [self._route_stage() for _ in range(self._routers)]
        stages += [self._dispatch_stage(), self._aggregate_stage(), self._persist_stage()]
        self._tasks = [loop.create_task(s) for s in stages]

    def watch(self, watchdog: Watchdog) -> None:
        """Let `watchdog` see each stage's backlog and progress."""
        backlogs: dict[str, Callable[[], int]] = {
            "route": lambda: len(self.inbox) + self._routing,
            "work": lambda: len(self.work) + self.pool.queued + self.pool.in_flight,
            "aggregate": lambda: len(self.out),
            "persist": lambda: len(self.persist) + self._saving,
        }
        for stage in STAGES:
            watchdog.watch(stage, backlog=backlogs[stage], progress=self._progress_of(stage))

    def _progress_of(self, stage: str) -> Callable[[], int]:
        return lambda: self.finished[stage]

    async def aclose(self) -> None:
        for channel in (self.inbox, self.work, self.out, self.persist):
            channel.close()
        await self.pool.aclose(cancel=True)
        for task in [*self._tasks, *self._jobs]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._jobs, return_exceptions=True)

    # -- the input edge ----------------------------------------------------------------------

    async def ask(self, request: Ask, emit: Callable[[Event], None], *,
                  scope: Scope | None = None) -> None:
        """Answer one question through the stages, in `scope` (see the module docstring);
        raises the job's `AgentError` on failure."""
        if self.in_flight >= self._max_in_flight:
            raise AgentError(ErrorCode.OVERLOADED, "too many questions in flight; retry shortly")
        ctx = Context(request.id, timeout=self._timeout, clock=self._clock)
        loop = asyncio.get_running_loop()
        job = Job(request, ctx, emit, loop.create_future(), self._clock.monotonic(),
                  scope=scope)
        self.in_flight += 1
        try:
            if not self.inbox.try_send(job):
                raise AgentError(ErrorCode.OVERLOADED, "the pipeline is full; retry shortly")
            await ctx.run(job.finished)
            if job.saved is not None:
                await ctx.run(job.saved)
        finally:
            self.in_flight -= 1
            ctx.cancel("the question is finished")
            if not job.finished.done():
                job.finished.cancel()

    # -- stages ------------------------------------------------------------------------------

    async def _step(self, job: Job, stage: str, aw: Awaitable[Any]) -> bool:
        """Run one stage's work for a job; False (and the job failed) if it did not succeed."""
        start = self._clock.monotonic()
        try:
            await job.ctx.run(aw)
        except AgentError as exc:
            job.fail(exc)
            if exc.code not in LEFT:
                self.finished[stage] += 1
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log("stage_failed", level="error", stage=stage, request_id=job.request.id,
                      error=failure(exc))
            job.fail(AgentError(ErrorCode.INTERNAL, f"internal error in {stage}: {exc}"))
            self.finished[stage] += 1
            return False
        self.finished[stage] += 1
        ms = (self._clock.monotonic() - start) * 1000
        job.timings[stage] = round(ms, 3)
        self._observe(stage, ms, job.request.id)
        return True

    async def _forward(self, channel: Channel[Job], job: Job) -> None:
        try:
            await job.ctx.run(channel.send(job))
        except AgentError as exc:
            job.fail(exc)

    async def _route_stage(self) -> None:
        with contextlib.suppress(ChannelClosed):
            async for job in self.inbox:
                if job.finished.done():
                    continue
                self._routing += 1
                try:
                    routed = await self._step(job, "route", self._router.route(job))
                finally:
                    self._routing -= 1
                if routed:
                    await self._forward(self.work, job)

    async def _dispatch_stage(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ChannelClosed):
            async for job in self.work:
                if job.finished.done():
                    continue
                task = loop.create_task(self._work(job))
                self._jobs.add(task)
                task.add_done_callback(self._jobs.discard)

    async def _work(self, job: Job) -> None:
        assert job.route is not None, "the router always sets a route"
        worker = self._workers[job.route]

        async def run() -> None:
            job.reply = await self.pool.submit(job.ctx, worker, job)

        if await self._step(job, "work", run()):
            await self._forward(self.out, job)

    async def _aggregate_stage(self) -> None:
        with contextlib.suppress(ChannelClosed):
            async for job in self.out:
                if job.finished.done() or job.reply is None:
                    continue
                try:
                    record = self._stream(job, job.reply)
                except Exception as exc:  # a bug in one reply must not end the stage
                    self._log("stage_failed", level="error", stage="aggregate",
                              request_id=job.request.id, error=failure(exc))
                    job.fail(AgentError(ErrorCode.INTERNAL, f"internal error in aggregate: {exc}"))
                    continue
                finally:
                    self.finished["aggregate"] += 1
                store = self._store if job.scope is None else job.scope.history
                if store is not None and not job.reply.saved:
                    job.saved = asyncio.get_running_loop().create_future()
                    job.finish()
                    await self.persist.send((record, job.saved, store))
                else:
                    job.finish()

    def _stream(self, job: Job, reply: Reply) -> dict[str, Any]:
        rid = job.request.id
        if not reply.streamed:
            for piece in split_stream(reply.text):
                job.emit(Delta(rid, piece))
        for cited in reply.citations:
            job.emit(Citation.of(rid, cited))
        total = (self._clock.monotonic() - job.started) * 1000
        timings = {**job.timings, "total": round(total, 3)}
        self._observe("total", total, rid)
        citations = [replace(c, score=round(c.score, 4)) for c in reply.citations]
        job.emit(Answer(rid, reply.text, citations, reply.confident, reply.route.value, timings))
        return {"id": rid, "question": job.request.text, "answer": reply.text,
                "route": reply.route.value, "citations": [asdict(c) for c in citations],
                "timings_ms": timings,
                "at": self._clock.wall(), "conversation": job.request.conversation}

    async def _persist_stage(self) -> None:
        """Group commit: every record waiting when the store is free goes in one commit, so
        under load each answer does not pay for its own trip to the store (and its thread)."""
        with contextlib.suppress(ChannelClosed):
            async for first in self.persist:
                batch = [first]
                with contextlib.suppress(ChannelEmpty, ChannelClosed):
                    while len(batch) < MAX_GROUP_COMMIT:
                        batch.append(self.persist.try_recv())
                self._saving = len(batch)
                try:
                    await self._save(batch)
                finally:
                    self._saving = 0
                self.finished["persist"] += 1

    async def _save(self, batch: list[Saving]) -> None:
        """One commit per store in the batch (per tenant: each has its own namespace)."""
        by_store: dict[int, list[Saving]] = {}
        for saving in batch:
            by_store.setdefault(id(saving[2]), []).append(saving)
        for group in by_store.values():
            await self._save_to(group[0][2], group)

    async def _save_to(self, store: Store, batch: list[Saving]) -> None:
        try:
            await store.commit(_history_puts([record for record, _, _ in batch]))
        except Exception as exc:
            # Any failure, not only the store's own `AgentError`: the stage must outlive it, or
            # every later answer would wait for a save that never comes.
            err = exc if isinstance(exc, AgentError) else AgentError(
                ErrorCode.STORAGE, f"{type(exc).__name__}: {exc}")
            self.persist_failures += len(batch)
            self._log("history_not_saved", level="warning",
                      request_ids=[r["id"] for r, _, _ in batch], error=err.message)
            for _, saved, _ in batch:
                if not saved.done():
                    saved.set_exception(AgentError(
                        err.code, f"the answer was not saved: {err.message}"))
            return
        for _, saved, _ in batch:
            if not saved.done():
                saved.set_result(None)


Saving = tuple[dict[str, Any], asyncio.Future[None], Store]
"""A history record waiting in the persist stage, its `saved` future, and where it goes."""
MAX_GROUP_COMMIT = 256
STAGES = ("route", "work", "aggregate", "persist")
LEFT = (ErrorCode.CANCELLED, ErrorCode.DEADLINE)
"""Codes of jobs that left a stage rather than being finished by it."""


def _history_puts(records: list[dict[str, Any]]) -> dict[str, bytes]:
    puts = {}
    for record in records:
        key = keyspace.history_key(record["at"], record["id"])
        puts[key] = json.dumps(record).encode()
        if record.get("conversation"):
            puts[keyspace.conversation_key(record["conversation"], key)] = key.encode()
    return puts


async def conversation_turns(store: Store, conversation: str, limit: int
                             ) -> list[dict[str, Any]]:
    """The last `limit` saved turns of a conversation, oldest first."""
    turns = []
    prefix = keyspace.conversation_prefix(conversation)
    for key in (await store.keys(prefix))[-limit:]:
        raw = await store.get(keyspace.history_of(key, conversation))
        if raw is not None:
            turns.append(json.loads(raw))
    return turns
