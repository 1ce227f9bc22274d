"""The `wasmagent.v1.Agent` servicer: one gRPC call is one protocol request on its own edge.

Each call gets its own `Agent` edge from `state.service.connect` (like one SSE answer), with
the server's shared checks (`sessions.admit`: rate limit per client, document sizes, counted
by a `sessions.Tracker` that logs one `request` line per call) and its client's tenancy. Its
events become `Event` messages as they arrive, queued up to `max_queued_events` (a reader that
falls further behind is cut off with RESOURCE_EXHAUSTED, as a WebSocket is closed) and written
in order. The call ends after the terminal event: OK after `done`; after `error` with the
mapped status (`convert.STATUS`) and the protocol code in trailing metadata.

- Deadline: the call's gRPC deadline is the request's. When it passes, the request is
  cancelled and ends as `deadline_exceeded` (its log line says so too).
- Cancellation: a client that cancels its call (or goes away) hangs up exactly like a closed
  WebSocket (`sessions.hang_up`): its request is cancelled and logged as `cancelled`, and an
  `Ingest` job, being durable, goes on. The `Cancel` RPC sends the protocol's `cancel` to the
  target call's edge, which cancels a job too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from ....errors import AgentError, ErrorCode
from ....protocol import Cancel, Error, Event, Request, Result, Status
from ..security import bearer
from ..sessions import Outbox, Tracker, admit, hang_up
from ..state import ServerState
from . import agent_pb2 as pb
from . import agent_pb2_grpc as pb_grpc
from . import convert

Context = grpc.aio.ServicerContext[Any, Any]
DEADLINE_SLACK_S = 0.25
"""A call cancelled this close to its deadline ran out of time: the client's own deadline timer
(it started earlier than the server's, by the transit time) resets the stream, and under load
that reset can arrive before the server's timer fires."""


class Call:
    """One RPC's edge onto the core and what its request has produced so far."""

    __slots__ = ("_replies", "agent", "events", "expired", "failure", "finished", "request_id",
                 "result", "tracker")

    def __init__(self, state: ServerState, client: str, request_id: str) -> None:
        self.request_id = request_id
        # (what `sessions.Outbox` does for text frames: a reader too slow is cut off)
        self.events: Outbox[pb.Event] = Outbox(state.config.max_queued_events,
                                               size=lambda event: event.ByteSize())
        self.tracker = Tracker(state, client)
        self.expired = False
        """The deadline passed: the request's cancellation is reported as `deadline_exceeded`."""
        self.finished = False
        """The request's terminal event has arrived."""
        self.failure: Error | None = None
        self.result: Result | None = None
        self._replies: dict[str, asyncio.Future[Event]] = {}
        config = state.config
        self.agent = state.service.connect(self._sink, admit=admit(state, client, self.tracker),
                                           tenant=config.tenant(client),
                                           shared=config.shared_kbs)
        self.agent.max_message_bytes = config.max_message_bytes

    def _sink(self, event: Event) -> None:
        reply = self._replies.get(event.id) if event.id is not None else None
        if reply is not None:  # a `cancel` sent to this edge by another call
            if not reply.done() and isinstance(event, Result | Error):
                reply.set_result(event)
            return
        if isinstance(event, Error):
            if self.expired and event.code == ErrorCode.CANCELLED.value:
                event = Error(event.id, ErrorCode.DEADLINE.value,
                              "the call's gRPC deadline passed")
            self.failure = event
        elif isinstance(event, Result):
            self.result = event
        self.tracker.observe(event)
        self.events.put(convert.event(event))
        if event.TERMINAL:
            self.finished = True
            self.events.close()

    async def cancel(self, cancel_id: str) -> bool:
        """Send the protocol's `cancel` for this call's request; whether it was running."""
        reply = asyncio.get_running_loop().create_future()
        self._replies[cancel_id] = reply
        try:
            self.agent.submit(Cancel(cancel_id, self.request_id).to_wire())
            answer = await reply
        finally:
            del self._replies[cancel_id]
        return isinstance(answer, Result) and bool(answer.data.get("cancelled"))


class AgentService(pb_grpc.AgentServicer):
    """The servicer (see the module docstring); `calls` are the running ones by client and
    request id, for `Cancel` and for refusing a duplicate id."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self.calls: dict[tuple[str, str], Call] = {}

    async def Ask(self, request: pb.AskRequest, context: Context) -> None:
        client = await self._client(context)
        rid = self._id(request.id)
        await self._serve(context, client, convert.ask(request, rid), stream=True)

    async def Ingest(self, request: pb.IngestRequest, context: Context) -> None:
        client = await self._client(context)
        rid = self._id(request.id)
        await self._serve(context, client, convert.ingest(request, rid), stream=True)

    async def Status(self, request: pb.StatusRequest, context: Context
                     ) -> pb.StatusReply:
        client = await self._client(context)
        call = await self._serve(context, client, Status(self._id(request.id)), stream=False)
        reply = pb.StatusReply()
        if call.result is not None:
            reply.data.update(call.result.to_wire()["data"])
        return reply

    async def Cancel(self, request: pb.CancelRequest, context: Context
                     ) -> pb.CancelReply:
        client = await self._client(context)
        target = self.calls.get((client, request.target))
        cancelled = False
        if target is not None:
            # a fresh id, never the caller's: one equal to a running request's (the target's,
            # another cancel's) would be refused with an unattributable error on that edge
            cancelled = await target.cancel(self._id(""))
            self._state.telemetry.log("grpc_cancel", client=client, target=request.target,
                                      cancelled=cancelled)
        return pb.CancelReply(target=request.target, cancelled=cancelled)

    async def _serve(self, context: Context, client: str, request: Request, *, stream: bool
                     ) -> Call:
        """Run one request on a call of its own up to its terminal event, writing its events
        when `stream`; aborts the call with the mapped status when the request failed."""
        key = (client, request.id)
        if key in self.calls:
            await _abort(context, ErrorCode.BAD_MESSAGE, f"a request with id {request.id!r} is "
                         "already running; this duplicate was refused")
        call = Call(self._state, client, request.id)
        self.calls[key] = call
        loop = asyncio.get_running_loop()
        remaining = context.time_remaining()
        deadline = None if remaining is None else loop.time() + remaining
        try:
            call.agent.submit(request.to_wire())
            async with asyncio.timeout_at(deadline):
                await _pump(context, call, stream)
        except TimeoutError:
            pass  # the deadline passed: `late` below
        finally:
            # also when gRPC cancelled this handler (the client left, or its deadline passed)
            del self.calls[key]
            late = deadline is not None and loop.time() >= deadline - DEADLINE_SLACK_S
            call.expired = late and not call.finished
            await hang_up(call.agent, call.tracker)
        if call.expired:
            await _abort(context, ErrorCode.DEADLINE, "the call's gRPC deadline passed")
        if call.events.overflowed:
            await _abort(context, ErrorCode.OVERLOADED, "client too slow: event queue "
                         "overflowed", status=grpc.StatusCode.RESOURCE_EXHAUSTED)
        if call.failure is not None:
            await _abort(context, ErrorCode(call.failure.code), call.failure.message)
        return call

    async def _client(self, context: Context) -> str:
        """The caller's name for logs, limits and tenancy: its token's client with auth on
        (`unauthorized` otherwise), else its address."""
        tokens = self._state.config.tokens
        if not tokens.enabled:
            return _peer_host(context.peer())
        header = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode("latin-1")
        try:
            return tokens.client(bearer(header))
        except AgentError as exc:
            await _abort(context, exc.code, exc.message)
            raise  # unreachable: `abort` raises

    @staticmethod
    def _id(given: str) -> str:
        return given or f"grpc-{uuid.uuid4().hex[:16]}"


async def _pump(context: Context, call: Call, stream: bool) -> None:
    """Write (or, unary, just wait for) the call's events up to the terminal one."""
    while messages := await call.events.take():
        if stream:
            for message in coalesced(messages):
                await context.write(message)


def coalesced(messages: list[pb.Event]) -> list[pb.Event]:
    """`messages` with each run of adjacent `delta`s written as one (their texts joined).

    A gRPC message costs the server ~0.1 ms of CPU whatever its size; deltas pile up only
    when the writer is behind, so under load an answer takes fewer writes and the server
    catches up instead of falling further behind. Clients concatenate deltas either way."""
    out: list[pb.Event] = []
    for message in messages:
        if out and message.HasField("delta") and out[-1].HasField("delta"):
            out[-1].delta.text += message.delta.text
        else:
            out.append(message)
    return out


async def _abort(context: Context, code: ErrorCode, message: str,
                 status: grpc.StatusCode | None = None) -> None:
    await context.abort(status or convert.STATUS.get(code, grpc.StatusCode.UNKNOWN), message,
                        trailing_metadata=((convert.ERROR_CODE_KEY, code.value),))


def _peer_host(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` → `127.0.0.1`; `ipv6:[::1]:5000` → `::1`."""
    _, _, address = peer.partition(":")
    host = address.rsplit(":", 1)[0] if address.count(":") >= 1 else address
    return host.strip("[]") or "-"


def register(server: grpc.aio.Server, state: ServerState) -> AgentService:
    service = AgentService(state)
    add: Callable[[Any, Any], None] = pb_grpc.add_AgentServicer_to_server  # untyped gencode
    add(service, server)
    return service


__all__ = ["AgentService", "Call", "coalesced", "register"]
