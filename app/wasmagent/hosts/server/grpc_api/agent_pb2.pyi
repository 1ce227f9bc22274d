from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AskMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASK_MODE_UNSPECIFIED: _ClassVar[AskMode]
    ASK_MODE_AUTO: _ClassVar[AskMode]
    ASK_MODE_LOCAL: _ClassVar[AskMode]
    ASK_MODE_LLM: _ClassVar[AskMode]
    ASK_MODE_EXTRACTIVE: _ClassVar[AskMode]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_BAD_JSON: _ClassVar[ErrorCode]
    ERROR_CODE_BAD_MESSAGE: _ClassVar[ErrorCode]
    ERROR_CODE_UNSUPPORTED_VERSION: _ClassVar[ErrorCode]
    ERROR_CODE_TOO_LARGE: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_READY: _ClassVar[ErrorCode]
    ERROR_CODE_CANCELLED: _ClassVar[ErrorCode]
    ERROR_CODE_DEADLINE_EXCEEDED: _ClassVar[ErrorCode]
    ERROR_CODE_OVERLOADED: _ClassVar[ErrorCode]
    ERROR_CODE_INFERENCE_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_STORAGE_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_TOOL_BAD_ARGUMENTS: _ClassVar[ErrorCode]
    ERROR_CODE_TOOL_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_TOOLS_LOAD_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_CONFLICT: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_UPSTREAM_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_UPSTREAM_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHORIZED: _ClassVar[ErrorCode]
    ERROR_CODE_FORBIDDEN_ORIGIN: _ClassVar[ErrorCode]
    ERROR_CODE_FORBIDDEN: _ClassVar[ErrorCode]
    ERROR_CODE_RATE_LIMITED: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
ASK_MODE_UNSPECIFIED: AskMode
ASK_MODE_AUTO: AskMode
ASK_MODE_LOCAL: AskMode
ASK_MODE_LLM: AskMode
ASK_MODE_EXTRACTIVE: AskMode
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_BAD_JSON: ErrorCode
ERROR_CODE_BAD_MESSAGE: ErrorCode
ERROR_CODE_UNSUPPORTED_VERSION: ErrorCode
ERROR_CODE_TOO_LARGE: ErrorCode
ERROR_CODE_NOT_READY: ErrorCode
ERROR_CODE_CANCELLED: ErrorCode
ERROR_CODE_DEADLINE_EXCEEDED: ErrorCode
ERROR_CODE_OVERLOADED: ErrorCode
ERROR_CODE_INFERENCE_FAILED: ErrorCode
ERROR_CODE_STORAGE_FAILED: ErrorCode
ERROR_CODE_TOOL_BAD_ARGUMENTS: ErrorCode
ERROR_CODE_TOOL_FAILED: ErrorCode
ERROR_CODE_TOOLS_LOAD_FAILED: ErrorCode
ERROR_CODE_CONFLICT: ErrorCode
ERROR_CODE_NOT_FOUND: ErrorCode
ERROR_CODE_UPSTREAM_FAILED: ErrorCode
ERROR_CODE_UPSTREAM_UNAVAILABLE: ErrorCode
ERROR_CODE_UNAUTHORIZED: ErrorCode
ERROR_CODE_FORBIDDEN_ORIGIN: ErrorCode
ERROR_CODE_FORBIDDEN: ErrorCode
ERROR_CODE_RATE_LIMITED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode

class PassageIn(_message.Message):
    __slots__ = ("source", "title", "anchor", "text")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    source: str
    title: str
    anchor: str
    text: str
    def __init__(self, source: _Optional[str] = ..., title: _Optional[str] = ..., anchor: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class TurnIn(_message.Message):
    __slots__ = ("question", "answer")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    question: str
    answer: str
    def __init__(self, question: _Optional[str] = ..., answer: _Optional[str] = ...) -> None: ...

class AskRequest(_message.Message):
    __slots__ = ("id", "text", "kb", "top_k", "mode", "passages", "conversation", "history")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    KB_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    kb: str
    top_k: int
    mode: AskMode
    passages: _containers.RepeatedCompositeFieldContainer[PassageIn]
    conversation: str
    history: _containers.RepeatedCompositeFieldContainer[TurnIn]
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., kb: _Optional[str] = ..., top_k: _Optional[int] = ..., mode: _Optional[_Union[AskMode, str]] = ..., passages: _Optional[_Iterable[_Union[PassageIn, _Mapping]]] = ..., conversation: _Optional[str] = ..., history: _Optional[_Iterable[_Union[TurnIn, _Mapping]]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DocumentIn(_message.Message):
    __slots__ = ("source", "text", "kind")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    source: str
    text: str
    kind: str
    def __init__(self, source: _Optional[str] = ..., text: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("id", "kb", "documents")
    ID_FIELD_NUMBER: _ClassVar[int]
    KB_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kb: str
    documents: _containers.RepeatedCompositeFieldContainer[DocumentIn]
    def __init__(self, id: _Optional[str] = ..., kb: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[DocumentIn, _Mapping]]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("id", "target")
    ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    id: str
    target: str
    def __init__(self, id: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _struct_pb2.Struct
    def __init__(self, data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CancelReply(_message.Message):
    __slots__ = ("target", "cancelled")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    target: str
    cancelled: bool
    def __init__(self, target: _Optional[str] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "loaded", "total", "message")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    loaded: int
    total: int
    message: str
    def __init__(self, stage: _Optional[str] = ..., loaded: _Optional[int] = ..., total: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Delta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("source", "title", "anchor", "score", "snippet")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    source: str
    title: str
    anchor: str
    score: float
    snippet: str
    def __init__(self, source: _Optional[str] = ..., title: _Optional[str] = ..., anchor: _Optional[str] = ..., score: _Optional[float] = ..., snippet: _Optional[str] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("call_id", "name", "arguments", "step")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    name: str
    arguments: str
    step: int
    def __init__(self, call_id: _Optional[str] = ..., name: _Optional[str] = ..., arguments: _Optional[str] = ..., step: _Optional[int] = ...) -> None: ...

class ToolResult(_message.Message):
    __slots__ = ("call_id", "name", "ok", "text", "ms")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    name: str
    ok: bool
    text: str
    ms: float
    def __init__(self, call_id: _Optional[str] = ..., name: _Optional[str] = ..., ok: _Optional[bool] = ..., text: _Optional[str] = ..., ms: _Optional[float] = ...) -> None: ...

class AnswerSource(_message.Message):
    __slots__ = ("source", "title", "anchor", "score", "snippet")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    source: str
    title: str
    anchor: str
    score: float
    snippet: str
    def __init__(self, source: _Optional[str] = ..., title: _Optional[str] = ..., anchor: _Optional[str] = ..., score: _Optional[float] = ..., snippet: _Optional[str] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("text", "citations", "confident", "route", "timings_ms")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    text: str
    citations: _containers.RepeatedCompositeFieldContainer[AnswerSource]
    confident: bool
    route: str
    timings_ms: _containers.ScalarMap[str, float]
    def __init__(self, text: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[AnswerSource, _Mapping]]] = ..., confident: _Optional[bool] = ..., route: _Optional[str] = ..., timings_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _struct_pb2.Struct
    def __init__(self, data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "progress", "delta", "citation", "answer", "result", "error", "done", "tool_call", "tool_result")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    id: str
    progress: Progress
    delta: Delta
    citation: Citation
    answer: Answer
    result: Result
    error: Error
    done: Done
    tool_call: ToolCall
    tool_result: ToolResult
    def __init__(self, id: _Optional[str] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., delta: _Optional[_Union[Delta, _Mapping]] = ..., citation: _Optional[_Union[Citation, _Mapping]] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCall, _Mapping]] = ..., tool_result: _Optional[_Union[ToolResult, _Mapping]] = ...) -> None: ...
