"""The server's HTTP API as documented: error and readiness bodies, and an OpenAPI document
that says what the server really does (checked by schemathesis in tests/server/test_openapi.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ...errors import ErrorCode
from .config import ServerConfig


class ErrorDetail(BaseModel):
    """What failed: a protocol error code (`errors.py`), a message fit to show a user, and
    OpenAI's error `type` for the status (so OpenAI clients read it as their own)."""

    code: ErrorCode
    message: str
    type: str


class ErrorBody(BaseModel):
    """The body of every HTTP error response."""

    error: ErrorDetail


class Readiness(BaseModel):
    """`GET /readyz`: before the core has started, only `ready` (false)."""

    ready: bool
    model: bool | None = None
    store: str | None = None
    llm: str | None = None
    """The LLM circuit breaker's state, null without an LLM."""
    stalled: list[dict[str, Any]] | None = None
    """The pipeline stages stuck with work waiting."""


ERROR_DOCS = {
    400: "`bad_json`: the body is not JSON (or nests too deeply); `bad_message`: it does not "
         "fit the schema",
    401: "`unauthorized`: the server runs with `--tokens` and no valid bearer token was sent",
    403: "`forbidden_origin`: the `Origin` header is not on `--allow-origin`",
    404: "`not_found`: the model (knowledge base) named does not exist",
    413: "`too_large`: the body is over `--max-message-bytes`",
    429: "`rate_limited`: this client is over its rate limit (`--rate`, `--burst`)",
    500: "`internal`: an unexpected failure (a bug), logged with its traceback",
    503: "`not_ready`: the server is starting or stopping",
}


SSE_EVENT = {
    "type": "object", "required": ["event", "data"],
    "description": "one Server-Sent Event (OpenAPI 3.1: the schema of each event)",
    "properties": {
        "event": {"type": "string", "description": "the protocol event's `type`"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "the protocol event, as in `/v1/protocol.schema.json`"}}}


CHAT_SSE_EVENT = {
    "type": "object", "required": ["data"],
    "description": "one Server-Sent Event: a `chat.completion.chunk` (the last with the "
                   "`wasmagent` extension), an `error`, or `[DONE]` at the end",
    "properties": {"data": {"type": "string"}}}


def errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each with the `ErrorBody` shape."""
    return {status: {"model": ErrorBody, "description": ERROR_DOCS[status]}
            for status in statuses}


ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def honest_openapi(schema: dict[str, Any], config: ServerConfig | None) -> None:
    """Make FastAPI's document match the server: no 422 (validation errors are 400
    `bad_message`, documented per route) nor its schemas; `ErrorBody` responses as JSON (FastAPI
    gives them the route's media type: `text/plain` for /metrics); with `--tokens`, the bearer
    scheme on the routes that take one (those documenting 401)."""
    secured = config is not None and config.tokens.enabled
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation["responses"]
            responses.pop("422", None)
            for response in responses.values():
                if any(media.get("schema") == ERROR_REF
                       for media in response.get("content", {}).values()):
                    response["content"] = {"application/json": {"schema": ERROR_REF}}
            if secured and "401" in responses:
                operation["security"] = [{"bearer": []}]
    components = schema.setdefault("components", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    if secured:
        components["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "a token made by `python -m wasmagent token NAME --tokens FILE`"}}
