"""MicroBatcher: coalescing, max wait, length buckets, priorities, cancellation, isolation.

Plain test functions, no fixtures: the same file runs in Pyodide under a tiny runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.support.aio import no_leaked_tasks, ticks
from wasmagent.errors import AgentError, ErrorCode
from wasmagent.runtime import Context, MicroBatcher, Priority


async def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Wait (generously) for a condition that depends on timers, not on a fixed sleep."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.001)


class Model:
    """A fake batch function that records every batch it is given."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.batches: list[list[str]] = []
        self.gate: asyncio.Event | None = None
        self.cancelled = 0

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return [item.upper() for item in items]


def test_bad_parameters() -> None:
    model = Model()
    for kwargs in ({"max_batch": 0}, {"concurrency": 0}, {"max_wait_ms": -1.0}):
        with pytest.raises(ValueError, match=">="):
            MicroBatcher(model, **kwargs)
    with pytest.raises(ValueError, match="bucket_width"):
        MicroBatcher(model, length_of=len, bucket_width=0)


def test_buckets() -> None:
    model = Model()
    pow2 = MicroBatcher(model, length_of=len)
    assert [pow2.bucket_of("x" * n) for n in (0, 1, 2, 3, 4, 5, 8, 9, 16, 17)] == [
        0, 0, 1, 2, 2, 3, 3, 4, 4, 5,
    ]  # fmt: skip
    width = MicroBatcher(model, length_of=len, bucket_width=10)
    assert [width.bucket_of("x" * n) for n in (1, 10, 11, 20, 21)] == [0, 0, 1, 1, 2]
    assert MicroBatcher(model).bucket_of("anything") == 0


async def test_concurrent_submits_coalesce_into_one_batch() -> None:
    before = asyncio.all_tasks()
    model = Model()
    batcher = MicroBatcher(model, max_batch=16, max_wait_ms=1000.0)
    words = [f"w{i}" for i in range(16)]
    results = await asyncio.gather(*(batcher.submit(word) for word in words))
    assert results == [word.upper() for word in words]
    assert model.batches == [words]  # one run of 16, full: it did not wait a second
    assert (batcher.batches_run, batcher.items_run, batcher.mean_batch_size) == (1, 16, 16.0)
    await no_leaked_tasks(before)  # idle: the batcher owns no task


async def test_a_flood_is_split_into_full_batches() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_batch=16, max_wait_ms=1.0)
    words = [f"w{i}" for i in range(40)]
    results = await asyncio.gather(*(batcher.submit(word) for word in words))
    assert results == [word.upper() for word in words]
    assert [len(batch) for batch in model.batches] == [16, 16, 8]
    assert [item for batch in model.batches for item in batch] == words
    assert batcher.mean_batch_size == 40 / 3


async def test_max_wait_is_honoured() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_batch=16, max_wait_ms=20.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    results = await asyncio.gather(*(batcher.submit(w) for w in ("a", "b", "c")))
    elapsed = loop.time() - start
    assert results == ["A", "B", "C"]
    assert model.batches == [["a", "b", "c"]]
    assert elapsed >= 0.015  # it waited for more items...
    assert elapsed < 2.0  # ...but not forever (generous: loaded CI machines)
    # A lone request is not held back by more than max_wait either.
    assert await batcher.submit("d") == "D"
    assert model.batches[-1] == ["d"]


async def test_length_buckets_keep_batches_homogeneous() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_batch=8, max_wait_ms=5.0, length_of=len)
    words = ["ab", "x" * 30, "cd", "y" * 31, "e", "z" * 200, "fg", "q" * 29]
    results = await asyncio.gather(*(batcher.submit(word) for word in words))
    assert results == [word.upper() for word in words]
    buckets = sorted(sorted({batcher.bucket_of(w) for w in batch}) for batch in model.batches)
    assert all(len(b) == 1 for b in buckets)  # every batch holds one bucket only
    assert sorted(map(sorted, model.batches)) == sorted(
        [["ab", "cd", "fg"], ["e"], ["q" * 29, "x" * 30, "y" * 31], ["z" * 200]]
    )


async def test_interactive_goes_before_queued_background() -> None:
    model = Model()
    model.gate = asyncio.Event()
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=1.0)
    first = asyncio.create_task(batcher.submit("bg-0", Priority.BACKGROUND))
    await until(lambda: bool(model.batches))
    assert model.batches == [["bg-0"]]  # running, held at the gate
    background = [
        asyncio.create_task(batcher.submit(f"bg-{i}", Priority.BACKGROUND)) for i in range(1, 21)
    ]
    await asyncio.sleep(0.005)  # the background flood comes due, but the one slot is taken
    interactive = asyncio.create_task(batcher.submit("ask", Priority.INTERACTIVE))
    await ticks()
    model.gate.set()
    assert await interactive == "ASK"
    await asyncio.gather(first, *background)
    assert model.batches[1] == ["ask"]  # right after the batch that was running
    assert all(len(batch) <= 4 for batch in model.batches)
    assert len(model.batches) == 1 + 1 + 5


async def test_interactive_arriving_later_still_overtakes_background() -> None:
    step = asyncio.Semaphore(0)  # the test lets the model finish one batch at a time

    async def run(items: list[str]) -> list[str]:
        await step.acquire()
        return [item.upper() for item in items]

    started: list[list[str]] = []

    async def recording(items: list[str]) -> list[str]:
        started.append(list(items))
        return await run(items)

    batcher = MicroBatcher(recording, max_batch=2, max_wait_ms=0.0)
    background = [
        asyncio.create_task(batcher.submit(f"bg-{i}", Priority.BACKGROUND)) for i in range(20)
    ]
    await ticks()
    for _ in range(2):
        step.release()
        await ticks()
    assert len(started) == 3  # two finished, the third is running
    ask = asyncio.create_task(batcher.submit("ask"))
    await ticks()
    for _ in range(20):
        step.release()
    assert await ask == "ASK"
    await asyncio.gather(*background)
    assert started[3] == ["ask"]  # next after the running batch, ahead of 14 queued items
    assert len(started) == 11


async def test_a_cancelled_submit_is_removed_before_dispatch() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_batch=16, max_wait_ms=60_000.0)
    tasks = {w: asyncio.create_task(batcher.submit(w)) for w in ("a", "b", "c", "d")}
    await ticks()
    assert batcher.pending == 4
    tasks["b"].cancel()
    ctx = Context()
    with_ctx = asyncio.create_task(batcher.submit("e", ctx=ctx))
    await ticks()
    ctx.cancel("user")
    with pytest.raises(asyncio.CancelledError):
        await tasks["b"]
    with pytest.raises(AgentError) as info:
        await with_ctx
    assert info.value.code is ErrorCode.CANCELLED
    await batcher.aclose()  # flushes the rest now
    assert [await tasks[w] for w in ("a", "c", "d")] == ["A", "C", "D"]
    assert model.batches == [["a", "c", "d"]]


async def test_a_deadline_expires_while_queued() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_batch=16, max_wait_ms=50.0)
    other = asyncio.create_task(batcher.submit("other"))
    with pytest.raises(AgentError) as info:
        await batcher.submit("late", ctx=Context(timeout=0.002))
    assert info.value.code is ErrorCode.DEADLINE
    assert await other == "OTHER"
    assert model.batches == [["other"]]
    with pytest.raises(AgentError) as info:
        await batcher.submit("dead", ctx=Context(timeout=0.0))
    assert info.value.code is ErrorCode.DEADLINE


async def test_a_cancelled_submit_in_a_running_batch_drops_its_result_only() -> None:
    model = Model()
    model.gate = asyncio.Event()
    batcher = MicroBatcher(model, max_batch=3, max_wait_ms=1000.0)
    tasks = [asyncio.create_task(batcher.submit(w)) for w in ("a", "b", "c")]
    await ticks()
    assert model.batches == [["a", "b", "c"]]
    tasks[1].cancel()
    await ticks()
    model.gate.set()
    assert await tasks[0] == "A"
    assert await tasks[2] == "C"
    assert tasks[1].cancelled()
    assert model.cancelled == 0


async def test_a_batch_everyone_left_is_cancelled() -> None:
    before = asyncio.all_tasks()
    model = Model()
    model.gate = asyncio.Event()
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=1000.0)
    tasks = [asyncio.create_task(batcher.submit(w)) for w in ("a", "b")]
    await ticks()
    assert batcher.running == 1
    for task in tasks:
        task.cancel()
    await ticks()
    assert model.cancelled == 1  # the work was freed, not just abandoned
    assert batcher.running == 0
    model.gate.set()
    # The batcher keeps serving (two items fill a batch: no waiting for max_wait).
    assert list(await asyncio.gather(batcher.submit("c"), batcher.submit("d"))) == ["C", "D"]
    await no_leaked_tasks(before)


async def test_an_error_fails_only_its_own_batch() -> None:
    async def run(items: list[str]) -> list[str]:
        await asyncio.sleep(0.001)
        if "boom" in items:
            raise ValueError("model exploded")
        if "oom-x" in items:
            raise AgentError(ErrorCode.INFERENCE, "out of memory")
        return [item.upper() for item in items]

    batcher = MicroBatcher(run, max_batch=8, max_wait_ms=2.0, length_of=len, concurrency=2)
    words = ["boom", "abcd", "x" * 20, "y" * 20, "o" * 60, "oom-x"]
    results = await asyncio.gather(*(batcher.submit(w) for w in words), return_exceptions=True)
    # Buckets: {boom, abcd}, {x*20, y*20}, {o*60}, {oom-x}.
    for index in (0, 1):
        err = results[index]
        assert isinstance(err, AgentError)
        assert err.code is ErrorCode.INTERNAL
        assert isinstance(err.__cause__, ValueError)
    err = results[5]
    assert isinstance(err, AgentError)
    assert err.code is ErrorCode.INFERENCE
    assert results[2:5] == ["X" * 20, "Y" * 20, "O" * 60]
    assert batcher.failed_batches == 2
    assert await batcher.submit("fine") == "FINE"


async def test_a_wrong_length_result_is_an_internal_error_for_that_batch() -> None:
    async def run(items: list[str]) -> list[str]:
        await asyncio.sleep(0)
        return items[:-1] if "short" in items else items

    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=1.0)
    results = await asyncio.gather(
        *(batcher.submit(w) for w in ("short", "a", "b")), return_exceptions=True
    )
    for err in results:
        assert isinstance(err, AgentError)
        assert err.code is ErrorCode.INTERNAL
        assert "2 results for 3 items" in err.message
    assert await batcher.submit("ok") == "ok"


async def test_aclose_flushes_pending_work_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    model = Model()
    batcher = MicroBatcher(model, max_batch=16, max_wait_ms=60_000.0)
    tasks = [asyncio.create_task(batcher.submit(w)) for w in ("a", "b")]
    await ticks()
    assert model.batches == []
    await batcher.aclose()  # does not wait a minute: it dispatches at once
    assert [task.result() for task in tasks] == ["A", "B"]
    with pytest.raises(AgentError) as info:
        await batcher.submit("c")
    assert info.value.code is ErrorCode.CANCELLED
    await no_leaked_tasks(before)


async def test_aclose_cancel_fails_waiting_and_running_items() -> None:
    before = asyncio.all_tasks()
    model = Model()
    model.gate = asyncio.Event()
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=60_000.0)
    tasks = [asyncio.create_task(batcher.submit(w)) for w in ("a", "b", "c")]
    await ticks()
    assert (batcher.running, batcher.pending) == (1, 1)
    outcomes = asyncio.gather(*tasks, return_exceptions=True)  # awaited before they fail
    await batcher.aclose(cancel=True)
    for err in await outcomes:
        assert isinstance(err, AgentError)
        assert err.code is ErrorCode.CANCELLED
    assert model.cancelled == 1
    assert (batcher.running, batcher.pending) == (0, 0)
    await no_leaked_tasks(before)


async def test_a_thousand_submits_half_cancelled_or_timed_out() -> None:
    before = asyncio.all_tasks()
    model = Model(seconds=0.001)
    batcher = MicroBatcher(model, max_batch=32, max_wait_ms=2.0, length_of=len)
    loop = asyncio.get_running_loop()

    async def request(i: int) -> str:
        priority = Priority.INTERACTIVE if i % 3 == 0 else Priority.BACKGROUND
        if i % 4 == 1:
            ctx = Context(timeout=0.0005 * (i % 5))
        else:
            ctx = Context(timeout=30.0)
            if i % 4 == 3:
                loop.call_later(0.0005 * (i % 5), ctx.cancel, "user")
        word = "w" * (1 + i % 40)
        try:
            assert await batcher.submit(word, priority, ctx) == word.upper()
            return "ok"
        except AgentError as err:
            return err.code.value

    outcomes = await asyncio.gather(*(request(i) for i in range(1000)))
    assert outcomes.count("ok") >= 500  # every even request succeeds
    assert (
        outcomes.count("ok")
        + outcomes.count(ErrorCode.DEADLINE.value)
        + outcomes.count(ErrorCode.CANCELLED.value)
        == 1000
    )
    assert all(outcomes[i] == "ok" for i in range(0, 1000, 2))
    assert batcher.pending == 0
    assert batcher.items_run <= 1000
    for batch in model.batches:
        assert len({batcher.bucket_of(w) for w in batch}) == 1
    await no_leaked_tasks(before)


async def test_a_caller_gone_before_dispatch_does_not_stall_later_submits() -> None:
    # The wedge seen on a server: the dispatcher popped only an item whose caller had just
    # left (its future cancelled, its `_abandon` not run yet), started nothing, and slept with
    # nothing scheduled to wake it; every later submit then waited until a bucket filled.
    model = Model()
    batcher = MicroBatcher(model, max_batch=32, max_wait_ms=0.0)
    leaving = asyncio.create_task(batcher.submit("gone"))
    await asyncio.sleep(0)  # queued; the dispatcher task exists but has not run yet
    leaving.cancel()  # cancels the awaited future at once; the task unwinds next turn
    await ticks()
    assert leaving.cancelled()
    later = asyncio.create_task(batcher.submit("later"))
    await ticks(20)  # loop turns, not time: the model double answers within a few
    assert later.done(), "a submit after an abandoned one must not wait for company"
    assert await later == "LATER"
    assert model.batches == [["later"]]
    await batcher.aclose()
    assert batcher.pending == 0
