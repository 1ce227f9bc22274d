"""One client's traffic on the agent server: a WebSocket session or one SSE answer.

Both feed raw protocol messages to their own `Agent` input edge (sharing the server's single
core) and drain its events through a bounded queue, so a slow client cannot make the server
buffer without limit: past `max_queued_events` the session is closed as too slow.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..agent import Agent
from ..errors import AgentError, ErrorCode
from ..protocol import PROTOCOL_VERSION, Error, Ingest, Request
from .state import ServerState

WS_SUBPROTOCOL = "wasmagent.v1"
TOKEN_SUBPROTOCOL = "bearer."
POLICY_VIOLATION = 1008
TOO_SLOW = 1013


class EventQueue:
    """The agent's sink: events wait here for the socket writer. Sync `put` (the agent's sink
    is synchronous), async `get`; overflow marks the session as too slow."""

    def __init__(self, limit: int) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._limit = limit
        self.overflowed = False

    def put(self, event: str) -> None:
        if self._queue.qsize() >= self._limit:
            self.overflowed = True
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(event)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def get(self) -> str | None:
        return await self._queue.get()


def admit(state: ServerState, client: str, *, charge: bool = True
          ) -> Callable[[Request], None]:
    """The per-request checks every valid request passes: rate limit and document sizes.
    `charge=False` when the HTTP route already took this request's rate-limit token (charging
    it twice halved every HTTP client's rate)."""

    def check(request: Request) -> None:
        if charge:
            state.limiter.take(client)
        if isinstance(request, Ingest):
            limit = state.config.max_document_bytes
            for doc in request.documents:
                if len(doc.text.encode()) > limit:
                    raise AgentError(ErrorCode.TOO_LARGE,
                                     f"document {doc.source!r} is over {limit} bytes")
        state.telemetry.count("requests", type=request.TYPE, client=client)
        state.begin(request.id, request.TYPE, client)

    return check


def _sink(state: ServerState, events: EventQueue) -> Callable[[str], None]:
    def sink(event: str) -> None:
        state.observe_event(event)
        events.put(utf8_safe(event))

    return sink


def utf8_safe(event: str) -> str:
    """The event as text UTF-8 can carry. Events may echo client strings (a request id) that
    hold lone surrogates (`"\\ud800"` is valid JSON), which UTF-8 — the text encoding of
    WebSocket frames and of our HTTP bodies — cannot encode: the failed send killed the
    connection's writer, and the client waited forever. Such events are re-serialised with
    ASCII escapes, which decode to the same JSON value."""
    if event.isascii():
        return event
    try:
        event.encode()
    except UnicodeEncodeError:
        return json.dumps(json.loads(event), separators=(",", ":"))
    return event


def ws_token(websocket: WebSocket) -> str | None:
    """Browsers cannot set headers on a WebSocket, so a token may also come as a subprotocol
    `bearer.<token>` (our tokens are URL-safe, valid subprotocol characters)."""
    header = websocket.headers.get("authorization")
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    for offered in websocket.scope.get("subprotocols", []):
        if offered.startswith(TOKEN_SUBPROTOCOL):
            return str(offered[len(TOKEN_SUBPROTOCOL):])
    return None


async def refuse(websocket: WebSocket, exc: AgentError) -> None:
    """Accept only to say why, then close: a bare HTTP 403 on the upgrade shows browsers no
    reason at all."""
    await websocket.accept(subprotocol=_subprotocol(websocket))
    await websocket.send_text(Error.from_exc(None, exc).to_json())
    await websocket.close(POLICY_VIOLATION, exc.code.value)


def _subprotocol(websocket: WebSocket) -> str | None:
    offered = websocket.scope.get("subprotocols", [])
    return WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None


async def run_websocket(state: ServerState, websocket: WebSocket, client: str) -> None:
    await websocket.accept(subprotocol=_subprotocol(websocket))
    events = EventQueue(state.config.max_queued_events)
    agent = state.service.connect(_sink(state, events), admit=admit(state, client))
    writer = asyncio.create_task(_write(websocket, events))
    state.ws_connections += 1
    try:
        await _read(state, websocket, agent)
    finally:
        state.ws_connections -= 1
        agent.cancel_all()
        events.close()
        await asyncio.gather(writer, return_exceptions=True)


async def _read(state: ServerState, websocket: WebSocket, agent: Agent) -> None:
    limit = state.config.max_message_bytes
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        raw: str | bytes = message.get("text") or message.get("bytes") or b""
        # the limit is in bytes, and a character may take up to 4 of them
        size = len(raw) if isinstance(raw, bytes) or len(raw) * 4 <= limit else len(raw.encode())
        if size > limit:
            agent_error = AgentError(ErrorCode.TOO_LARGE, f"message is over {limit} bytes")
            await websocket.send_text(Error.from_exc(None, agent_error).to_json())
            continue
        agent.submit(raw)


async def _write(websocket: WebSocket, events: EventQueue) -> None:
    while (event := await events.get()) is not None:
        try:
            await websocket.send_text(event)
        except (WebSocketDisconnect, RuntimeError):
            return
    if events.overflowed and websocket.application_state == WebSocketState.CONNECTED:
        await websocket.close(TOO_SLOW, "client too slow: event queue overflowed")


async def sse_answer(state: ServerState, body: dict[str, Any], client: str
                     ) -> AsyncIterator[str]:
    """One `ask` as Server-Sent Events: `event: <type>` / `data: <event JSON>` until the
    terminal event. Closing the stream (client gone) cancels the request."""
    events = EventQueue(state.config.max_queued_events)
    agent = state.service.connect(_sink(state, events), admit=admit(state, client, charge=False))
    rid = f"sse-{uuid.uuid4().hex[:16]}"
    agent.submit({"v": PROTOCOL_VERSION, "type": "ask", "id": rid, **body})
    try:
        while (event := await events.get()) is not None:
            kind = json.loads(event)["type"]
            yield f"event: {kind}\ndata: {event}\n\n"
            if kind in ("done", "error"):
                return
    finally:
        agent.cancel_all()
