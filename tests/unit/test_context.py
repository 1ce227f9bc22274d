"""Context: ids, deadlines, cancellation, children, and `run` really cancelling the work.

Plain test functions, no fixtures: the same file runs in Pyodide under a tiny runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

import pytest

from tests.support.aio import no_leaked_tasks
from wasmagent.errors import AgentError, ErrorCode
from wasmagent.runtime import Context


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_defaults() -> None:
    ctx = Context()
    assert ctx.request_id
    assert Context().request_id != ctx.request_id
    assert ctx.deadline is None
    assert ctx.remaining() is None
    assert not ctx.done
    assert not ctx.cancelled
    assert not ctx.expired
    assert ctx.error() is None
    ctx.raise_if_done()
    assert Context("req-1").request_id == "req-1"


def test_cancel_is_final_and_keeps_first_reason() -> None:
    ctx = Context("r")
    ctx.cancel("user pressed stop")
    ctx.cancel("second reason")
    assert ctx.cancelled
    assert ctx.done
    err = ctx.error()
    assert err is not None
    assert err.code is ErrorCode.CANCELLED
    assert err.message == "user pressed stop"
    with pytest.raises(AgentError) as info:
        ctx.raise_if_done()
    assert info.value.code is ErrorCode.CANCELLED


def test_deadline_with_a_fake_clock() -> None:
    clock = FakeClock()
    ctx = Context(timeout=2.0, clock=clock)
    assert ctx.deadline == 102.0
    assert ctx.remaining() == 2.0
    clock.now = 101.5
    assert ctx.remaining() == 0.5
    assert not ctx.done
    clock.now = 102.0
    assert ctx.expired
    assert ctx.done
    assert not ctx.cancelled
    assert ctx.remaining() == 0.0
    clock.now = 200.0
    assert ctx.remaining() == 0.0
    with pytest.raises(AgentError) as info:
        ctx.raise_if_done()
    assert info.value.code is ErrorCode.DEADLINE
    # Cancellation wins over an expired deadline.
    ctx.cancel("late cancel")
    err = ctx.error()
    assert err is not None
    assert err.code is ErrorCode.CANCELLED


def test_timeout_and_deadline_combine_to_the_earlier() -> None:
    clock = FakeClock(0.0)
    assert Context(timeout=5.0, deadline=3.0, clock=clock).deadline == 3.0
    assert Context(timeout=1.0, deadline=3.0, clock=clock).deadline == 1.0
    assert Context(deadline=7.0, clock=clock).deadline == 7.0


def test_child_follows_parent() -> None:
    clock = FakeClock(0.0)
    parent = Context("p", timeout=10.0, clock=clock)
    longer = parent.child(timeout=60.0)
    shorter = parent.child(timeout=1.0, request_id="c")
    assert longer.deadline == 10.0
    assert shorter.deadline == 1.0
    assert longer.request_id == "p"
    assert shorter.request_id == "c"
    assert longer.parent is parent
    assert longer.clock is clock
    # A child's cancel stays in the child.
    shorter.cancel("only me")
    assert shorter.cancelled
    assert not parent.cancelled
    assert not longer.cancelled
    # A parent's cancel reaches every descendant, grandchildren included.
    grandchild = longer.child()
    parent.cancel("shutdown")
    for ctx in (longer, grandchild):
        err = ctx.error()
        assert err is not None
        assert err.code is ErrorCode.CANCELLED
        assert err.message == "shutdown"


def test_child_never_outlives_parent_deadline() -> None:
    clock = FakeClock(0.0)
    parent = Context(timeout=1.0, clock=clock)
    child = parent.child()
    assert child.deadline == 1.0
    clock.now = 1.0
    assert child.expired


async def test_run_returns_value_and_propagates_errors() -> None:
    ctx = Context(timeout=5.0)

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def boom() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    assert await ctx.run(double(21)) == 42
    with pytest.raises(ValueError, match="boom"):
        await ctx.run(boom())
    assert not ctx.done


async def test_cancel_really_cancels_the_running_work() -> None:
    ctx = Context()
    events: list[str] = []
    running = asyncio.Event()

    async def work() -> None:
        try:
            running.set()
            await asyncio.sleep(3600)
        finally:
            events.append("work finally")

    async def canceller() -> None:
        await running.wait()
        ctx.cancel("stop")

    stopper = asyncio.create_task(canceller())
    with pytest.raises(AgentError) as info:
        await ctx.run(work())
    await stopper
    assert info.value.code is ErrorCode.CANCELLED
    assert info.value.message == "stop"
    assert events == ["work finally"]
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # the task carries no leftover cancellation


async def test_deadline_cancels_the_running_work() -> None:
    ctx = Context(timeout=0.01)
    events: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            events.append("work finally")

    with pytest.raises(AgentError) as info:
        await ctx.run(work())
    assert info.value.code is ErrorCode.DEADLINE
    assert events == ["work finally"]
    assert ctx.expired


async def test_run_on_a_done_context_never_starts_the_work() -> None:
    ctx = Context()
    ctx.cancel("already")
    started: list[bool] = []

    async def work() -> None:
        started.append(True)

    coro = work()
    with pytest.raises(AgentError):
        await ctx.run(coro)
    assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"  # so no "never awaited" warning
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(AgentError):
        await ctx.run(future)
    assert future.cancelled()
    assert started == []


async def test_parent_cancel_reaches_a_running_child() -> None:
    parent = Context("p")
    child = parent.child(timeout=30.0)
    asyncio.get_running_loop().call_later(0.005, parent.cancel, "parent gone")
    with pytest.raises(AgentError) as info:
        await child.run(asyncio.sleep(10))
    assert info.value.code is ErrorCode.CANCELLED
    assert info.value.message == "parent gone"


async def test_parent_deadline_reaches_a_running_child() -> None:
    parent = Context(timeout=0.01)
    child = parent.child()
    with pytest.raises(AgentError) as info:
        await child.run(asyncio.sleep(10))
    assert info.value.code is ErrorCode.DEADLINE


async def test_outside_cancellation_stays_a_cancelled_error() -> None:
    ctx = Context(timeout=30.0)
    runner = asyncio.create_task(ctx.run(asyncio.sleep(10)))
    await asyncio.sleep(0.001)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert not ctx.done


async def test_cancel_from_inside_the_bound_task() -> None:
    ctx = Context()

    async def cancel_and_return() -> int:
        ctx.cancel("self")
        return 7

    # Returned before any await: the value stands and no cancellation is left pending.
    assert await ctx.run(cancel_and_return()) == 7
    await asyncio.sleep(0)
    other = Context()

    async def cancel_then_wait() -> None:
        other.cancel("self")
        await asyncio.sleep(10)

    with pytest.raises(AgentError) as info:
        await other.run(cancel_then_wait())
    assert info.value.code is ErrorCode.CANCELLED


async def test_nested_runs_unwind_to_the_right_level() -> None:
    outer = Context(timeout=30.0)
    inner = outer.child(timeout=0.005)

    async def step() -> str:
        with pytest.raises(AgentError) as info:
            await inner.run(asyncio.sleep(10))
        assert info.value.code is ErrorCode.DEADLINE
        await asyncio.sleep(0.001)
        return "outer continues"

    assert await outer.run(step()) == "outer continues"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_done_callbacks() -> None:
    ctx = Context()
    seen: list[ErrorCode] = []
    unsub = ctx.add_done_callback(lambda err: seen.append(err.code))
    removed = ctx.add_done_callback(lambda err: seen.append(ErrorCode.INTERNAL))
    removed()
    ctx.cancel()
    assert seen == [ErrorCode.CANCELLED]
    unsub()  # harmless after firing
    late: list[ErrorCode] = []
    ctx.add_done_callback(lambda err: late.append(err.code))
    assert late == []  # scheduled, not called inline
    await asyncio.sleep(0)
    assert late == [ErrorCode.CANCELLED]


async def test_a_failing_callback_goes_to_the_loop_handler() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        ctx = Context()
        seen: list[str] = []

        def bad(err: AgentError) -> None:
            raise RuntimeError("callback bug")

        ctx.add_done_callback(bad)
        ctx.add_done_callback(lambda err: seen.append("second still called"))
        ctx.cancel()
        assert seen == ["second still called"]
        assert len(reported) == 1
        assert isinstance(reported[0]["exception"], RuntimeError)
    finally:
        loop.set_exception_handler(previous)


async def test_contexts_are_cheap_and_spawn_nothing() -> None:
    before = asyncio.all_tasks()
    root = Context(timeout=60.0)
    children = [root.child(timeout=30.0) for _ in range(10_000)]
    assert asyncio.all_tasks() == before
    root.cancel("bulk")
    assert all(child.cancelled for child in children)


async def test_a_thousand_concurrent_requests_half_cancelled_or_timed_out() -> None:
    before = asyncio.all_tasks()
    started: list[int] = []
    finished: list[int] = []
    root = Context("load")

    async def work(i: int) -> int:
        started.append(i)
        try:
            await asyncio.sleep(0.05 if i % 2 == 0 else 10)
            return i
        finally:
            finished.append(i)

    async def request(i: int) -> str:
        if i % 4 == 1:
            ctx = root.child(timeout=0.005 + (i % 7) / 1000)
        else:
            ctx = root.child(timeout=30.0)
            if i % 4 == 3:
                asyncio.get_running_loop().call_later(0.005, ctx.cancel, "user")
        try:
            assert await ctx.run(work(i)) == i
            return "ok"
        except AgentError as err:
            return err.code.value

    outcomes = await asyncio.gather(*(request(i) for i in range(1000)))
    assert outcomes.count("ok") == 500
    assert outcomes.count(ErrorCode.DEADLINE.value) == 250
    assert outcomes.count(ErrorCode.CANCELLED.value) == 250
    # Every piece of work that started ran its cleanup; under heavy load a request may expire
    # before its work starts, and then the work never starts at all.
    assert sorted(started) == sorted(finished)
    assert set(range(0, 1000, 2)) <= set(finished)
    await no_leaked_tasks(before)


async def test_a_stream_yields_its_items_and_always_closes_its_source() -> None:
    closed: list[str] = []

    async def source(name: str) -> Any:
        try:
            for i in range(3):
                yield i
            await asyncio.sleep(3600)  # an upstream that stops sending
        finally:
            closed.append(name)

    ctx = Context("r1")
    got = []
    async with contextlib.aclosing(ctx.stream(source("early"))) as items:
        async for item in items:
            got.append(item)
            if item == 1:
                break
    assert got == [0, 1]
    assert closed == ["early"], "leaving early closes the source at once"

    timed = Context("r2", timeout=0.05)
    with pytest.raises(AgentError) as err:
        async for _ in timed.stream(source("stalled")):
            pass
    assert err.value.code is ErrorCode.DEADLINE
    assert closed == ["early", "stalled"]
