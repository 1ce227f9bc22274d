"""WorkerPool: bounded concurrency, bounded queue, cancellation, deadlines, isolation, close.

Plain test functions, no fixtures: the same file runs in Pyodide under a tiny runner.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.aio import no_leaked_tasks, ticks
from wasmagent.errors import AgentError, ErrorCode
from wasmagent.runtime import Context, WorkerPool


class Gauge:
    """Counts jobs running at once and remembers the peak."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.started: list[int] = []
        self.cleaned = 0

    async def job(self, i: int, seconds: float = 0.001) -> int:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.started.append(i)
        try:
            await asyncio.sleep(seconds)
            return i * 10
        finally:
            self.now -= 1
            self.cleaned += 1


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="workers"):
        WorkerPool(0)
    with pytest.raises(ValueError, match="queue_size"):
        WorkerPool(1, -1)


async def test_submit_returns_the_job_result() -> None:
    pool = WorkerPool(2)

    async def add(a: int, b: int, *, scale: int = 1) -> int:
        await asyncio.sleep(0)
        return (a + b) * scale

    assert await pool.submit(Context(), add, 1, 2) == 3
    assert await pool.submit(Context(), add, 1, 2, scale=10) == 30
    assert pool.completed == 2
    assert (pool.in_flight, pool.queued) == (0, 0)


async def test_concurrency_is_bounded_and_slots_go_in_fifo_order() -> None:
    for workers in (1, 3, 8):
        pool = WorkerPool(workers, queue_size=100)
        gauge = Gauge()
        results = await asyncio.gather(
            *(pool.submit(Context(), gauge.job, i, 0.002) for i in range(40))
        )
        assert results == [i * 10 for i in range(40)]
        assert gauge.peak == workers
        assert gauge.started == list(range(40))
        assert (pool.in_flight, pool.queued) == (0, 0)


async def test_a_full_queue_rejects_at_once() -> None:
    pool = WorkerPool(1, queue_size=2)
    release = asyncio.Event()

    async def blocked() -> str:
        await release.wait()
        return "done"

    tasks = [asyncio.create_task(pool.submit(Context(), blocked)) for _ in range(3)]
    await ticks()
    assert (pool.in_flight, pool.queued) == (1, 2)
    with pytest.raises(AgentError) as info:
        await pool.submit(Context(), blocked)
    assert info.value.code is ErrorCode.OVERLOADED
    assert pool.rejected == 1
    release.set()
    assert await asyncio.gather(*tasks) == ["done"] * 3
    assert pool.failed == 0


async def test_queue_wait_none_is_backpressure() -> None:
    pool = WorkerPool(1, queue_size=1, queue_wait=None)
    gauge = Gauge()
    results = await asyncio.gather(*(pool.submit(Context(), gauge.job, i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert gauge.started == list(range(10))  # overflow waiters keep FIFO order too
    assert pool.rejected == 0


async def test_queue_wait_rejects_after_waiting() -> None:
    pool = WorkerPool(1, queue_size=1, queue_wait=0.005)
    release = asyncio.Event()

    async def blocked() -> None:
        await release.wait()

    running = asyncio.create_task(pool.submit(Context(), blocked))
    queued = asyncio.create_task(pool.submit(Context(), blocked))
    await ticks()
    with pytest.raises(AgentError) as info:
        await pool.submit(Context(), blocked)
    assert info.value.code is ErrorCode.OVERLOADED
    assert pool.rejected == 1
    assert pool.queued == 1
    release.set()
    await asyncio.gather(running, queued)
    assert pool.failed == 0


async def test_a_failing_job_fails_alone() -> None:
    pool = WorkerPool(2)

    async def job(i: int) -> int:
        await asyncio.sleep(0.001)
        if i == 3:
            raise ValueError("job 3 broke")
        return i

    results = await asyncio.gather(
        *(pool.submit(Context(), job, i) for i in range(6)), return_exceptions=True
    )
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5]
    assert (pool.completed, pool.failed) == (5, 1)
    assert await pool.submit(Context(), job, 9) == 9  # the pool keeps serving


async def test_a_cancelled_queued_job_never_runs() -> None:
    pool = WorkerPool(1, queue_size=5)
    release = asyncio.Event()
    ran: list[str] = []

    async def job(name: str) -> str:
        ran.append(name)
        await release.wait()
        return name

    first = asyncio.create_task(pool.submit(Context(), job, "first"))
    ctx = Context()
    doomed = asyncio.create_task(pool.submit(ctx, job, "doomed"))
    last = asyncio.create_task(pool.submit(Context(), job, "last"))
    await ticks()
    assert pool.queued == 2
    ctx.cancel("user")
    with pytest.raises(AgentError) as info:
        await doomed
    assert info.value.code is ErrorCode.CANCELLED
    assert pool.queued == 1
    release.set()
    assert await first == "first"
    assert await last == "last"
    assert ran == ["first", "last"]


async def test_a_deadline_cancels_the_running_job_and_frees_its_slot() -> None:
    before = asyncio.all_tasks()
    pool = WorkerPool(1)
    gauge = Gauge()
    with pytest.raises(AgentError) as info:
        await pool.submit(Context(timeout=0.005), gauge.job, 1, 10.0)
    assert info.value.code is ErrorCode.DEADLINE
    assert gauge.cleaned == 1  # the job saw CancelledError and ran its cleanup
    assert pool.in_flight == 0
    assert await pool.submit(Context(), gauge.job, 2) == 20
    with pytest.raises(AgentError) as info:
        await pool.submit(Context(timeout=0.0), gauge.job, 3)
    assert info.value.code is ErrorCode.DEADLINE
    await no_leaked_tasks(before)


async def test_cancelling_the_caller_cancels_the_job() -> None:
    pool = WorkerPool(1)
    gauge = Gauge()
    task = asyncio.create_task(pool.submit(Context(), gauge.job, 1, 10.0))
    await ticks()
    assert pool.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gauge.cleaned == 1
    assert pool.in_flight == 0


async def test_close_lets_accepted_jobs_finish() -> None:
    before = asyncio.all_tasks()
    pool = WorkerPool(1, queue_size=5)
    gauge = Gauge()
    tasks = [asyncio.create_task(pool.submit(Context(), gauge.job, i, 0.002)) for i in range(3)]
    await ticks()
    pool.close()
    with pytest.raises(AgentError) as info:
        await pool.submit(Context(), gauge.job, 9)
    assert info.value.code is ErrorCode.CANCELLED
    await pool.aclose()
    assert all(task.done() for task in tasks)
    assert [task.result() for task in tasks] == [0, 10, 20]
    await no_leaked_tasks(before)


async def test_aclose_cancel_cancels_running_and_queued_jobs() -> None:
    before = asyncio.all_tasks()
    pool = WorkerPool(2, queue_size=5)
    gauge = Gauge()
    tasks = [asyncio.create_task(pool.submit(Context(), gauge.job, i, 10.0)) for i in range(5)]
    await ticks()
    assert (pool.in_flight, pool.queued) == (2, 3)
    outcomes = asyncio.gather(*tasks, return_exceptions=True)  # awaited before they fail
    await pool.aclose(cancel=True)
    assert all(task.done() for task in tasks)  # aclose returned only once every job left
    for err in await outcomes:
        assert isinstance(err, AgentError)
        assert err.code is ErrorCode.CANCELLED
    assert gauge.started == [0, 1]
    assert gauge.cleaned == 2
    assert (pool.in_flight, pool.queued) == (0, 0)
    await no_leaked_tasks(before)


async def test_a_thousand_requests_half_cancelled_or_timed_out() -> None:
    before = asyncio.all_tasks()
    pool = WorkerPool(8, queue_size=1000)
    gauge = Gauge()
    loop = asyncio.get_running_loop()

    async def request(i: int) -> str:
        if i % 4 == 1:
            ctx = Context(timeout=0.002)
        else:
            ctx = Context(timeout=30.0)
            if i % 4 == 3:
                loop.call_later(0.002, ctx.cancel, "user")
        seconds = 0.001 if i % 2 == 0 else 0.05
        try:
            assert await pool.submit(ctx, gauge.job, i, seconds) == i * 10
            return "ok"
        except AgentError as err:
            return err.code.value

    outcomes = await asyncio.gather(*(request(i) for i in range(1000)))
    assert outcomes.count("ok") == 500
    assert outcomes.count(ErrorCode.DEADLINE.value) == 250
    assert outcomes.count(ErrorCode.CANCELLED.value) == 250
    assert gauge.peak <= 8
    assert gauge.now == 0
    assert gauge.cleaned == len(gauge.started)  # every started job was cleaned up
    assert (pool.in_flight, pool.queued) == (0, 0)
    assert pool.completed == 500
    assert pool.failed <= 500  # a request already expired when it reached the pool never entered
    await no_leaked_tasks(before)
