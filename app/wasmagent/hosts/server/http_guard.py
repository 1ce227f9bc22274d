"""The guard in front of the server's HTTP routes: what a request passes before FastAPI sees it.

- A request with a body is checked for origin and token, and its declared `Content-Length`,
  before one byte of it is read; the body is then read only up to `max_message_bytes`
  (chunked bodies too): `too_large` (413) past that. An unauthenticated 300 MB POST used to be
  read whole by FastAPI, growing the process by about 1 GB, before its 401.
- CORS: preflights from `--allow-origin` origins are answered (POST/GET with the token and a
  JSON body); their responses carry `Access-Control-Allow-Origin`; other origins get
  `forbidden_origin`.
- Refusals have the documented `{"error": {"code", "message"}}` body and status (`STATUS`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ...errors import AgentError, ErrorCode
from .config import ServerConfig
from .security import bearer
from .sessions import Receive, Scope, Send, header

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATUS = {ErrorCode.UNAUTHORIZED: 401, ErrorCode.FORBIDDEN_ORIGIN: 403,
          ErrorCode.FORBIDDEN: 403, ErrorCode.RATE_LIMITED: 429, ErrorCode.TOO_LARGE: 413,
          ErrorCode.NOT_READY: 503,
          ErrorCode.BAD_MESSAGE: 400, ErrorCode.BAD_JSON: 400, ErrorCode.NOT_FOUND: 404,
          ErrorCode.INTERNAL: 500}
"""The HTTP status of each code an HTTP route can fail with (500 for any other)."""
CORS_METHODS = b"GET, POST"
CORS_HEADERS = b"authorization, content-type"
CORS_MAX_AGE_S = b"600"


async def guard_http(config: ServerConfig, scope: Scope, receive: Receive, send: Send,
                     app: ASGIApp) -> None:
    """Pass one HTTP request to `app` once it has passed the guards (module docstring). A
    refused body is not read (further): uvicorn discards what arrives after the response,
    and the connection stays usable."""
    origin = header(scope, b"origin")
    if origin is not None:
        if scope["method"] == "OPTIONS" and header(
                scope, b"access-control-request-method") is not None:
            await _preflight(config, origin, send)
            return
        send = _with_cors(config, origin, send)
    if not _has_body(scope):
        await app(scope, receive, send)
        return
    try:
        _guard_body(config, scope, origin)
        body = await _read_body(receive, config.max_message_bytes)
    except AgentError as exc:
        await _send_error(send, exc)
        return
    if body is None:
        return  # the client left while sending
    replayed = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # (http.disconnect, for a streaming response)

    await app(scope, replay, send)


def _has_body(scope: Scope) -> bool:
    length = header(scope, b"content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return header(scope, b"transfer-encoding") is not None


def _guard_body(config: ServerConfig, scope: Scope, origin: str | None) -> None:
    """Origin, token and declared size of a request with a body, before reading it."""
    config.origins.check(origin)
    if config.tokens.enabled:
        config.tokens.client(bearer(header(scope, b"authorization")))
    length = header(scope, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > config.max_message_bytes:
        raise _too_large(config.max_message_bytes)


def _too_large(limit: int) -> AgentError:
    return AgentError(ErrorCode.TOO_LARGE, f"the request body is over {limit} bytes")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or `too_large` as soon as more than `limit` bytes have arrived (a
    chunked body declares no length); None if the client disconnected."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return bytes(body)


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               413: "invalid_request_error", 429: "rate_limit_error"}
"""OpenAI's error `type` for each status, so OpenAI clients of `/v1/chat/completions` read
our errors as their own (5xx: `server_error`)."""


def error_json(code: ErrorCode, message: str, status: int | None = None) -> dict[str, Any]:
    """The body of every HTTP error response: `{"error": {"code", "message", "type"}}` —
    OpenAI's error shape, with a protocol code; `type` follows the response's `status`
    (by default the code's)."""
    kind = ERROR_TYPES.get(status or STATUS.get(code, 500), "server_error")
    return {"error": {"code": code.value, "message": message, "type": kind}}


async def _send_error(send: Send, exc: AgentError, headers: list[tuple[bytes, bytes]] | None = None
                      ) -> None:
    """The `{"error": {"code", "message"}}` response of a refusal, sent as plain ASGI."""
    body = json.dumps(error_json(exc.code, exc.message)).encode()
    extra = [(b"www-authenticate", b"Bearer")] if exc.code is ErrorCode.UNAUTHORIZED else []
    await send({"type": "http.response.start", "status": STATUS.get(exc.code, 500),
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            *extra, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _origin_refusal(config: ServerConfig, origin: str) -> AgentError | None:
    try:
        config.origins.check(origin)
    except AgentError as exc:
        return exc
    return None


async def _preflight(config: ServerConfig, origin: str, send: Send) -> None:
    """A CORS preflight: allowed origins may POST (and GET) with the token and a JSON body;
    others get `forbidden_origin`."""
    refusal = _origin_refusal(config, origin)
    if refusal is not None:
        await _send_error(send, refusal, [(b"vary", b"Origin")])
        return
    await send({"type": "http.response.start", "status": 204, "headers": [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", CORS_METHODS),
        (b"access-control-allow-headers", CORS_HEADERS),
        (b"access-control-max-age", CORS_MAX_AGE_S),
        (b"vary", b"Origin")]})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(config: ServerConfig, origin: str, send: Send) -> Send:
    """`send` adding `Access-Control-Allow-Origin` (and `Vary: Origin`) to the response when
    `origin` is allowed; `send` itself when it is not (the route refuses it, or a browser
    keeps the response from the page)."""
    if _origin_refusal(config, origin) is not None:
        return send
    cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]

    async def send_with_cors(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *cors]}
        await send(message)

    return send_with_cors
