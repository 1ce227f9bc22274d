"""Bounded channels and `select`: the wires between pipeline stages (CSP style).

Rules of this module:

- A `Channel[T]` buffers at most `capacity` values, `capacity >= 1` (no rendezvous channels:
  a value always sits in a buffer until a receiver takes it, which is what makes every
  operation here cancellation-safe).
- Values come out in the order they went in. Waiting senders and receivers are woken in FIFO
  order, but a woken waiter re-checks the channel, so a non-waiting caller may overtake it
  (no strict fairness is promised).
- Nothing is ever lost: a value leaves the buffer only inside the synchronous part of a
  receive that returns it. A receiver cancelled while waiting takes nothing; a sender cancelled
  while waiting puts nothing. When a woken waiter leaves without using its wake-up, the wake-up
  is passed on to the next waiter.
- `close()` is idempotent. After it, every send raises `ChannelClosed` (the values of senders
  that were waiting are *not* delivered); receivers still drain the buffered values and then
  get `ChannelClosed`.

Contracts:

- `await send(x)`: returns once `x` is buffered; waits while the buffer is full
  (backpressure); raises `ChannelClosed` if the channel is or becomes closed first.
- `try_send(x) -> bool`: True if buffered, False if full; raises `ChannelClosed` if closed.
- `await recv()`: returns the oldest value, waiting while empty; raises `ChannelClosed` once
  the channel is closed and drained.
- `try_recv()`: returns the oldest value; raises `ChannelEmpty` if none is buffered and the
  channel is open, `ChannelClosed` if closed and drained.
- `async for x in ch`: receives until closed and drained, then stops.
- `await select(*cases, timeout=None)`: see `select`.

`ChannelClosed` and `ChannelEmpty` are control flow between stages, not protocol errors: a
stage turns them into its own outcome; they never reach a caller as such.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_Waiters = deque["asyncio.Future[bool]"]


class ChannelClosed(Exception):
    """The channel is closed (and, for a receive, drained)."""


class ChannelEmpty(Exception):
    """`try_recv` found no value in an open channel."""


def _wake_one(waiters: _Waiters, value: bool = False) -> None:
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(value)
            return


def _remove(waiters: _Waiters, fut: asyncio.Future[bool]) -> None:
    with contextlib.suppress(ValueError):
        waiters.remove(fut)


class Channel(Generic[T]):
    """A bounded FIFO channel between tasks. See the module docstring for the contract."""

    __slots__ = ("_buf", "_capacity", "_closed", "_receivers", "_senders")

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"channel capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._buf: deque[T] = deque()
        self._receivers: _Waiters = deque()
        self._senders: _Waiters = deque()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Channel {len(self._buf)}/{self._capacity} {state}>"

    def __len__(self) -> int:
        """The number of buffered values."""
        return len(self._buf)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def closed(self) -> bool:
        """True once `close()` was called (values may still be buffered)."""
        return self._closed

    def full(self) -> bool:
        return len(self._buf) >= self._capacity

    def try_send(self, value: T) -> bool:
        """Buffer `value` if there is room: True; False if full; ChannelClosed if closed."""
        if self._closed:
            raise ChannelClosed("send on a closed channel")
        if len(self._buf) >= self._capacity:
            return False
        self._buf.append(value)
        _wake_one(self._receivers)
        return True

    async def send(self, value: T) -> None:
        """Buffer `value`, waiting while full; raises ChannelClosed if closed first."""
        while not self.try_send(value):
            await self._wait(self._senders)

    def try_recv(self) -> T:
        """The oldest value; ChannelEmpty if none yet, ChannelClosed if closed and drained."""
        if self._buf:
            value = self._buf.popleft()
            _wake_one(self._senders)
            return value
        if self._closed:
            raise ChannelClosed("channel closed and drained")
        raise ChannelEmpty

    async def recv(self) -> T:
        """The oldest value, waiting while empty; ChannelClosed once closed and drained."""
        while True:
            try:
                return self.try_recv()
            except ChannelEmpty:
                await self._wait(self._receivers)

    def close(self) -> None:
        """Refuse further sends; wake every waiter. Buffered values stay receivable."""
        if self._closed:
            return
        self._closed = True
        for waiters in (self._senders, self._receivers):
            while waiters:
                _wake_one(waiters)

    def __aiter__(self) -> Channel[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.recv()
        except ChannelClosed:
            raise StopAsyncIteration from None

    async def _wait(self, waiters: _Waiters) -> None:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        try:
            await fut
        except BaseException:
            _remove(waiters, fut)
            self._pass_on()
            raise

    def _pass_on(self) -> None:
        """Hand a wake-up that a leaving waiter did not use to the next waiter in line."""
        if self._buf or self._closed:
            _wake_one(self._receivers)
        if len(self._buf) < self._capacity or self._closed:
            _wake_one(self._senders)


@dataclass(frozen=True, slots=True)
class Recv(Generic[T]):
    """A `select` case that fires when a value can be received from `channel`."""

    channel: Channel[T]


@dataclass(frozen=True, slots=True)
class Send(Generic[T]):
    """A `select` case that fires when `value` can be buffered in `channel`."""

    channel: Channel[T]
    value: T


Case = Recv[Any] | Send[Any] | Channel[Any]


@dataclass(frozen=True, slots=True)
class Selected:
    """The case that fired: its position in the `select` call, the case, and its outcome.

    For a receive, `value` is the value received. For a send, `value` is None. `closed` is True
    when the case fired because its channel is closed (for a receive: closed and drained);
    then nothing was received or sent and `value` is None.
    """

    index: int
    case: Case
    value: Any = None
    closed: bool = False


def _try_case(index: int, case: Case) -> Selected | None:
    try:
        if isinstance(case, Send):
            return Selected(index, case) if case.channel.try_send(case.value) else None
        channel = case.channel if isinstance(case, Recv) else case
        return Selected(index, case, channel.try_recv())
    except ChannelEmpty:
        return None
    except ChannelClosed:
        return Selected(index, case, closed=True)


def _poll(cases: tuple[Case, ...]) -> Selected | None:
    for index, case in enumerate(cases):
        hit = _try_case(index, case)
        if hit is not None:
            return hit
    return None


def _waiters_of(case: Case) -> tuple[Channel[Any], _Waiters]:
    if isinstance(case, Send):
        return case.channel, case.channel._senders
    channel = case.channel if isinstance(case, Recv) else case
    return channel, channel._receivers


# A timeout *parameter* on purpose: running out of time is a normal outcome of a select (it
# returns None, like Go's `time.After` case), not an exception as with `asyncio.timeout`.
async def select(*cases: Case, timeout: float | None = None) -> Selected | None:  # noqa: ASYNC109
    """Wait until one case can proceed, perform exactly that one, and say which.

    `cases` are `Recv(ch)` (or a bare `Channel`, meaning `Recv(ch)`) and `Send(ch, value)`.
    Returns the `Selected` case; returns None if `timeout` seconds pass first (`timeout=0`
    polls without waiting; None waits forever). When several cases are ready, the first in
    argument order fires: the order is a priority. Exactly one case takes effect: no other
    channel is received from or sent to, so no value is lost, also when the waiting task is
    cancelled (the `CancelledError` propagates and nothing was consumed).
    Raises ValueError for no cases and no timeout (it could never return).
    """
    if not cases and timeout is None:
        raise ValueError("select() with no cases and no timeout would wait forever")
    loop = asyncio.get_running_loop()
    when = None if timeout is None else loop.time() + timeout
    registered = [_waiters_of(case) for case in cases]
    hit = _poll(cases)
    waited = False
    try:
        while hit is None:
            if when is not None and loop.time() >= when:
                return None
            waited = True
            timed_out = await _wait_any(loop, registered, when)
            hit = _poll(cases)
            if hit is None and timed_out:
                return None
        return hit
    finally:
        if waited:
            # What woke us may not be what we took (or we took nothing): pass wake-ups on.
            for index, (channel, _) in enumerate(registered):
                if hit is None or index != hit.index:
                    channel._pass_on()


async def _wait_any(
    loop: asyncio.AbstractEventLoop,
    registered: list[tuple[Channel[Any], _Waiters]],
    when: float | None,
) -> bool:
    """Wait for a wake-up from any case's channel; True if woken by the timeout instead."""
    fut: asyncio.Future[bool] = loop.create_future()
    for _, waiters in registered:
        waiters.append(fut)
    timer = None if when is None else loop.call_at(when, _set_timed_out, fut)
    try:
        return await fut
    finally:
        if timer is not None:
            timer.cancel()
        for _, waiters in registered:
            _remove(waiters, fut)


def _set_timed_out(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)
