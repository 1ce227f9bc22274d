"""The wire protocol: every request and event kind, their validation and their JSON Schema.

One versioned schema serves postMessage (page <-> worker) and WebSocket (browser <-> server).
Requests and events are small frozen dataclasses; the dataclass fields *are* the schema, so
validation (`parse_request`), serialisation (`Event.to_wire`) and the published JSON Schema
(`json_schema`) cannot drift apart.

Contract of `parse_request(raw)`:
- returns a request dataclass whose fields have the declared types and satisfy their limits;
- raises `AgentError` with code `bad_json` (not a JSON object), `too_large` (over `max_bytes`
  bytes of UTF-8, by default `MAX_MESSAGE_BYTES`), `unsupported_version` (`v` is not
  `PROTOCOL_VERSION`) or `bad_message` (unknown `type`, missing/extra/mistyped field, limit
  broken), naming the offending field;
- raises nothing else: any other exception escaping it is a bug.

Every request is answered by zero or more non-terminal events (`progress`, `delta`,
`citation`, `answer`, `result`) and then exactly one terminal event: `done` or `error`.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from .errors import AgentError, ErrorCode

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_ID = 128
MAX_QUESTION = 4000
MAX_DOCUMENTS = 1000
MAX_PASSAGE = 8000
MAX_PASSAGES = 20
ASK_MODES = ("auto", "local", "llm")
MAX_TOOLS_CODE = 1024 * 1024


def _limit(*, max_len: int | None = None, min_len: int = 0, lo: float | None = None,
           hi: float | None = None, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"max_len": max_len, "min_len": min_len, "lo": lo, "hi": hi, "choices": choices}


@dataclass(frozen=True, slots=True)
class DocumentIn:
    """A document handed over for ingestion: its path or URL, raw text, and optional kind."""

    source: str = field(metadata=_limit(min_len=1, max_len=1024))
    text: str = field(metadata=_limit(max_len=MAX_MESSAGE_BYTES))
    kind: str | None = field(default=None, metadata=_limit(
        choices=("html", "markdown", "rst", "text")))


@dataclass(frozen=True, slots=True)
class PassageIn:
    """A passage the caller already retrieved, to ground an LLM answer (the browser sends its
    local top passages to the server this way)."""

    source: str = field(metadata=_limit(min_len=1, max_len=1024))
    title: str = field(metadata=_limit(max_len=1024))
    anchor: str = field(metadata=_limit(max_len=1024))
    text: str = field(metadata=_limit(min_len=1, max_len=MAX_PASSAGE))


# ---- requests -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Status:
    """Ask for runtime status: versions, readiness, metrics."""

    TYPE: ClassVar[str] = "status"
    id: str


@dataclass(frozen=True, slots=True)
class Ask:
    """Ask a question; answered with `delta`/`citation` events and one `answer`.

    `mode`: `local` answers extractively from the knowledge base; `llm` has the LLM upstream
    write the answer from the top passages (or from `passages`, when given) and fails with a
    typed error if it cannot; `auto` uses the LLM when one is available and falls back to the
    local answer, saying so, when it fails."""

    TYPE: ClassVar[str] = "ask"
    id: str
    text: str = field(metadata=_limit(min_len=1, max_len=MAX_QUESTION))
    kb: str | None = field(default=None, metadata=_limit(min_len=1, max_len=128))
    top_k: int = field(default=5, metadata=_limit(lo=1, hi=50))
    mode: str = field(default="auto", metadata=_limit(choices=ASK_MODES))
    passages: list[PassageIn] | None = field(default=None, metadata=_limit(max_len=MAX_PASSAGES))
    conversation: str | None = field(default=None, metadata=_limit(min_len=1, max_len=MAX_ID))
    """Continues this conversation: the LLM sees its earlier turns (from the shared store,
    whichever server process answered them) and the answer joins it."""


@dataclass(frozen=True, slots=True)
class Embed:
    """Embed texts with the sentence model; answered with a `result` holding the vectors."""

    TYPE: ClassVar[str] = "embed"
    id: str
    texts: list[str] = field(metadata=_limit(min_len=1, max_len=256))


@dataclass(frozen=True, slots=True)
class Ingest:
    """Add documents to a knowledge base as a durable job: `progress` events, then a result
    naming the `job`. The job survives a page reload or server restart and resumes where it
    stopped (follow it again with `jobs.watch`). Cancelling this request cancels the job; a
    dropped connection does not."""

    TYPE: ClassVar[str] = "ingest"
    id: str
    kb: str = field(metadata=_limit(min_len=1, max_len=128))
    documents: list[DocumentIn] = field(metadata=_limit(min_len=1, max_len=MAX_DOCUMENTS))


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the request whose id is `target`; a finished or unknown target is not an error."""

    TYPE: ClassVar[str] = "cancel"
    id: str
    target: str = field(metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class KbList:
    """List the knowledge bases."""

    TYPE: ClassVar[str] = "kb.list"
    id: str


@dataclass(frozen=True, slots=True)
class KbDelete:
    """Delete a knowledge base and everything stored for it."""

    TYPE: ClassVar[str] = "kb.delete"
    id: str
    kb: str = field(metadata=_limit(min_len=1, max_len=128))


@dataclass(frozen=True, slots=True)
class KbPassage:
    """The full passage(s) behind a citation: every chunk of `source` under `anchor`."""

    TYPE: ClassVar[str] = "kb.passage"
    id: str
    kb: str = field(metadata=_limit(min_len=1, max_len=128))
    source: str = field(metadata=_limit(min_len=1, max_len=1024))
    anchor: str = field(default="", metadata=_limit(max_len=1024))


@dataclass(frozen=True, slots=True)
class HistoryList:
    """The most recent questions and answers, oldest first."""

    TYPE: ClassVar[str] = "history.list"
    id: str
    limit: int = field(default=50, metadata=_limit(lo=1, hi=500))
    conversation: str | None = field(default=None, metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class JobsList:
    """Durable jobs (ingestions), newest first, each with its status, progress, attempts and
    last error."""

    TYPE: ClassVar[str] = "jobs.list"
    id: str
    limit: int = field(default=50, metadata=_limit(lo=1, hi=500))


@dataclass(frozen=True, slots=True)
class JobsGet:
    """One durable job's record."""

    TYPE: ClassVar[str] = "jobs.get"
    id: str
    job: str = field(metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class JobsCancel:
    """Cancel a durable job wherever it runs; what its finished steps stored is kept."""

    TYPE: ClassVar[str] = "jobs.cancel"
    id: str
    job: str = field(metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class JobsWatch:
    """Follow a durable job (e.g. one resumed after a reload): `progress` events as it
    advances, then its record as the `result`, or the job's own error if it failed."""

    TYPE: ClassVar[str] = "jobs.watch"
    id: str
    job: str = field(metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class ServerConnect:
    """Browser only: connect the agent to an agent server's WebSocket (`ws://` or `wss://`),
    with an optional bearer token; a null `url` disconnects. Answered with the link's state."""

    TYPE: ClassVar[str] = "server.connect"
    id: str
    url: str | None = field(default=None, metadata=_limit(min_len=6, max_len=2048))
    token: str | None = field(default=None, metadata=_limit(min_len=1, max_len=512))


@dataclass(frozen=True, slots=True)
class DataClear:
    """Delete every stored knowledge base and the conversation history."""

    TYPE: ClassVar[str] = "data.clear"
    id: str


@dataclass(frozen=True, slots=True)
class ToolsLoad:
    """Load a site owner's tools and routing rules from Python source (replaces an earlier
    load of the same `source`); answered with a `result` naming the tools, or an error
    `tools_load_failed` whose message gives the file, line and exception."""

    TYPE: ClassVar[str] = "tools.load"
    id: str
    source: str = field(metadata=_limit(min_len=1, max_len=1024))
    code: str = field(metadata=_limit(max_len=MAX_TOOLS_CODE))


Request = (Status | Ask | Embed | Ingest | Cancel | KbList | KbDelete | KbPassage | HistoryList
           | DataClear | ServerConnect | ToolsLoad | JobsList | JobsGet | JobsCancel | JobsWatch)
REQUEST_TYPES: dict[str, type[Any]] = {
    cls.TYPE: cls for cls in (Status, Ask, Embed, Ingest, Cancel, KbList, KbDelete, KbPassage,
                              HistoryList, DataClear, ServerConnect, ToolsLoad, JobsList,
                              JobsGet, JobsCancel, JobsWatch)
}

# ---- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events; `id` is the request id (or `null` for unattributable input)."""

    TYPE: ClassVar[str] = ""
    TERMINAL: ClassVar[bool] = False
    id: str | None

    def to_wire(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"v": PROTOCOL_VERSION, "type": self.TYPE, **_plain(body)}

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Progress(Event):
    """Work under way: `stage` names it; `loaded`/`total` count bytes or items when known."""

    TYPE: ClassVar[str] = "progress"
    stage: str
    loaded: int | None = None
    total: int | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Delta(Event):
    """A piece of answer text, in order; concatenated deltas equal the answer's text."""

    TYPE: ClassVar[str] = "delta"
    text: str


@dataclass(frozen=True, slots=True)
class Citation(Event):
    """A source backing the answer."""

    TYPE: ClassVar[str] = "citation"
    source: str
    title: str
    anchor: str
    score: float
    snippet: str


@dataclass(frozen=True, slots=True)
class Answer(Event):
    """The complete answer, sent after its deltas and citations."""

    TYPE: ClassVar[str] = "answer"
    text: str
    citations: list[dict[str, Any]]
    confident: bool
    route: str
    timings_ms: dict[str, float]


@dataclass(frozen=True, slots=True)
class Result(Event):
    """The result of a request that is not a question (status, embed, kb.list...)."""

    TYPE: ClassVar[str] = "result"
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Error(Event):
    """Terminal failure of a request, with a stable `code` from `ErrorCode`."""

    TYPE: ClassVar[str] = "error"
    TERMINAL: ClassVar[bool] = True
    code: str
    message: str

    @classmethod
    def from_exc(cls, request_id: str | None, exc: AgentError) -> Error:
        return cls(request_id, exc.code.value, exc.message)


@dataclass(frozen=True, slots=True)
class Done(Event):
    """Terminal success of a request."""

    TYPE: ClassVar[str] = "done"
    TERMINAL: ClassVar[bool] = True


EVENT_TYPES: tuple[type[Event], ...] = (Progress, Delta, Citation, Answer, Result, Error, Done)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# ---- validation -----------------------------------------------------------------------------


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


def _build(cls: type[Any], body: Mapping[str, Any], path: str) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
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

# ---- JSON Schema ----------------------------------------------------------------------------

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _schema_of(hint: Any, limit: Mapping[str, Any]) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = next(a for a in get_args(hint) if a is not type(None))
        return {"anyOf": [_schema_of(inner, limit), {"type": "null"}]}
    if origin is list:
        schema: dict[str, Any] = {"type": "array", "items": _schema_of(get_args(hint)[0], _limit())}
        schema["minItems"] = limit["min_len"]
        if limit["max_len"]:
            schema["maxItems"] = limit["max_len"]
        return schema
    if origin is dict:
        return {"type": "object"}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _object_schema(hint)
    schema = {"type": _JSON_TYPES[hint]}
    if hint is str:
        schema["minLength"] = limit["min_len"]
        if limit["max_len"]:
            schema["maxLength"] = limit["max_len"]
        if limit["choices"]:
            schema["enum"] = list(limit["choices"])
    if limit["lo"] is not None:
        schema["minimum"] = limit["lo"]
    if limit["hi"] is not None:
        schema["maximum"] = limit["hi"]
    return schema


def _object_schema(cls: type[Any], kind: str | None = None) -> dict[str, Any]:
    hints = get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    if kind is not None:
        props["v"] = {"const": PROTOCOL_VERSION}
        props["type"] = {"const": kind}
        required += ["v", "type"]
    for f in dataclasses.fields(cls):
        props[f.name] = _schema_of(hints[f.name], f.metadata or _limit())
        if f.default is dataclasses.MISSING:
            required.append(f.name)
    schema = {"type": "object", "properties": props, "required": required,
              "additionalProperties": False}
    if cls.__doc__:
        schema["description"] = cls.__doc__.strip().splitlines()[0]
    return schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every request and event, published with the app."""
    requests = {cls.TYPE: _object_schema(cls, cls.TYPE) for cls in REQUEST_TYPES.values()}
    events = {cls.TYPE: _object_schema(cls, cls.TYPE) for cls in EVENT_TYPES}
    for event in events.values():
        event["properties"]["id"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    events["error"]["properties"]["code"]["enum"] = [c.value for c in ErrorCode]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"wasmagent protocol v{PROTOCOL_VERSION}",
        "$defs": {"requests": requests, "events": events},
        "oneOf": [{"$ref": f"#/$defs/requests/{k}"} for k in requests]
        + [{"$ref": f"#/$defs/events/{k}"} for k in events],
    }
