"""Validation of incoming wire messages: raw text, bytes or a decoded mapping -> a request.

Contract of `parse_request(raw)`:
- returns a request dataclass whose fields have the declared types and satisfy their limits;
- raises `AgentError` with code `bad_json` (not a JSON object), `too_large` (over `max_bytes`
  bytes of UTF-8, by default `MAX_MESSAGE_BYTES`), `unsupported_version` (`v` is not
  `PROTOCOL_VERSION`) or `bad_message` (unknown `type`, missing/extra/mistyped field, limit
  broken), naming the offending field;
- raises nothing else: any other exception escaping it is a bug.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin, get_type_hints

from ..errors import AgentError, ErrorCode
from .messages import MAX_ID, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, REQUEST_TYPES, Request, _limit


def peek_id(raw: object) -> str | None:
    """The request id of a message if it has a usable one, for attributing errors."""
    if isinstance(raw, Mapping):
        rid = raw.get("id")
        if isinstance(rid, str) and 0 < len(rid) <= MAX_ID:
            return rid
    return None


def message_bytes(raw: str | bytes) -> int:
    """The size of a wire message in bytes: text counts as the UTF-8 that carries it (lone
    surrogates included, which a JSON string may hold)."""
    if isinstance(raw, bytes) or raw.isascii():
        return len(raw)
    return len(raw.encode("utf-8", "surrogatepass"))


def decode(raw: str | bytes | Mapping[str, Any], max_bytes: int = MAX_MESSAGE_BYTES
           ) -> Mapping[str, Any]:
    """Turn wire input into a JSON object, raising `bad_json` or `too_large` (over `max_bytes`
    bytes; a mapping is already decoded and not measured)."""
    if isinstance(raw, Mapping):
        return raw
    # a character takes 1 to 4 bytes: only a length in between needs the exact count
    if len(raw) > max_bytes or (len(raw) * 4 > max_bytes and message_bytes(raw) > max_bytes):
        raise AgentError(ErrorCode.TOO_LARGE, f"message is over {max_bytes} bytes")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AgentError(ErrorCode.BAD_JSON, f"message is not valid JSON: {exc}") from None
    except RecursionError:
        # `[[[[...` a few thousand deep: json's C scanner gives up with RecursionError, which
        # escaped `Agent.submit` and closed the server's WebSocket with 1011.
        raise AgentError(ErrorCode.BAD_JSON, "message is nested too deeply") from None
    if not isinstance(value, dict):
        raise AgentError(ErrorCode.BAD_JSON, "message must be a JSON object")
    return value


def parse_request(raw: str | bytes | Mapping[str, Any], *, max_bytes: int = MAX_MESSAGE_BYTES
                  ) -> Request:
    """Validate one incoming message; see the module docstring for the contract."""
    message = decode(raw, max_bytes)
    version = message.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise AgentError(ErrorCode.UNSUPPORTED_VERSION,
                         f"protocol version {version!r} is not supported; use {PROTOCOL_VERSION}")
    kind = message.get("type")
    cls = REQUEST_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted(REQUEST_TYPES))
        raise AgentError(ErrorCode.BAD_MESSAGE,
                         f"unknown message type {kind!r}; expected one of {known}")
    body = {k: v for k, v in message.items() if k not in ("v", "type")}
    if "id" not in body:
        raise AgentError(ErrorCode.BAD_MESSAGE, "field 'id' is required")
    _check(body["id"], str, "id", _limit(min_len=1, max_len=MAX_ID))
    result: Request = _build(cls, body, "")
    return result


_SHAPES: dict[type[Any], tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]] = {}


def _shape(cls: type[Any]) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    # Once per class: `get_type_hints` evaluates every (string) annotation on each call, which
    # was ~8% of the server's CPU per answer under load.
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}
    return shape


def _build(cls: type[Any], body: Mapping[str, Any], path: str) -> Any:
    hints, fields = _shape(cls)
    extra = sorted(set(body) - set(fields))
    if extra:
        raise AgentError(ErrorCode.BAD_MESSAGE, f"unknown field {path}{extra[0]!r}")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        where = f"{path}{name}"
        if name not in body:
            if spec.default is dataclasses.MISSING:
                raise AgentError(ErrorCode.BAD_MESSAGE, f"field {where!r} is required")
            continue
        values[name] = _check(body[name], hints[name], where, spec.metadata or _limit())
    return cls(**values)


def _check(value: Any, hint: Any, where: str, limit: Mapping[str, Any]) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(hint):
            return None
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return _check(value, inner, where, limit)
    if origin is list:
        return _check_list(value, get_args(hint)[0], where, limit)
    if origin is dict:
        # A JSON object passed through as it is (a Chat Completions message, a tool's
        # schema): its own receiver checks what it needs; here only its type.
        if not isinstance(value, Mapping):
            raise AgentError(ErrorCode.BAD_MESSAGE, f"field {where!r} must be an object")
        return dict(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise AgentError(ErrorCode.BAD_MESSAGE, f"field {where!r} must be an object")
        return _build(hint, value, f"{where}.")
    return _check_scalar(value, hint, where, limit)


def _check_list(value: Any, item: Any, where: str, limit: Mapping[str, Any]) -> list[Any]:
    if not isinstance(value, list):
        raise AgentError(ErrorCode.BAD_MESSAGE, f"field {where!r} must be an array")
    if not limit["min_len"] <= len(value) <= (limit["max_len"] or len(value)):
        raise AgentError(ErrorCode.BAD_MESSAGE,
                         f"field {where!r} must hold {limit['min_len']}..{limit['max_len']} items")
    item_limit = _limit(max_len=MAX_MESSAGE_BYTES) if item is str else _limit()
    return [_check(v, item, f"{where}[{i}]", item_limit) for i, v in enumerate(value)]


def _check_scalar(value: Any, hint: Any, where: str, limit: Mapping[str, Any]) -> Any:
    ok = isinstance(value, hint) and not (hint in (int, float) and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise AgentError(ErrorCode.BAD_MESSAGE, f"field {where!r} must be {_TYPE_NAMES[hint]}")
    if isinstance(value, str):
        if not limit["min_len"] <= len(value) <= (limit["max_len"] or len(value)):
            bounds = f"{limit['min_len']}..{limit['max_len']}"
            raise AgentError(ErrorCode.BAD_MESSAGE, f"field {where!r} must be {bounds} characters")
        if limit["choices"] and value not in limit["choices"]:
            raise AgentError(ErrorCode.BAD_MESSAGE,
                             f"field {where!r} must be one of {', '.join(limit['choices'])}")
    elif (limit["lo"] is not None and value < limit["lo"]) or (
        limit["hi"] is not None and value > limit["hi"]
    ):
        raise AgentError(ErrorCode.BAD_MESSAGE,
                         f"field {where!r} must be between {limit['lo']} and {limit['hi']}")
    return value


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}

