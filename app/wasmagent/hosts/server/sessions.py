"""One client's traffic on the agent server: a WebSocket session or one SSE answer.

Both feed raw protocol messages to their own `Agent` input edge (sharing the server's single
core) and drain its events through an `Outbox`, so a slow client cannot make the server buffer
without limit: past `max_queued_events` waiting events the session is closed as too slow.

The WebSocket session is a plain ASGI handler (`serve_websocket`), reached before FastAPI's
middleware and dependency layers, and it builds its agent and writer only when the first
message arrives: an idle connection holds little more than the ASGI server's own state (at
10,000 idle connections, the per-connection cost is most of the server's memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Generic, TypeVar, cast

from ...agent import Agent
from ...errors import AgentError, ErrorCode
from ...protocol import SUBPROTOCOL, Ask, Error, Event, Ingest, Request
from .state import ServerState

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

WS_SUBPROTOCOL = SUBPROTOCOL
TOKEN_SUBPROTOCOL = "bearer."
POLICY_VIOLATION = 1008
TOO_SLOW = 1013
HANG_UP_GRACE_S = 5.0
MAX_OPEN_REQUESTS = 256
"""Unfinished requests one connection may have at once."""
MAX_QUEUED_BYTES = 8 << 20
"""Unsent event text one client may hold in the server (characters, ~bytes): 8 MB."""


class Outbox(Generic[T]):
    """Events waiting for the client (text frames, or a gRPC call's messages): synchronous
    `put` (the agent's sink is synchronous), `take` waits for everything pending at once. More
    than `limit` waiting events, or more than `max_bytes` of them (as `size` counts them),
    marks the outbox as overflowed and closes it: the client is too slow to keep up (or does
    not read at all: 20,000 unread `status` results once held 147 MB of a server that counted
    only events)."""

    __slots__ = ("_bytes", "_events", "_limit", "_max_bytes", "_size", "_waiter", "closed",
                 "overflowed")

    def __init__(self, limit: int, max_bytes: int = MAX_QUEUED_BYTES,
                 size: Callable[[T], int] = len) -> None:  # type: ignore[assignment]
        self._events: list[T] = []
        self._limit = limit
        self._max_bytes = max_bytes
        self._size = size
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.overflowed = False

    def put(self, event: T) -> None:
        if self.closed:
            return
        size = self._size(event)
        if len(self._events) >= self._limit or self._bytes + size > self._max_bytes:
            self.overflowed = True
            self.close()
            return
        self._events.append(event)
        self._bytes += size
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[T]:
        """Every waiting event, in order; waits for one if there is none. `[]` once closed
        (events put before an overflow are dropped: that client is being disconnected)."""
        while not self._events and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.overflowed:
            self._events.clear()
        events, self._events = self._events, []
        self._bytes = 0
        return events


class Tracker:
    """Logs each request of one client when its terminal event goes out (one `request` line:
    id, client, type, outcome, latency) and keeps the server's in-flight count. Every admitted
    request gets a terminal event (the agent's contract), cancelled ones included, also one
    cancelled before it ever ran; `abandon` accounts for those still running when the client's
    hang-up grace ran out."""

    __slots__ = ("_begun", "_client", "_state")

    def __init__(self, state: ServerState, client: str) -> None:
        self._state = state
        self._client = client
        self._begun: dict[str, tuple[str, float]] = {}

    @property
    def open(self) -> int:
        """Requests of this client that have not sent their terminal event yet."""
        return len(self._begun)

    def begin(self, request: Request) -> None:
        if request.id not in self._begun:
            self._state.in_flight_requests += 1
        self._begun[request.id] = (request.TYPE, time.perf_counter())

    def observe(self, event: Event) -> None:
        if not event.TERMINAL or event.id is None:
            return
        begun = self._begun.pop(event.id, None)
        if begun is not None:
            self._finish(event.id, begun, event.code if isinstance(event, Error) else "ok")

    def abandon(self) -> None:
        """The client is gone and its grace is over: what has not ended counts as cancelled."""
        for request_id, begun in list(self._begun.items()):
            del self._begun[request_id]
            self._finish(request_id, begun, ErrorCode.CANCELLED.value)

    def _finish(self, request_id: str, begun: tuple[str, float], outcome: str) -> None:
        self._state.in_flight_requests -= 1
        kind, t0 = begun
        self._state.finished(request_id, kind, self._client, outcome,
                             (time.perf_counter() - t0) * 1000)


def admit(state: ServerState, client: str, tracker: Tracker, *, charge: bool = True
          ) -> Callable[[Request], None]:
    """The per-request checks every valid request passes: rate limit and document sizes.
    `charge=False` when the HTTP route already took this request's rate-limit token (charging
    it twice halved every HTTP client's rate)."""

    def check(request: Request) -> None:
        if tracker.open >= MAX_OPEN_REQUESTS:
            # One connection may not hold the server's capacity: past this many unfinished
            # requests it is refused until some finish (a `cancel` is always accepted).
            raise AgentError(ErrorCode.OVERLOADED, f"over {MAX_OPEN_REQUESTS} requests of this "
                             "connection are still running; wait for some to finish")
        if charge:
            state.limiter.take(client)
        if isinstance(request, Ingest):
            limit = state.config.max_document_bytes
            for doc in request.documents:
                if len(doc.text.encode()) > limit:
                    raise AgentError(ErrorCode.TOO_LARGE,
                                     f"document {doc.source!r} is over {limit} bytes")
        state.telemetry.count("requests", type=request.TYPE, client=client)
        tracker.begin(request)

    return check


def connect(state: ServerState, client: str, outbox: Outbox[str], *, charge: bool = True,
            frame: Callable[[Event], str | None] = Event.to_json, single: bool = False
            ) -> tuple[Agent, Tracker]:
    """A new agent edge for one client, its events observed, then queued in `outbox` as
    `frame` writes them (serialised once, here; None: nothing to send for that event).
    `single`: the edge serves one request, so its terminal event closes the outbox."""
    tracker = Tracker(state, client)

    def sink(event: Event) -> None:
        tracker.observe(event)
        text = frame(event)
        if text is not None:
            outbox.put(text)
        if single and event.TERMINAL:
            outbox.close()

    config = state.config
    agent = state.service.connect(sink, admit=admit(state, client, tracker, charge=charge),
                                  tenant=config.tenant(client), shared=config.shared_kbs)
    agent.max_message_bytes = state.config.max_message_bytes
    return agent, tracker


async def hang_up(agent: Agent, tracker: Tracker) -> None:
    """The client went away: cancel its requests, give them `HANG_UP_GRACE_S` to send their
    terminal events (and so their `request` log lines), then account for the rest."""
    agent.cancel_all()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(HANG_UP_GRACE_S):
            await agent.drain()
    tracker.abandon()


# ---- WebSocket ------------------------------------------------------------------------------


def header(scope: Scope, name: bytes) -> str | None:
    """An ASGI request header's value (`name` in lower case), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def ws_token(scope: Scope) -> str | None:
    """Browsers cannot set headers on a WebSocket, so a token may also come as a subprotocol
    `bearer.<token>` (our tokens are URL-safe, valid subprotocol characters)."""
    value = header(scope, b"authorization")
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    for offered in scope.get("subprotocols", ()):
        if offered.startswith(TOKEN_SUBPROTOCOL):
            return str(offered[len(TOKEN_SUBPROTOCOL):])
    return None


def ws_client(state: ServerState | None, scope: Scope) -> str:
    """Origin and token checks for a WebSocket; the client's name for logs and limits."""
    if state is None:
        raise AgentError(ErrorCode.NOT_READY, "the server is starting")
    state.config.origins.check(header(scope, b"origin"))
    if state.config.tokens.enabled:
        return state.config.tokens.client(ws_token(scope))
    peer = scope.get("client")
    return str(peer[0]) if peer else "-"


def _accept(scope: Scope) -> dict[str, Any]:
    offered = scope.get("subprotocols", ())
    return {"type": "websocket.accept",
            "subprotocol": WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None}


async def serve_websocket(state: ServerState | None, scope: Scope, receive: Receive,
                          send: Send) -> None:
    """The ASGI handler of `WS /v1/ws`: the browser protocol, one JSON message per frame
    each way. A refused client (origin, token, not ready) is accepted only to be told why in
    an `error` event, then closed with 1008: a bare HTTP 403 on the upgrade shows browsers no
    reason at all."""
    if (await receive())["type"] != "websocket.connect":
        return
    try:
        client = ws_client(state, scope)
    except AgentError as exc:
        await send(_accept(scope))
        await send({"type": "websocket.send", "text": Error.from_exc(None, exc).to_json()})
        await send({"type": "websocket.close", "code": POLICY_VIOLATION,
                    "reason": exc.code.value})
        return
    assert state is not None
    await send(_accept(scope))
    session = WebSocketSession(state, client, send)
    state.ws_connections += 1
    try:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return  # websocket.disconnect
            text = message.get("text")
            session.submit(text if text is not None else message.get("bytes") or b"")
    finally:
        state.ws_connections -= 1
        await session.close()


class WebSocketSession:
    """One connection's agent and event writer, both made when the first message arrives."""

    __slots__ = ("_agent", "_client", "_outbox", "_send", "_state", "_tracker", "_writer")

    def __init__(self, state: ServerState, client: str, send: Send) -> None:
        self._state = state
        self._client = client
        self._send = send
        self._agent: Agent | None = None
        self._tracker: Tracker | None = None
        self._outbox: Outbox[str] | None = None
        self._writer: asyncio.Task[None] | None = None

    def submit(self, raw: str | bytes) -> None:
        if self._agent is None:
            self._outbox = Outbox(self._state.config.max_queued_events)
            self._agent, self._tracker = connect(self._state, self._client, self._outbox)
            self._writer = asyncio.get_running_loop().create_task(self._write(self._outbox))
        self._agent.submit(raw)

    async def _write(self, outbox: Outbox[str]) -> None:
        send = self._send
        try:
            while events := await outbox.take():
                for event in events:
                    await send({"type": "websocket.send", "text": event})
            if outbox.overflowed:
                await send({"type": "websocket.close", "code": TOO_SLOW,
                            "reason": "client too slow: event queue overflowed"})
        except (OSError, RuntimeError):
            return  # the client is gone (uvicorn raises `ClientDisconnected`, an OSError)

    async def close(self) -> None:
        """The client went away: cancel its requests and let the writer finish."""
        if self._agent is None or self._tracker is None or self._outbox is None:
            return
        await hang_up(self._agent, self._tracker)
        self._outbox.close()
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


# ---- the socket under the WebSocket ---------------------------------------------------------


class CorkedTransport:
    """A transport whose writes in one event-loop tick leave in one system call, at the end of
    the tick. The bytes and their order are unchanged — every event is still its own frame —
    but a burst of events (an answer's deltas decoded from one upstream read) costs one
    `send()` instead of one each, for the server and for the client's wake-ups alike."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def websocket_protocol() -> type[asyncio.Protocol]:
    """uvicorn's sans-I/O `websockets` protocol over a `CorkedTransport`."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class CorkedWebSocketProtocol(WebSocketsSansIOProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # (uvloop's transports implement asyncio.Transport without subclassing it)
            corked = CorkedTransport(cast(asyncio.Transport, transport))
            super().connection_made(cast(asyncio.Transport, corked))

    return CorkedWebSocketProtocol


# ---- Server-Sent Events ---------------------------------------------------------------------


def sse_answer(state: ServerState, body: dict[str, Any], client: str) -> AsyncIterator[str]:
    """One `ask` as Server-Sent Events: `event: <type>` / `data: <event JSON>` until the
    terminal event. Closing the stream (client gone) cancels the request."""
    outbox: Outbox[str] = Outbox(state.config.max_queued_events)

    def frame(event: Event) -> str:
        return f"event: {event.TYPE}\ndata: {event.to_json()}\n\n"

    agent, tracker = connect(state, client, outbox, charge=False, frame=frame, single=True)
    agent.submit(Ask(f"sse-{uuid.uuid4().hex[:16]}", **body).to_wire())
    return frames_until_done(outbox, agent, tracker)


async def frames_until_done(outbox: Outbox[str], agent: Agent, tracker: Tracker
                            ) -> AsyncIterator[str]:
    """The frames of a one-request edge (`connect(..., single=True)`) up to its terminal
    event; closing the stream (the client is gone) hangs up, which cancels the request."""
    try:
        while frames := await outbox.take():
            for text in frames:
                yield text
    finally:
        await hang_up(agent, tracker)
