"""The request context: an id, a deadline and a cancellation signal carried end to end.

Every request gets one `Context` at the input edge; each stage passes it on (or a `child` of it)
and binds its waits to it with `Context.run`. Rules of this module:

- A context is *done* once it is cancelled (`cancel()` on it or on any ancestor) or once its
  deadline has passed. Done is final: a context never becomes live again.
- A deadline is absolute, in the `Clock`'s monotonic seconds (`LoopClock`: the loop's time).
  A child's deadline is never later than its parent's, and a child is done when its parent is.
- Cancellation wins over an expired deadline when both hold: `error()` then reports CANCELLED.
- Contexts are cheap: a plain object with no task and no timer. A timer (one `loop.call_later`
  handle) exists only while somebody waits on the context (`run`, `add_done_callback`), and it
  is cancelled as soon as the last waiter leaves. A child holds its parent, never the reverse,
  except for the same wait-scoped subscription.

Contracts:

- `error()` returns None while live, else a fresh `AgentError(CANCELLED, reason)` or
  `AgentError(DEADLINE, ...)`. `raise_if_done()` raises that error, otherwise returns None.
- `remaining()` returns None without a deadline, else the seconds left, never negative.
- `await ctx.run(aw)` returns what `aw` returns and raises what `aw` raises. If the context is
  done before or while `aw` runs, `aw` is cancelled (the current task receives a real
  `CancelledError` at its await, so `finally` blocks in `aw` run) and `run` raises the context's
  `AgentError`. A coroutine passed to an already-done context is closed without running; a
  future or task is cancelled. A cancellation of the task from elsewhere is not converted: it
  propagates as `CancelledError`. If `aw` suppresses the cancellation and returns, `run` returns
  its value (as `asyncio.timeout` does). `run` must be awaited inside an asyncio task
  (`RuntimeError` otherwise, which would be a bug in the host).
- `ctx.stream(source)` yields the items of an async iterable, each wait bound as by `run`, and
  closes `source` (`aclose`) however the iteration ends, so a connection it holds is released
  at once. Close the stream itself deterministically (`contextlib.aclosing`): an async
  generator left by `break` or `return` is otherwise closed only when the loop collects it.
- `add_done_callback(fn)` calls `fn(error)` once when the context becomes done and returns a
  function that unregisters it. `fn` runs synchronously inside `cancel()`, or from the loop for
  a deadline; on an already-done context it is scheduled with `call_soon`. An exception from
  `fn` goes to the loop's exception handler, never to the code that called `cancel()`.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from typing import Any, TypeVar

from ..errors import AgentError, ErrorCode
from ..ports import Clock, LoopClock

T = TypeVar("T")

DoneCallback = Callable[[AgentError], None]

_DEFAULT_CLOCK = LoopClock()
_keys = itertools.count()


def _noop() -> None:
    return None


def discard_awaitable(aw: Awaitable[Any]) -> None:
    """Release an awaitable that will never be awaited: close a coroutine, cancel a future."""
    if inspect.iscoroutine(aw):
        aw.close()
    elif isinstance(aw, asyncio.Future):
        aw.cancel()


class Context:
    """One request's identity, deadline and cancellation. See the module docstring."""

    __slots__ = (
        "_callbacks",
        "_deadline",
        "_expired",
        "_parent",
        "_parent_unsub",
        "_reason",
        "_timer",
        "clock",
        "request_id",
    )

    def __init__(
        self,
        request_id: str | None = None,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        clock: Clock | None = None,
        parent: Context | None = None,
    ) -> None:
        """Create a context. `timeout` (seconds from now) and `deadline` (absolute) combine:
        the earlier wins, and so does the parent's deadline. Prefer `parent.child(...)` to
        passing `parent` here."""
        self.clock: Clock = clock or (parent.clock if parent else _DEFAULT_CLOCK)
        self.request_id: str = request_id or (parent.request_id if parent else uuid.uuid4().hex)
        self._parent = parent
        if timeout is not None:
            by_timeout = self.clock.monotonic() + timeout
            deadline = by_timeout if deadline is None else min(deadline, by_timeout)
        if parent is not None and parent._deadline is not None:
            deadline = parent._deadline if deadline is None else min(deadline, parent._deadline)
        self._deadline: float | None = deadline
        self._reason: str | None = None
        self._expired = False
        self._callbacks: dict[int, DoneCallback] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._parent_unsub: Callable[[], None] | None = None

    def __repr__(self) -> str:
        state = "live" if (err := self.error()) is None else err.code.value
        return f"Context({self.request_id!r}, deadline={self._deadline!r}, {state})"

    # -- state -------------------------------------------------------------------------------

    @property
    def parent(self) -> Context | None:
        return self._parent

    @property
    def deadline(self) -> float | None:
        """The absolute deadline in `clock.monotonic()` seconds, or None for none."""
        return self._deadline

    @property
    def cancelled(self) -> bool:
        """True once `cancel()` was called on this context or on an ancestor."""
        return self._cancel_reason() is not None

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        if self._deadline is None:
            return False
        return self._expired or self.clock.monotonic() >= self._deadline

    @property
    def done(self) -> bool:
        return self.cancelled or self.expired

    def remaining(self) -> float | None:
        """Seconds until the deadline (0.0 once passed), or None without a deadline."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self.clock.monotonic())

    def error(self) -> AgentError | None:
        """None while live; else a fresh AgentError(CANCELLED) or AgentError(DEADLINE)."""
        reason = self._cancel_reason()
        if reason is not None:
            return AgentError(ErrorCode.CANCELLED, reason)
        if self.expired:
            return AgentError(ErrorCode.DEADLINE, self._deadline_message())
        return None

    def raise_if_done(self) -> None:
        """Raise AgentError(CANCELLED) or AgentError(DEADLINE) if done; otherwise return."""
        err = self.error()
        if err is not None:
            raise err

    def _cancel_reason(self) -> str | None:
        ctx: Context | None = self
        while ctx is not None:
            if ctx._reason is not None:
                return ctx._reason
            ctx = ctx._parent
        return None

    # -- derivation and cancellation ---------------------------------------------------------

    def child(self, timeout: float | None = None, *, request_id: str | None = None) -> Context:
        """A context done when this one is, with a deadline no later than this one's."""
        return Context(request_id, timeout=timeout, parent=self)

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel this context and its descendants. Idempotent: the first reason is kept."""
        if self._reason is not None:
            return
        self._reason = reason
        if self._callbacks is not None:
            self._fire(ErrorCode.CANCELLED, reason)

    # -- waiting -----------------------------------------------------------------------------

    def add_done_callback(self, fn: DoneCallback) -> Callable[[], None]:
        """Call `fn(error)` once when done; returns the function that unregisters `fn`."""
        loop = asyncio.get_running_loop()
        err = self.error()
        if err is not None:
            return loop.call_soon(fn, err).cancel
        if self._callbacks is None:
            self._callbacks = {}
        key = next(_keys)
        self._callbacks[key] = fn
        if len(self._callbacks) == 1:
            self._arm(loop)
        return lambda: self._remove(key)

    def _remove(self, key: int) -> None:
        if self._callbacks is None or self._callbacks.pop(key, None) is None:
            return
        if not self._callbacks:
            self._callbacks = None
            self._disarm()

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        parent = self._parent
        if parent is not None:
            self._parent_unsub = parent.add_done_callback(self._on_parent_done)
        inherited = parent is not None and parent._deadline == self._deadline
        if self._deadline is not None and not inherited:
            delay = self._deadline - self.clock.monotonic()
            self._timer = loop.call_later(max(0.0, delay), self._on_deadline)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._parent_unsub is not None:
            unsub, self._parent_unsub = self._parent_unsub, None
            unsub()

    def _on_deadline(self) -> None:
        self._timer = None
        self._expired = True
        self._fire(ErrorCode.DEADLINE, self._deadline_message())

    def _deadline_message(self) -> str:
        return f"request {self.request_id} ran past its deadline"

    def _on_parent_done(self, err: AgentError) -> None:
        self._parent_unsub = None
        if err.code is ErrorCode.DEADLINE:
            self._expired = True
        self._fire(err.code, err.message)

    def _fire(self, code: ErrorCode, message: str) -> None:
        callbacks, self._callbacks = self._callbacks, None
        self._disarm()
        if not callbacks:
            return
        for fn in callbacks.values():
            try:
                fn(AgentError(code, message))
            except Exception as exc:
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "Context done-callback failed", "exception": exc}
                )

    async def run(self, aw: Awaitable[T]) -> T:
        """Await `aw` bound to this context; see the module docstring for the contract."""
        err = self.error()
        if err is not None:
            discard_awaitable(aw)
            raise err
        task = asyncio.current_task()
        if task is None:
            discard_awaitable(aw)
            raise RuntimeError("Context.run must be awaited inside an asyncio task")
        binding = _Binding(task)
        unsub = self.add_done_callback(binding.on_done)
        try:
            return await aw
        except asyncio.CancelledError:
            if binding.settle():
                assert binding.error is not None
                raise binding.error from None
            raise
        finally:
            unsub()
            binding.active = False
            binding.settle()

    async def stream(self, source: AsyncIterable[T]) -> AsyncGenerator[T, None]:
        """Iterate `source` bound to this context; see the module docstring."""
        items = source.__aiter__()
        try:
            while True:
                try:
                    item = await self.run(items.__anext__())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()


async def uninterruptible(aw: Awaitable[T]) -> T:
    """Await `aw` to its end even if the caller is cancelled meanwhile, then deliver the
    cancellation: for short steps that must never stop half-way (state updated across an
    await). `aw` runs as its own task; a cancellation that arrived while it ran is raised as
    `CancelledError` once it is done (its result is dropped; an error of its own wins)."""
    task = asyncio.ensure_future(aw)
    interrupted = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise  # `aw` itself was cancelled (the loop is closing)
            interrupted = True
            continue
        if interrupted:
            raise asyncio.CancelledError
        return result


class _Binding:
    """The link between one `Context.run` call and the task it runs in."""

    __slots__ = ("active", "cancelling", "error", "settled", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.error: AgentError | None = None
        self.active = True
        self.settled = False

    def on_done(self, err: AgentError) -> None:
        if not self.active or self.error is not None:
            return
        if asyncio.current_task() is self.task:
            # Cancelled from inside the bound task itself: deliver at its next suspension, so a
            # `run` that returns first leaves no pending cancellation behind.
            asyncio.get_running_loop().call_soon(self.on_done, err)
            return
        self.error = err
        self.task.cancel(f"context done: {err.code.value}")

    def settle(self) -> bool:
        """Undo our cancel request once; True when the CancelledError seen is ours alone."""
        if self.error is None or self.settled:
            return False
        self.settled = True
        return self.task.uncancel() <= self.cancelling
