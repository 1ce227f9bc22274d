"""The agent service: the input edge of the pipeline that every host drives the same way.

A host feeds raw wire messages to `Agent.submit` and receives `Event` objects through the `sink`
it passed in (it serialises them once, at its own edge). `submit` never raises and never blocks:
each valid request runs as its own task; invalid input is answered with an `error` event at
once. Every request ends with exactly one terminal event (`done` or `error`), including when it
is cancelled or when a handler raises something unexpected (mapped to `internal` and logged), so
one bad request can never stop the agent from serving the next. A request reusing the id of one
still running is refused with an `error` whose `id` is null (its message names the id), never
one carrying that id.
"""

from __future__ import annotations

import asyncio
import platform
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from . import __version__
from .errors import AgentError, ErrorCode
from .ports import Admit, Host, Sink
from .protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Cancel,
    Done,
    Error,
    Event,
    Request,
    Result,
    Status,
    decode,
    parse_request,
    peek_id,
)
from .telemetry import Log, failure, fallback_log

USER_CANCEL = "cancelled by the caller"
"""The message of the `CancelledError` a `cancel` request raises in its target, so a handler
can tell it from the client going away (which, for a durable job, must not cancel it)."""

Handler = Callable[[Any, Callable[[Event], None]], Awaitable[None]]


class Agent:
    """Validates requests, runs each as a task, and turns every outcome into events."""

    def __init__(self, host: Host, sink: Sink,
                 status_extra: Callable[[], dict[str, Any]] | None = None,
                 admit: Admit | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 log: Log = fallback_log) -> None:
        """`admit` (the server's limits: rate, document sizes) may refuse a valid request by
        raising `AgentError`; the refusal is that request's `error` event. A wire message over
        `max_message_bytes` (a public attribute: a host may set its own limit) is refused as
        `too_large`."""
        self.host = host
        self.max_message_bytes = max_message_bytes
        self._admit = admit
        self._log = log
        self._status_extra = status_extra
        self._sink = sink
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._drained: list[asyncio.Future[None]] = []
        self._handlers: dict[type[Any], Handler] = {Status: self._status, Cancel: self._cancel}
        self.started = host.clock.monotonic()

    def route(self, request_type: type[Any], handler: Handler) -> None:
        """Register the handler for one request type (the pipeline registers its stages here)."""
        self._handlers[request_type] = handler

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, raw: str | bytes | dict[str, Any]) -> None:
        """Accept one wire message; see the module docstring for the contract."""
        try:
            request = parse_request(raw, max_bytes=self.max_message_bytes)
        except AgentError as exc:
            rid = peek_id(raw) if isinstance(raw, dict) else _raw_id(raw, self.max_message_bytes)
            self._send(Error.from_exc(rid, exc))
            return
        if request.id in self._tasks:
            # Refused with `id: null`: an error carrying the running request's id would read
            # as that request's terminal event (the client would see two for one id). Checked
            # before `admit`, so the duplicate is neither charged nor counted as begun.
            self._send(Error(None, ErrorCode.BAD_MESSAGE.value,
                             f"a request with id {request.id!r} is already running; "
                             "this duplicate was refused"))
            return
        try:
            if self._admit is not None and not isinstance(request, Cancel):
                self._admit(request)
        except AgentError as exc:
            self._send(Error.from_exc(request.id, exc))
            return
        task = asyncio.get_running_loop().create_task(self._run(request))
        self._tasks[request.id] = task
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for rid, running in list(self._tasks.items()):
            if running is task:
                del self._tasks[rid]
                if task.cancelled():
                    # Cancelled before it ever ran, so `_run` sent nothing: the request still
                    # gets its one terminal event.
                    self._send(Error(rid, ErrorCode.CANCELLED.value, "the request was cancelled"))
        if not self._tasks:
            for waiter in self._drained:
                if not waiter.done():
                    waiter.set_result(None)
            self._drained.clear()

    def cancel_all(self) -> None:
        """Cancel every running request (the client went away)."""
        for task in list(self._tasks.values()):
            task.cancel()

    async def drain(self) -> None:
        """Wait until every accepted request has sent its terminal event (tests, shutdown).

        Waits for the moment `_forget` empties the table: gathering the tasks instead spun
        forever on Python 3.12+, where awaiting a gather of finished tasks does not yield, so
        their done callbacks (`_forget`) never got to run."""
        while self._tasks:
            waiter = asyncio.get_running_loop().create_future()
            self._drained.append(waiter)
            await waiter

    async def _run(self, request: Request) -> None:
        handler = self._handlers.get(type(request))
        try:
            if handler is None:
                raise AgentError(ErrorCode.NOT_READY, f"{request.TYPE!r} is not available yet")
            await handler(request, self._send)
        except AgentError as exc:
            self._send(Error.from_exc(request.id, exc))
        except asyncio.CancelledError:
            self._send(Error(request.id, ErrorCode.CANCELLED.value, "the request was cancelled"))
        except Exception as exc:
            self._log("request_failed", level="error", request_id=request.id,
                      error=failure(exc))
            self._send(Error(request.id, ErrorCode.INTERNAL.value,
                             f"internal error: {type(exc).__name__}: {exc}"))
        else:
            self._send(Done(request.id))

    def _send(self, event: Event) -> None:
        try:
            self._sink(event)
        except Exception:
            # A sink that fails (a closed port, a dead socket) must not take the agent down.
            self._log("event_undelivered", level="error", event_type=event.TYPE,
                      request_id=event.id, error=failure(sys.exc_info()[1] or Exception()))

    async def _status(self, request: Status, emit: Callable[[Event], None]) -> None:
        emit(Result(request.id, self.status()))

    async def _cancel(self, request: Cancel, emit: Callable[[Event], None]) -> None:
        task = self._tasks.get(request.target)
        if task is not None and request.target != request.id:
            task.cancel(USER_CANCEL)
        emit(Result(request.id, {"target": request.target, "cancelled": task is not None}))

    def status(self) -> dict[str, Any]:
        host = self.host
        return {
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "host": host.name,
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "machine": platform.machine(),
            "uptime_s": round(host.clock.monotonic() - self.started, 3),
            "in_flight": self.in_flight - 1,  # not counting this status request
            "inference": host.inference is not None,
            "store": host.store is not None,
            **(host.info or {}),
            **(self._status_extra() if self._status_extra else {}),
        }


def _raw_id(raw: str | bytes, max_bytes: int) -> str | None:
    """Best-effort request id from a message that failed validation."""
    try:
        return peek_id(decode(raw, max_bytes))
    except AgentError:
        return None
