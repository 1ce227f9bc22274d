"""The one error layer: every failure that reaches a caller is an `AgentError` with a code.

Codes are part of the protocol (see `protocol.py`); a new failure mode gets a new code here,
never a bare exception string on the wire.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable, documented error codes sent in `error` events."""

    BAD_JSON = "bad_json"
    """The message is not a JSON object."""
    BAD_MESSAGE = "bad_message"
    """A field is missing, has the wrong type, or the message kind is unknown."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """The message's `v` is not a protocol version this side speaks."""
    TOO_LARGE = "too_large"
    """A message or document is over the configured size limit."""
    NOT_READY = "not_ready"
    """The runtime, model or knowledge base needed for the request is not loaded yet."""
    CANCELLED = "cancelled"
    """The caller cancelled the request."""
    DEADLINE = "deadline_exceeded"
    """The request ran past its deadline."""
    OVERLOADED = "overloaded"
    """A bounded queue is full; try again later."""
    INFERENCE = "inference_failed"
    """The model runtime failed on this input."""
    STORAGE = "storage_failed"
    """The store could not read or write (quota, corruption, closed database)."""
    TOOL_ARGS = "tool_bad_arguments"
    """A tool was called with arguments that do not match its schema."""
    TOOL_FAILED = "tool_failed"
    """A tool raised while running."""
    TOOLS_LOAD = "tools_load_failed"
    """A site owner's tools file did not load (syntax error, exception, bad decorator use);
    the message names the file and line. The agent keeps the tools it had."""
    CONFLICT = "conflict"
    """A write lost a race: another process changed the same record first. Retried inside
    durable jobs; a client seeing it may simply repeat the request."""
    NOT_FOUND = "not_found"
    """A named knowledge base, document, job or tool does not exist."""
    UPSTREAM = "upstream_failed"
    """The server or LLM upstream failed or is unreachable."""
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    """The LLM upstream failed repeatedly; the circuit breaker holds calls off for a while."""
    UNAUTHORIZED = "unauthorized"
    """The server needs a valid bearer token."""
    FORBIDDEN_ORIGIN = "forbidden_origin"
    """The browser origin is not on the server's allowlist."""
    FORBIDDEN = "forbidden"
    """This client may read the named data but not change it: a knowledge base the server's
    operator shares with every client (`--shared-kb`) takes no ingestion and no deletion."""
    RATE_LIMITED = "rate_limited"
    """This client sent more requests than its rate limit allows; retry later."""
    INTERNAL = "internal"
    """A bug: an exception nobody mapped to a code. Logged with its traceback."""


class AgentError(Exception):
    """A failure with a protocol error code and a message fit to show a user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"AgentError({self.code.value!r}, {self.message!r})"


class UpstreamError(AgentError):
    """An upstream call failed; `retryable` says whether trying again may help.

    Retryable: connection failures, timeouts before the first byte, 408/425/429 and 5xx.
    Not retryable: other 4xx (a bad key or request will not improve by repetition).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True
                 ) -> None:
        super().__init__(ErrorCode.UPSTREAM, message)
        self.status = status
        self.retryable = retryable


RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
