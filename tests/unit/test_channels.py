"""Channels and select: backpressure, close semantics, cancellation safety, no lost values.

Plain test functions, no fixtures: the same file runs in Pyodide under a tiny runner.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from tests.support.aio import no_leaked_tasks, ticks
from wasmagent.runtime import Channel, ChannelClosed, ChannelEmpty, Recv, Send, select


def test_capacity_must_be_positive() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="capacity"):
            Channel[int](bad)
    assert Channel[int](3).capacity == 3


def test_try_send_and_try_recv_in_fifo_order() -> None:
    ch: Channel[int] = Channel(2)
    with pytest.raises(ChannelEmpty):
        ch.try_recv()
    assert ch.try_send(1)
    assert ch.try_send(2)
    assert ch.full()
    assert not ch.try_send(3)
    assert len(ch) == 2
    assert ch.try_recv() == 1
    assert ch.try_recv() == 2
    assert len(ch) == 0


async def test_send_waits_while_full() -> None:
    ch: Channel[int] = Channel(2)
    sent: list[int] = []

    async def producer() -> None:
        for i in range(5):
            await ch.send(i)
            sent.append(i)

    task = asyncio.create_task(producer())
    await ticks()
    assert sent == [0, 1]  # blocked on the third value: backpressure
    assert len(ch) == 2
    assert await ch.recv() == 0
    await ticks()
    assert sent == [0, 1, 2]
    assert [await ch.recv() for _ in range(4)] == [1, 2, 3, 4]
    await task
    assert sent == [0, 1, 2, 3, 4]


async def test_recv_waits_while_empty() -> None:
    ch: Channel[str] = Channel(1)
    task = asyncio.create_task(ch.recv())
    await ticks()
    assert not task.done()
    await ch.send("hello")
    assert await task == "hello"


async def test_close_drains_then_raises() -> None:
    ch: Channel[int] = Channel(3)
    await ch.send(1)
    await ch.send(2)
    ch.close()
    ch.close()  # idempotent
    assert ch.closed
    with pytest.raises(ChannelClosed):
        await ch.send(3)
    with pytest.raises(ChannelClosed):
        ch.try_send(3)
    assert await ch.recv() == 1
    assert ch.try_recv() == 2
    with pytest.raises(ChannelClosed):
        await ch.recv()
    with pytest.raises(ChannelClosed):
        ch.try_recv()


async def test_close_wakes_every_waiter() -> None:
    full: Channel[int] = Channel(1)
    full.try_send(0)
    senders = [asyncio.create_task(full.send(i)) for i in range(1, 4)]
    empty: Channel[int] = Channel(1)
    receivers = [asyncio.create_task(empty.recv()) for _ in range(3)]
    await ticks()
    # Await through gather, registered before the failures (Pyodide's WebLoop logs a task
    # that fails while nobody awaits it).
    outcomes = asyncio.gather(*senders, *receivers, return_exceptions=True)
    full.close()
    empty.close()
    assert all(isinstance(outcome, ChannelClosed) for outcome in await outcomes)
    # The waiting senders' values were not delivered; the buffered one still is.
    assert full.try_recv() == 0
    with pytest.raises(ChannelClosed):
        full.try_recv()


async def test_async_for_stops_when_closed_and_drained() -> None:
    ch: Channel[int] = Channel(4)

    async def producer() -> None:
        for i in range(10):
            await ch.send(i)
        ch.close()

    task = asyncio.create_task(producer())
    got = [value async for value in ch]
    await task
    assert got == list(range(10))


async def test_a_cancelled_receiver_loses_nothing() -> None:
    ch: Channel[int] = Channel(1)
    first = asyncio.create_task(ch.recv())
    second = asyncio.create_task(ch.recv())
    await ticks()
    assert ch.try_send(42)  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == 42  # the wake-up was passed on


async def test_a_cancelled_sender_sends_nothing() -> None:
    ch: Channel[int] = Channel(1)
    ch.try_send(1)
    blocked = asyncio.create_task(ch.send(2))
    waiting = asyncio.create_task(ch.send(3))
    await ticks()
    assert ch.try_recv() == 1  # wakes `blocked`...
    blocked.cancel()  # ...which leaves without sending
    with pytest.raises(asyncio.CancelledError):
        await blocked
    await waiting
    assert ch.try_recv() == 3
    with pytest.raises(ChannelEmpty):
        ch.try_recv()


async def test_select_takes_the_ready_case_only() -> None:
    a: Channel[str] = Channel(2)
    b: Channel[str] = Channel(2)
    b.try_send("b1")
    hit = await select(Recv(a), Recv(b))
    assert hit is not None
    assert (hit.index, hit.value, hit.closed) == (1, "b1", False)
    # Both ready: the first case in argument order wins; the other keeps its value.
    a.try_send("a1")
    b.try_send("b2")
    hit = await select(a, b)  # a bare channel means Recv(channel)
    assert hit is not None
    assert (hit.index, hit.value) == (0, "a1")
    assert hit.case is a
    assert len(b) == 1
    assert b.try_recv() == "b2"


async def test_select_waits_and_leaves_other_channels_untouched() -> None:
    a: Channel[int] = Channel(1)
    b: Channel[int] = Channel(1)
    waiter = asyncio.create_task(select(Recv(a), Recv(b)))
    await ticks()
    assert not waiter.done()
    b.try_send(2)
    a.try_send(1)
    hit = await waiter
    assert hit is not None
    # Woken by b; by the time it ran both were ready and exactly one value was taken.
    assert hit.value in (1, 2)
    assert len(a) + len(b) == 1
    remaining = a.try_recv() if len(a) else b.try_recv()
    assert {hit.value, remaining} == {1, 2}


async def test_select_timeout() -> None:
    a: Channel[int] = Channel(1)
    assert await select(Recv(a), timeout=0) is None
    assert await select(Recv(a), timeout=0.005) is None
    a.try_send(1)
    hit = await select(Recv(a), timeout=0)
    assert hit is not None
    assert hit.value == 1
    assert await select(timeout=0.001) is None
    with pytest.raises(ValueError, match="forever"):
        await select()


async def test_select_with_send_cases() -> None:
    out: Channel[int] = Channel(1)
    inbox: Channel[int] = Channel(1)
    out.try_send(0)  # full
    waiter = asyncio.create_task(select(Send(out, 5), Recv(inbox)))
    await ticks()
    assert not waiter.done()
    assert out.try_recv() == 0  # room appears: the send case fires
    hit = await waiter
    assert hit is not None
    assert (hit.index, hit.value) == (0, None)
    assert out.try_recv() == 5
    assert len(inbox) == 0


async def test_select_reports_closed_channels() -> None:
    a: Channel[int] = Channel(1)
    b: Channel[int] = Channel(1)
    waiter = asyncio.create_task(select(Recv(a), Recv(b)))
    await ticks()
    b.close()
    hit = await waiter
    assert hit is not None
    assert (hit.index, hit.closed, hit.value) == (1, True, None)
    hit = await select(Send(b, 1), timeout=0)
    assert hit is not None
    assert hit.closed


async def test_a_cancelled_select_consumes_nothing() -> None:
    a: Channel[int] = Channel(1)
    b: Channel[int] = Channel(1)
    selector = asyncio.create_task(select(Recv(a), Recv(b)))
    plain = asyncio.create_task(a.recv())
    await ticks()
    a.try_send(1)  # wakes the selector first (it queued first)...
    selector.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await selector
    assert await plain == 1  # the wake-up was passed on: nothing lost


Item = tuple[int, int]


async def produce(channels: list[Channel[Item]], per_channel: int) -> None:
    async def one(k: int) -> None:
        for i in range(per_channel):
            await channels[k].send((k, i))
            if i % 17 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(one(k) for k in range(len(channels))))
    for ch in channels:
        ch.close()


async def select_until_all_closed(channels: list[Channel[Item]], into: list[Item]) -> None:
    open_channels = list(channels)
    while open_channels:
        hit = await select(*open_channels)
        assert hit is not None
        if hit.closed:
            open_channels.pop(hit.index)
        else:
            into.append(hit.value)


async def receive_until_closed(channel: Channel[Item], into: list[Item]) -> None:
    async for value in channel:
        into.append(value)


async def cancel_selects(channels: list[Channel[Item]], into: list[Item], seed: int) -> None:
    """Selects cancelled at random moments: a cancelled one must never swallow a value."""
    rng = random.Random(seed)
    for _ in range(100):
        task = asyncio.create_task(select(*channels))
        await ticks(rng.randint(0, 2))
        task.cancel()
        try:
            hit = await task
        except asyncio.CancelledError:
            continue
        assert hit is not None
        if not hit.closed:
            into.append(hit.value)


async def test_select_under_load_loses_and_duplicates_nothing() -> None:
    before = asyncio.all_tasks()
    rng = random.Random(7)
    channels: list[Channel[Item]] = [Channel(rng.randint(1, 3)) for _ in range(3)]
    per_channel = 200
    received: list[Item] = []
    await asyncio.gather(
        produce(channels, per_channel),
        *(select_until_all_closed(channels, received) for _ in range(3)),
        *(receive_until_closed(ch, received) for ch in channels),
        cancel_selects(channels, received, seed=11),
    )
    counts = Counter(received)
    assert len(counts) == 3 * per_channel
    assert set(counts.values()) == {1}
    assert all(len(ch) == 0 for ch in channels)
    await no_leaked_tasks(before)
