"""Every message of the wire protocol: requests, events and the limits they carry.

Requests and events are small frozen dataclasses; the dataclass fields *are* the schema, so
validation (`validation.parse_request`), serialisation (`to_wire`/`to_json`) and the published
JSON Schema and JS module (`schema`) cannot drift apart. Nothing outside this package writes a
message by hand: build the dataclass and serialise it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from ..errors import AgentError

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_ID = 128
MAX_QUESTION = 4000
MAX_DOCUMENTS = 1000
MAX_PASSAGE = 8000
MAX_PASSAGES = 20
MAX_TURNS = 50
MAX_CHAT_MESSAGES = 200
MAX_CHAT_TOOLS = 64
AskMode = Literal["auto", "local", "llm", "extractive"]
ASK_MODES: tuple[str, ...] = get_args(AskMode)
MAX_TOOLS_CODE = 1024 * 1024
SUBPROTOCOL = f"wasmagent.v{PROTOCOL_VERSION}"
"""The WebSocket subprotocol that names this protocol version."""


def limits(cls: type[Any], name: str) -> dict[str, Any]:
    """The limits a message field declares (for adapters that restate a message in another
    schema language, e.g. the server's HTTP bodies): `max_len`, `min_len`, `lo`, `hi`,
    `choices`, and `default` when it has one."""
    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    found = dict(spec.metadata or _limit())
    if spec.default is not dataclasses.MISSING:
        found["default"] = spec.default
    return found


def _limit(*, max_len: int | None = None, min_len: int = 0, lo: float | None = None,
           hi: float | None = None, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"max_len": max_len, "min_len": min_len, "lo": lo, "hi": hi, "choices": choices}


class Message:
    """What every request and event shares: a wire form with `v` and `type` first."""

    __slots__ = ()
    TYPE: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "type": self.TYPE, **_fields(self)}

    def to_json(self) -> str:
        """Compact JSON that UTF-8 can carry: a string echoed from a client (a request id)
        may hold a lone surrogate, which only an ASCII escape can transport."""
        text = json.dumps(self.to_wire(), ensure_ascii=False, separators=(",", ":"))
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:
                return json.dumps(self.to_wire(), separators=(",", ":"))
        return text


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


@dataclass(frozen=True, slots=True)
class TurnIn:
    """An earlier exchange of the conversation, given by the caller (an OpenAI-style client
    sends the whole conversation with every question)."""

    question: str = field(metadata=_limit(max_len=MAX_QUESTION))
    answer: str = field(metadata=_limit(max_len=MAX_PASSAGE))


# ---- requests -------------------------------------------------------------------------------
# A request's wire form leaves out the fields that still hold their defaults.

@dataclass(frozen=True, slots=True)
class Status(Message):
    """Ask for runtime status: versions, readiness, metrics."""

    TYPE: ClassVar[str] = "status"
    id: str


@dataclass(frozen=True, slots=True)
class Ask(Message):
    """Ask a question; answered with `delta`/`citation` events and one `answer`.

    `mode`: `extractive` always answers extractively from the knowledge base; `local` has the
    browser's local model write it when installed and loaded, else answers extractively; `llm`
    has the LLM upstream write the answer from the top passages (or from `passages`, when
    given) and fails with a typed error if it cannot; `auto` uses the server's LLM when one is
    available, else the local model, and falls back to the extractive answer, saying so, when
    it fails (wasmagent.llm.choice)."""

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
    history: list[TurnIn] | None = field(default=None, metadata=_limit(max_len=MAX_TURNS))
    """Earlier turns the caller holds itself, oldest first: the LLM sees them instead of a
    stored conversation's (a stateless client's conversation)."""


@dataclass(frozen=True, slots=True)
class Embed(Message):
    """Embed texts with the sentence model; answered with a `result` holding the vectors."""

    TYPE: ClassVar[str] = "embed"
    id: str
    texts: list[str] = field(metadata=_limit(min_len=1, max_len=256))


@dataclass(frozen=True, slots=True)
class Ingest(Message):
    """Add documents to a knowledge base as a durable job: `progress` events, then a result
    naming the `job`. The job survives a page reload or server restart and resumes where it
    stopped (follow it again with `jobs.watch`). Cancelling this request cancels the job; a
    dropped connection does not."""

    TYPE: ClassVar[str] = "ingest"
    id: str
    kb: str = field(metadata=_limit(min_len=1, max_len=128))
    documents: list[DocumentIn] = field(metadata=_limit(min_len=1, max_len=MAX_DOCUMENTS))


@dataclass(frozen=True, slots=True)
class Cancel(Message):
    """Cancel the request whose id is `target`; a finished or unknown target is not an error."""

    TYPE: ClassVar[str] = "cancel"
    id: str
    target: str = field(metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class KbList(Message):
    """List the knowledge bases."""

    TYPE: ClassVar[str] = "kb.list"
    id: str


@dataclass(frozen=True, slots=True)
class KbDelete(Message):
    """Delete a knowledge base and everything stored for it."""

    TYPE: ClassVar[str] = "kb.delete"
    id: str
    kb: str = field(metadata=_limit(min_len=1, max_len=128))


@dataclass(frozen=True, slots=True)
class KbPassage(Message):
    """The full passage(s) behind a citation: every chunk of `source` under `anchor`."""

    TYPE: ClassVar[str] = "kb.passage"
    id: str
    kb: str = field(metadata=_limit(min_len=1, max_len=128))
    source: str = field(metadata=_limit(min_len=1, max_len=1024))
    anchor: str = field(default="", metadata=_limit(max_len=1024))


@dataclass(frozen=True, slots=True)
class HistoryList(Message):
    """The most recent questions and answers, oldest first."""

    TYPE: ClassVar[str] = "history.list"
    id: str
    limit: int = field(default=50, metadata=_limit(lo=1, hi=500))
    conversation: str | None = field(default=None, metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class JobsList(Message):
    """Durable jobs (ingestions), newest first, each with its status, progress, attempts and
    last error."""

    TYPE: ClassVar[str] = "jobs.list"
    id: str
    limit: int = field(default=50, metadata=_limit(lo=1, hi=500))


@dataclass(frozen=True, slots=True)
class JobsGet(Message):
    """One durable job's record."""

    TYPE: ClassVar[str] = "jobs.get"
    id: str
    job: str = field(metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class JobsCancel(Message):
    """Cancel a durable job wherever it runs; what its finished steps stored is kept."""

    TYPE: ClassVar[str] = "jobs.cancel"
    id: str
    job: str = field(metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class JobsWatch(Message):
    """Follow a durable job (e.g. one resumed after a reload): `progress` events as it
    advances, then its record as the `result`, or the job's own error if it failed."""

    TYPE: ClassVar[str] = "jobs.watch"
    id: str
    job: str = field(metadata=_limit(min_len=1, max_len=MAX_ID))


@dataclass(frozen=True, slots=True)
class ServerConnect(Message):
    """Browser only: connect the agent to an agent server's WebSocket (`ws://` or `wss://`),
    with an optional bearer token; a null `url` disconnects. Answered with the link's state."""

    TYPE: ClassVar[str] = "server.connect"
    id: str
    url: str | None = field(default=None, metadata=_limit(min_len=6, max_len=2048))
    token: str | None = field(default=None, metadata=_limit(min_len=1, max_len=512))


@dataclass(frozen=True, slots=True)
class LlmChat(Message):
    """Browser -> server: one turn of the server's LLM, offered the browser's tools. The
    server only relays: the model's text comes back as `delta` events and its tool calls as
    `tool_call` events; the browser runs the tools (a site owner's included: the server never
    executes them) and sends the results in the next turn's `messages` (Chat Completions
    messages: system, user, assistant with `tool_calls`, tool results)."""

    TYPE: ClassVar[str] = "llm.chat"
    id: str
    messages: list[dict[str, Any]] = field(metadata=_limit(min_len=1, max_len=MAX_CHAT_MESSAGES))
    tools: list[dict[str, Any]] | None = field(default=None,
                                               metadata=_limit(max_len=MAX_CHAT_TOOLS))


@dataclass(frozen=True, slots=True)
class DataClear(Message):
    """Delete every stored knowledge base and the conversation history."""

    TYPE: ClassVar[str] = "data.clear"
    id: str


@dataclass(frozen=True, slots=True)
class ToolsLoad(Message):
    """Load a site owner's tools and routing rules from Python source (replaces an earlier
    load of the same `source`); answered with a `result` naming the tools, or an error
    `tools_load_failed` whose message gives the file, line and exception."""

    TYPE: ClassVar[str] = "tools.load"
    id: str
    source: str = field(metadata=_limit(min_len=1, max_len=1024))
    code: str = field(metadata=_limit(max_len=MAX_TOOLS_CODE))


Request = (Status | Ask | Embed | Ingest | Cancel | KbList | KbDelete | KbPassage | HistoryList
           | DataClear | ServerConnect | ToolsLoad | JobsList | JobsGet | JobsCancel | JobsWatch
           | LlmChat)
REQUEST_TYPES: dict[str, type[Any]] = {
    cls.TYPE: cls for cls in (Status, Ask, Embed, Ingest, Cancel, KbList, KbDelete, KbPassage,
                              HistoryList, DataClear, ServerConnect, ToolsLoad, JobsList,
                              JobsGet, JobsCancel, JobsWatch, LlmChat)
}

# ---- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event(Message):
    """Base of all events; `id` is the request id (or `null` for unattributable input).
    `TERMINAL` events (`done`, `error`) end their request: exactly one per request."""

    TERMINAL: ClassVar[bool] = False
    id: str | None

    def to_wire(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"v": PROTOCOL_VERSION, "type": self.TYPE, **_plain(body)}


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
class Source:
    """A passage an answer cites: where it is (`source`, `title`, `anchor`), how strongly it
    matched (`score`) and the words of it that back the answer (`snippet`). The one citation
    type from retrieval to the wire: `citation` events and an `answer`'s `citations`."""

    source: str
    title: str
    anchor: str
    score: float
    snippet: str


@dataclass(frozen=True, slots=True)
class Citation(Event):
    """A source backing the answer (a `Source`, streamed before the `answer`)."""

    TYPE: ClassVar[str] = "citation"
    source: str
    title: str
    anchor: str
    score: float
    snippet: str

    @classmethod
    def of(cls, request_id: str | None, cited: Source) -> Citation:
        return cls(request_id, cited.source, cited.title, cited.anchor, round(cited.score, 4),
                   cited.snippet)


@dataclass(frozen=True, slots=True)
class ToolCalled(Event):
    """A step of an agent answer: the model calls a tool, with `arguments` as it wrote them
    (JSON text); several calls of one `step` run at the same time."""

    TYPE: ClassVar[str] = "tool_call"
    call_id: str
    name: str
    arguments: str
    step: int


@dataclass(frozen=True, slots=True)
class ToolReturned(Event):
    """What a tool call gave back to the model: its result, or (`ok` false) why it failed."""

    TYPE: ClassVar[str] = "tool_result"
    call_id: str
    name: str
    ok: bool
    text: str
    ms: float


@dataclass(frozen=True, slots=True)
class Answer(Event):
    """The complete answer, sent after its deltas and citations."""

    TYPE: ClassVar[str] = "answer"
    text: str
    citations: list[Source]
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


EVENT_TYPES: tuple[type[Event], ...] = (Progress, Delta, Citation, ToolCalled, ToolReturned,
                                         Answer, Result, Error, Done)
TERMINAL_TYPES = frozenset(cls.TYPE for cls in EVENT_TYPES if cls.TERMINAL)


def is_terminal(event: Any) -> bool:
    """Whether a decoded wire event (a mapping) ends its request."""
    return isinstance(event, Mapping) and event.get("type") in TERMINAL_TYPES


def _fields(request: Any) -> dict[str, Any]:
    """A request's fields that differ from their defaults, as plain JSON values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(request):
        value = getattr(request, f.name)
        if f.default is dataclasses.MISSING or value != f.default:
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


