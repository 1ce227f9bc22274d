"""Durable jobs: steps recorded once, resumed after a crash, retried, leased, fenced, cancelled.

A "crash" here is what a SIGKILL or a page reload leaves: the store as it was at the last
commit, and none of the process's memory. The tests drop every in-memory object and build a
new `Workflows` (a new owner) on the same store.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support.clock import ManualClock
from wasmagent.errors import AgentError, ErrorCode
from wasmagent.knowledge.ingest import EMBED_GROUP, ingest
from wasmagent.knowledge.library import Library
from wasmagent.llm.resilience import RetryPolicy
from wasmagent.ports import MemoryStore
from wasmagent.protocol import DocumentIn
from wasmagent.workflow import JobRecord, JobStatus, JobStopped, Run, Tx, Workflows


class CrashingStore(MemoryStore):
    """Dies (raises `Crash`) on the `crash_at`-th commit, before or after applying it; fails
    the commits numbered in `fail_on` like a busy disk."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0
        self.crash_at: int | None = None
        self.after_write = False
        self.fail_on: set[int] = set()

    async def commit(self, puts: Any, deletes: Any = (), expect: Any = None) -> None:
        self.commits += 1
        if self.commits in self.fail_on:
            raise AgentError(ErrorCode.STORAGE, "the disk is busy")
        if self.commits == self.crash_at and not self.after_write:
            raise Crash
        await super().commit(puts, deletes, expect)
        if self.commits == self.crash_at:
            raise Crash


class Crash(BaseException):
    """The process died here (not an Exception: nothing in the core may catch it)."""


def _engine(store: MemoryStore, clock: ManualClock, **kw: Any) -> Workflows:
    return Workflows(store, clock, lease_s=5.0,
                     retry=RetryPolicy(attempts=3, base_s=0.001, cap_s=0.001), **kw)


def _counting_job(store: MemoryStore, blocked: asyncio.Event | None = None) -> Any:
    async def job(run: Run, data: dict[str, Any]) -> dict[str, Any]:
        return await _count(run, data, store, blocked)
    return job


async def _count(run: Run, job: dict[str, Any], store: MemoryStore,
                 blocked: asyncio.Event | None = None) -> dict[str, Any]:
    """Each step adds an effect key and bumps a counter (not idempotent: a step whose effect
    ran twice shows); the result sums what the steps returned. Step `block_at` never ends
    (and sets `blocked` when it starts)."""
    total = 0
    for n in range(job["steps"]):
        async def effect(tx: Tx, n: int = n) -> int:
            if job.get("block_at") == n:
                if blocked is not None:
                    blocked.set()
                await asyncio.Event().wait()
            seen = await store.get("effects")
            tx.expect_value("effects", seen)
            tx.put("effects", str(int(seen or b"0") + 1).encode())
            tx.put(f"effect/{n:03d}", str(n).encode())
            return n
        total += await run.step(f"step {n}", effect)
        run.progress(n + 1, job["steps"], f"step {n} done")
    return {"total": total}


async def _finished(engine: Workflows, job_id: str) -> Any:
    async with asyncio.timeout(60):  # a safety net: the jobs here take milliseconds
        async for record in engine.watch(job_id, poll_s=0.01):
            last = record
        return last


async def test_a_job_runs_its_steps_once_and_records_the_result() -> None:
    store, clock = MemoryStore(), ManualClock()
    engine = _engine(store, clock)
    engine.register("count", _counting_job(store))
    job_id = await engine.start("count", {"steps": 4}, title="count to four")
    record = await _finished(engine, job_id)
    assert record.status is JobStatus.DONE
    assert record.result == {"total": 6}
    assert record.steps_done == 4
    assert record.attempts == 0
    assert await store.keys("effect/") == [f"effect/{n:03d}" for n in range(4)]
    assert await store.get("effects") == b"4"
    assert await store.keys("wf/open/") == []
    assert await store.get(f"wf/job/{job_id}/input") is None  # done: the input is dropped
    listed = await engine.recent()
    assert [j.public()["title"] for j in listed] == ["count to four"]
    await engine.aclose()


async def test_a_crash_at_any_commit_resumes_without_losing_or_repeating_a_step() -> None:
    # commit 1 starts the job; 2..5 are steps; 6 finishes it. The process dies just before a
    # commit (nothing of it lands) or just after (it is durable, but nobody learns it).
    for after_write in (False, True):
        for crash_at in range(2, 7):
            await _crash_and_resume(crash_at, after_write)


async def _crash_and_resume(crash_at: int, after_write: bool) -> None:
    store, clock = CrashingStore(), ManualClock()
    store.crash_at, store.after_write = crash_at, after_write
    first = _engine(store, clock)
    first.register("count", _counting_job(store))
    job_id = await first.start("count", {"steps": 4})
    with pytest.raises(Crash):
        await first._local[job_id].task
    await first.aclose()  # what a dead process leaves: no memory, the lease still held

    store.crash_at = None
    clock.now += 10  # past the dead owner's lease
    second = _engine(store, clock)
    second.register("count", _counting_job(store))
    if crash_at == 6 and after_write:
        assert await second.resume() == []  # it had finished: nothing to resume
        record = await second.get(job_id)
    else:
        assert await second.resume() == [job_id]
        record = await _finished(second, job_id)
    assert record.status is JobStatus.DONE, crash_at
    assert record.result == {"total": 6}
    assert await store.keys("effect/") == [f"effect/{n:03d}" for n in range(4)]
    assert await store.get("effects") == b"4", crash_at
    steps = await store.keys(f"wf/job/{job_id}/step/")
    assert len(steps) == 4
    assert [json.loads(await store.get(k) or b"")["attempts"] for k in steps] == [1] * 4
    await second.aclose()


async def test_a_live_lease_is_respected_and_a_lapsed_one_is_taken_over_and_fenced() -> None:
    store, clock = MemoryStore(), ManualClock()
    first = _engine(store, clock, owner="first")
    first_blocked, second_blocked = asyncio.Event(), asyncio.Event()
    first.register("count", _counting_job(store, first_blocked))
    job_id = await first.start("count", {"steps": 3, "block_at": 1})
    await asyncio.wait_for(first_blocked.wait(), 60)  # step 0 done, step 1 never ends
    second = _engine(store, clock, owner="second")
    second.register("count", _counting_job(store, second_blocked))
    assert await second.resume() == []  # first still holds the lease
    clock.now += 6  # first stalls past its lease without renewing
    assert await second.resume() == [job_id]
    # first wakes up: its next write finds the meta changed and it stops without writing
    with pytest.raises(JobStopped):
        await first._local[job_id].run.renew()
    await first.aclose()
    # second replays step 0 from the journal and blocks in step 1 like first did; unblock it
    await asyncio.wait_for(second_blocked.wait(), 60)
    task = second._local[job_id].task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    record = await second.get(job_id)
    assert record.owner == "second"
    assert record.runs == 2
    assert record.steps_done == 1
    await second.aclose()


async def test_retryable_failures_are_retried_and_counted_then_give_up_with_the_error() -> None:
    store, clock = CrashingStore(), ManualClock()
    engine = _engine(store, clock)
    engine.register("count", _counting_job(store))
    job_id = await engine.start("count", {"steps": 2})
    store.fail_on = {2, 4, 5}  # step 0 fails; recorded; fails again; not even recorded
    record = await _finished(engine, job_id)
    assert record.status is JobStatus.DONE
    assert record.attempts == 2
    assert record.last_error == {"code": "storage_failed", "message": "the disk is busy"}

    async def broken(run: Run, job: Any) -> dict[str, Any]:
        async def step(tx: Tx) -> None:
            raise AgentError(ErrorCode.STORAGE, "still busy")
        await run.step("never works", step)
        return {}

    engine.register("broken", broken)
    store.fail_on = set()
    failed = await _finished(engine, await engine.start("broken", {}))
    assert failed.status is JobStatus.FAILED
    assert failed.last_error == {"code": "storage_failed", "message": "still busy"}
    assert failed.attempts == 2  # three tries: two recorded retries, then the failure
    await engine.aclose()


async def test_a_bug_in_a_step_fails_the_job_at_once_with_internal() -> None:
    store, clock = MemoryStore(), ManualClock()
    engine = _engine(store, clock)

    async def buggy(run: Run, job: Any) -> dict[str, Any]:
        async def step(tx: Tx) -> None:
            raise KeyError("oops")
        await run.step("bug", step)
        return {}

    engine.register("buggy", buggy)
    record = await _finished(engine, await engine.start("buggy", {}))
    assert record.status is JobStatus.FAILED
    assert record.attempts == 0
    assert record.last_error is not None
    assert record.last_error["code"] == "internal"
    await engine.aclose()


async def test_cancelling_stops_the_job_and_keeps_what_its_steps_stored() -> None:
    store, clock = MemoryStore(), ManualClock()
    engine = _engine(store, clock)
    blocked = asyncio.Event()
    engine.register("count", _counting_job(store, blocked))
    job_id = await engine.start("count", {"steps": 3, "block_at": 2})
    await asyncio.wait_for(blocked.wait(), 60)  # steps 0 and 1 are done
    cancelled = await engine.cancel(job_id)
    assert cancelled.status is JobStatus.CANCELLED
    record = await _finished(engine, job_id)
    assert record.status is JobStatus.CANCELLED
    assert await store.keys("effect/") == ["effect/000", "effect/001"]
    assert await store.keys("wf/open/") == []
    assert (await engine.cancel(job_id)).status is JobStatus.CANCELLED  # idempotent
    with pytest.raises(AgentError) as missing:
        await engine.get("no-such-job")
    assert missing.value.code is ErrorCode.NOT_FOUND
    await engine.aclose()


class RacingStore(MemoryStore):
    """A job that reports progress between every read and commit of `cancel`: while the job's
    task lives, each cancel commit finds the job's record changed just before it (its progress
    write landed first), as a busy ingestion did in CI."""

    def __init__(self) -> None:
        super().__init__()
        self.alive = False
        self.lost = 0

    async def commit(self, puts: Any, deletes: Any = (), expect: Any = None) -> None:
        for key, expected in (expect or {}).items():
            raw = puts.get(key) if key.startswith("wf/") else None
            if self.alive and raw is not None and JobRecord.decode(raw).status is JobStatus.CANCELLED:
                self.lost += 1
                changed = JobRecord.decode(expected).evolve(updated=self.lost + 1e9)
                await super().commit({key: changed.encode()})
        await super().commit(puts, deletes, expect)


async def test_cancel_wins_against_a_job_that_reports_progress_all_the_time() -> None:
    store, clock = RacingStore(), ManualClock()
    engine = _engine(store, clock)
    started = asyncio.Event()

    async def busy(run: Run, data: dict[str, Any]) -> None:
        store.alive = True
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            store.alive = False

    engine.register("busy", busy)
    job_id = await engine.start("busy", {})
    await asyncio.wait_for(started.wait(), 60)
    cancelled = await engine.cancel(job_id)
    assert cancelled.status is JobStatus.CANCELLED
    assert store.lost == 1, "one lost race stops the local task; the next commit wins"
    assert (await _finished(engine, job_id)).status is JobStatus.CANCELLED
    await engine.aclose()


async def test_a_job_may_leave_the_journal_when_it_finishes_or_is_cancelled() -> None:
    store, clock = MemoryStore(), ManualClock()
    engine = _engine(store, clock)

    async def delivered(run: Run, job: dict[str, Any]) -> dict[str, Any]:
        run.forget_when_finished = True  # its outcome went elsewhere
        return await _count(run, job, store)

    engine.register("delivered", delivered)
    job_id = await engine.start("delivered", {"steps": 2})
    record = await _finished(engine, job_id)  # a local watcher still sees how it ended
    assert record.status is JobStatus.DONE
    assert record.result == {"total": 1}
    assert await store.keys("wf/") == []
    assert await store.get("effects") == b"2"  # what its steps did stays

    blocked = asyncio.Event()
    engine.register("count", _counting_job(store, blocked))
    job_id = await engine.start("count", {"steps": 2, "block_at": 1})
    await asyncio.wait_for(blocked.wait(), 60)
    task = engine._local[job_id].task
    assert (await engine.cancel(job_id, forget=True)).status is JobStatus.CANCELLED
    await asyncio.gather(task, return_exceptions=True)
    assert await store.keys("wf/") == []
    with pytest.raises(AgentError) as gone:
        await engine.get(job_id)
    assert gone.value.code is ErrorCode.NOT_FOUND
    await engine.aclose()


async def test_watch_reports_progress_until_the_job_finishes() -> None:
    store, clock = MemoryStore(), ManualClock()
    engine = _engine(store, clock)
    engine.register("count", _counting_job(store))
    job_id = await engine.start("count", {"steps": 3})
    seen = [r.progress.get("done", 0) async for r in engine.watch(job_id)]
    assert seen[-1] == 3
    assert seen == sorted(seen)
    await engine.aclose()


def _docs(n: int) -> list[DocumentIn]:
    return [DocumentIn(f"doc{i:03d}.md", f"# Document {i}\n\n" + " ".join(
        f"Paragraph {p} of document {i} talks about topic {i * 7 + p}." for p in range(200)))
        for i in range(n)] + [DocumentIn("copy.md", "# Document 0\n\n" + " ".join(
            f"Paragraph {p} of document 0 talks about topic {p}." for p in range(200)))]


async def _ingest_job(library: Library) -> Any:
    async def job(run: Run, data: dict[str, Any]) -> dict[str, Any]:
        docs = [DocumentIn(**d) for d in data["documents"]]
        report = await ingest(library, data["kb"], docs, step=run.step, progress=run.progress)
        return report.to_dict()
    return job


async def test_an_ingestion_killed_mid_way_resumes_and_stores_every_document_once() -> None:
    docs = _docs(30)
    reference = Library(MemoryStore(), None, None)
    expected = (await reference.ingest("kb", docs)).to_dict()
    assert expected["duplicates"] > 0
    assert expected["chunks_added"] > 2 * EMBED_GROUP

    store, clock = CrashingStore(), ManualClock()
    store.crash_at = 4  # the start, two batches, then death while committing the third
    first = _engine(store, clock)
    first.register("ingest", await _ingest_job(Library(store, None, None)))
    job_id = await first.start("ingest", {"kb": "kb", "documents": [
        {"source": d.source, "text": d.text} for d in docs]})
    with pytest.raises(Crash):
        await first._local[job_id].task
    await first.aclose()
    partial = await Library(store, None, None).get("kb")
    assert 0 < len(partial) < expected["chunks_added"]

    store.crash_at = None
    clock.now += 10
    library = Library(store, None, None)
    second = _engine(store, clock)
    second.register("ingest", await _ingest_job(library))
    assert await second.resume() == [job_id]
    record = await _finished(second, job_id)
    assert record.status is JobStatus.DONE
    assert record.result == expected  # the report counts the steps done before the crash too
    kb = await Library(store, None, None).get("kb")
    texts = [c.text for c in kb.chunks]
    assert len(texts) == len(set(texts)) == expected["chunks_added"]
    assert kb.sources == (await reference.get("kb")).sources
    await second.aclose()


async def test_a_second_writer_to_the_same_knowledge_base_conflicts_and_catches_up() -> None:
    store = MemoryStore()
    one, two = Library(store, None, None), Library(store, None, None)
    await one.ingest("kb", _docs(1))
    await two.get("kb")  # two has it open
    await one.ingest("kb", [DocumentIn("extra.md", "# Extra\n\nThe ferry leaves at nine.")])
    await two.ingest("kb", [DocumentIn("more.md", "# More\n\nThe bus leaves at ten sharp.")])
    fresh = await Library(store, None, None).get("kb")
    assert set(fresh.sources) == {"doc000.md", "extra.md", "more.md"}
    assert [c.text for c in (await two.get("kb")).chunks] == [c.text for c in fresh.chunks]
