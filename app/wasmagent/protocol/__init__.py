"""The wire protocol: every request and event kind, their validation and their JSON Schema.

One versioned schema serves postMessage (page <-> worker) and WebSocket (browser <-> server).
`messages` holds the dataclasses (the fields *are* the schema), `validation` turns wire input
into a request or a typed error, `schema` publishes the JSON Schema and the generated
`protocol.js`, `widget` the widget's port messages.

Every request is answered by zero or more non-terminal events (`progress`, `delta`,
`citation`, `answer`, `result`) and then exactly one terminal event: `done` or `error`.
"""

from typing import TYPE_CHECKING, Any

from .messages import (
    ASK_MODES,
    EVENT_TYPES,
    MAX_DOCUMENTS,
    MAX_ID,
    MAX_MESSAGE_BYTES,
    MAX_PASSAGE,
    MAX_PASSAGES,
    MAX_QUESTION,
    MAX_TOOLS_CODE,
    MAX_TURNS,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    SUBPROTOCOL,
    TERMINAL_TYPES,
    Answer,
    Ask,
    AskMode,
    Cancel,
    Citation,
    DataClear,
    Delta,
    DocumentIn,
    Done,
    Embed,
    Error,
    Event,
    HistoryList,
    Ingest,
    JobsCancel,
    JobsGet,
    JobsList,
    JobsWatch,
    KbDelete,
    KbList,
    KbPassage,
    LlmChat,
    Message,
    PassageIn,
    Progress,
    Request,
    Result,
    ServerConnect,
    Source,
    Status,
    ToolCalled,
    ToolReturned,
    ToolsLoad,
    TurnIn,
    is_terminal,
    limits,
)
from .validation import decode, message_bytes, parse_request, peek_id

if TYPE_CHECKING:
    from .schema import js_module, json_schema

__all__ = [
    "ASK_MODES", "EVENT_TYPES", "MAX_DOCUMENTS", "MAX_ID", "MAX_MESSAGE_BYTES", "MAX_PASSAGE",
    "MAX_PASSAGES", "MAX_QUESTION", "MAX_TOOLS_CODE", "MAX_TURNS", "PROTOCOL_VERSION",
    "REQUEST_TYPES", "SUBPROTOCOL", "TERMINAL_TYPES", "Answer", "Ask", "AskMode", "Cancel",
    "Citation", "DataClear", "Delta", "DocumentIn", "Done", "Embed", "Error", "Event",
    "HistoryList", "Ingest", "JobsCancel", "JobsGet", "JobsList", "JobsWatch", "KbDelete",
    "KbList", "KbPassage", "LlmChat", "Message", "PassageIn", "Progress", "Request", "Result",
    "ServerConnect", "Source", "Status", "ToolCalled", "ToolReturned", "ToolsLoad", "TurnIn",
    "decode", "is_terminal", "js_module", "json_schema", "limits", "message_bytes",
    "parse_request", "peek_id",
]


def __getattr__(name: str) -> Any:
    # The schema (and the widget's messages it includes) is for publishing and for the server's
    # HTTP side: a process that only asks or ingests does not build it (~7 ms of imports).
    if name in ("js_module", "json_schema"):
        from . import schema

        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
