"""`wasmagent.v1` messages <-> protocol dataclasses, and protocol error codes -> gRPC statuses.

Pure functions: requests become the protocol's own dataclasses (then `to_wire()`, validated by
the core exactly like a WebSocket message), events become `Event` messages field by field.
`tests/server/test_grpc.py` checks that the `.proto` names the same fields, events and codes
as `protocol/messages.py` and `errors.py`, so a change to either fails until both agree.
"""

from __future__ import annotations

from typing import Any

import grpc

from ....errors import ErrorCode
from ....protocol import (
    Answer,
    Ask,
    Citation,
    Delta,
    DocumentIn,
    Done,
    Error,
    Event,
    Ingest,
    PassageIn,
    Progress,
    Result,
    ToolCalled,
    ToolReturned,
    TurnIn,
)
from . import agent_pb2 as pb

ERROR_CODE_KEY = "wasmagent-error-code"
"""Trailing metadata naming the protocol error code of a failed call."""

StatusCode = grpc.StatusCode
STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.BAD_JSON: StatusCode.INVALID_ARGUMENT,
    ErrorCode.BAD_MESSAGE: StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNSUPPORTED_VERSION: StatusCode.INVALID_ARGUMENT,
    ErrorCode.TOO_LARGE: StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NOT_READY: StatusCode.UNAVAILABLE,
    ErrorCode.CANCELLED: StatusCode.CANCELLED,
    ErrorCode.DEADLINE: StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.OVERLOADED: StatusCode.UNAVAILABLE,
    ErrorCode.INFERENCE: StatusCode.INTERNAL,
    ErrorCode.STORAGE: StatusCode.UNAVAILABLE,
    ErrorCode.TOOL_ARGS: StatusCode.INVALID_ARGUMENT,
    ErrorCode.TOOL_FAILED: StatusCode.INTERNAL,
    ErrorCode.TOOLS_LOAD: StatusCode.INVALID_ARGUMENT,
    ErrorCode.CONFLICT: StatusCode.ABORTED,
    ErrorCode.NOT_FOUND: StatusCode.NOT_FOUND,
    ErrorCode.UPSTREAM: StatusCode.UNAVAILABLE,
    ErrorCode.UPSTREAM_UNAVAILABLE: StatusCode.UNAVAILABLE,
    ErrorCode.UNAUTHORIZED: StatusCode.UNAUTHENTICATED,
    ErrorCode.FORBIDDEN_ORIGIN: StatusCode.PERMISSION_DENIED,
    ErrorCode.FORBIDDEN: StatusCode.PERMISSION_DENIED,
    ErrorCode.RATE_LIMITED: StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.INTERNAL: StatusCode.INTERNAL,
}
"""The gRPC status a call ends with for each protocol error code (README.md, "gRPC"). Codes a
client may retry as they are map to UNAVAILABLE; a retry needing a change to ABORTED or
RESOURCE_EXHAUSTED (wait for the rate limit)."""
ENUM_PREFIX = "ERROR_CODE_"
ENUM_NAMES = frozenset(pb.ErrorCode.keys())


def status_of(code: str) -> grpc.StatusCode:
    """The status for a protocol code (a wire string); UNKNOWN for one this table lacks, which
    the drift test makes a bug."""
    try:
        return STATUS[ErrorCode(code)]
    except ValueError:
        return StatusCode.UNKNOWN


def error_enum(code: str) -> str:
    """The `ErrorCode` value name of a protocol code (`not_found` → `ERROR_CODE_NOT_FOUND`)."""
    name = ENUM_PREFIX + code.upper()
    return name if name in ENUM_NAMES else "ERROR_CODE_UNSPECIFIED"


def ask(message: pb.AskRequest, request_id: str) -> Ask:
    """The protocol's `ask`; unset optional fields keep the protocol's defaults."""
    fields: dict[str, Any] = {}
    if message.HasField("kb"):
        fields["kb"] = message.kb
    if message.HasField("top_k"):
        fields["top_k"] = message.top_k
    if message.HasField("conversation"):
        fields["conversation"] = message.conversation
    if message.mode != pb.ASK_MODE_UNSPECIFIED:
        try:
            fields["mode"] = pb.AskMode.Name(message.mode).removeprefix("ASK_MODE_").lower()
        except ValueError:
            # a number this server's .proto lacks: the core refuses it as `bad_message`
            fields["mode"] = str(message.mode)
    if message.passages:
        fields["passages"] = [PassageIn(p.source, p.title, p.anchor, p.text)
                              for p in message.passages]
    if message.history:
        fields["history"] = [TurnIn(t.question, t.answer) for t in message.history]
    return Ask(request_id, message.text, **fields)


def ingest(message: pb.IngestRequest, request_id: str) -> Ingest:
    documents = [DocumentIn(d.source, d.text, d.kind if d.HasField("kind") else None)
                 for d in message.documents]
    return Ingest(request_id, message.kb, documents)


def event(source: Event) -> pb.Event:
    """One protocol event as an `Event` message (its oneof field named by the event type)."""
    out = pb.Event(id=source.id or "")
    if isinstance(source, Delta):
        out.delta.text = source.text
    elif isinstance(source, Citation):
        out.citation.CopyFrom(pb.Citation(source=source.source, title=source.title,
                                          anchor=source.anchor, score=source.score,
                                          snippet=source.snippet))
    elif isinstance(source, ToolCalled):
        out.tool_call.CopyFrom(pb.ToolCall(call_id=source.call_id, name=source.name,
                                           arguments=source.arguments, step=source.step))
    elif isinstance(source, ToolReturned):
        out.tool_result.CopyFrom(pb.ToolResult(call_id=source.call_id, name=source.name,
                                               ok=source.ok, text=source.text, ms=source.ms))
    elif isinstance(source, Answer):
        out.answer.CopyFrom(pb.Answer(
            text=source.text, confident=source.confident, route=source.route,
            timings_ms=source.timings_ms,
            citations=[pb.AnswerSource(source=c.source, title=c.title, anchor=c.anchor,
                                       score=c.score, snippet=c.snippet)
                       for c in source.citations]))
    elif isinstance(source, Progress):
        out.progress.CopyFrom(pb.Progress(stage=source.stage, loaded=source.loaded,
                                          total=source.total, message=source.message))
    elif isinstance(source, Result):
        out.result.data.update(source.to_wire()["data"])  # plain JSON values
    elif isinstance(source, Error):
        out.error.CopyFrom(pb.Error(code=error_enum(source.code), message=source.message))
    elif isinstance(source, Done):
        out.done.SetInParent()
    return out
