"""The public surface, pinned: a change to any of these is a change for every client and
site owner, so it must be made here on purpose (and in the README), never by accident."""

from __future__ import annotations

import argparse

import wasmagent
from wasmagent import protocol
from wasmagent.errors import ErrorCode
from wasmagent.hosts.cli import build_parser
from wasmagent.protocol.widget import WIDGET_MESSAGES


def test_the_package_exports() -> None:
    assert wasmagent.__all__ == ["Session", "__version__", "start_in_browser"]
    for name in wasmagent.__all__:
        assert hasattr(wasmagent, name), name


def test_the_protocol_module_exports() -> None:
    assert sorted(protocol.__all__) == sorted([
        "ASK_MODES", "EVENT_TYPES", "MAX_DOCUMENTS", "MAX_ID", "MAX_MESSAGE_BYTES",
        "MAX_PASSAGE", "MAX_PASSAGES", "MAX_QUESTION", "MAX_TOOLS_CODE", "MAX_TURNS",
        "PROTOCOL_VERSION",
        "REQUEST_TYPES", "SUBPROTOCOL", "TERMINAL_TYPES", "Answer", "Ask", "AskMode", "Cancel",
        "Citation", "DataClear", "Delta", "DocumentIn", "Done", "Embed", "Error", "Event",
        "HistoryList", "Ingest", "JobsCancel", "JobsGet", "JobsList", "JobsWatch", "KbDelete",
        "KbList", "KbPassage", "LlmChat", "Message", "PassageIn", "Progress", "Request", "Result",
        "ServerConnect", "Source", "Status", "ToolCalled", "ToolReturned", "ToolsLoad", "TurnIn", "decode", "is_terminal", "js_module",
        "json_schema", "limits", "message_bytes", "parse_request", "peek_id",
    ])
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_the_wire_vocabulary() -> None:
    assert protocol.PROTOCOL_VERSION == 1
    assert protocol.SUBPROTOCOL == "wasmagent.v1"
    assert sorted(protocol.REQUEST_TYPES) == [
        "ask", "cancel", "data.clear", "embed", "history.list", "ingest", "jobs.cancel",
        "jobs.get", "jobs.list", "jobs.watch", "kb.delete", "kb.list", "kb.passage",
        "llm.chat", "server.connect", "status", "tools.load"]
    assert [e.TYPE for e in protocol.EVENT_TYPES] == [
        "progress", "delta", "citation", "tool_call", "tool_result", "answer", "result",
        "error", "done"]
    assert sorted(protocol.TERMINAL_TYPES) == ["done", "error"]
    assert sorted(m.TYPE for m in WIDGET_MESSAGES) == [
        "answer", "ask", "close", "connect", "error", "focus", "hello", "ready", "refused",
        "reply", "tools"]


def test_the_error_codes() -> None:
    assert sorted(c.value for c in ErrorCode) == [
        "bad_json", "bad_message", "cancelled", "conflict", "deadline_exceeded", "forbidden",
        "forbidden_origin", "inference_failed", "internal", "not_found", "not_ready",
        "overloaded", "rate_limited", "storage_failed", "too_large", "tool_bad_arguments",
        "tool_failed", "tools_load_failed", "unauthorized", "unsupported_version",
        "upstream_failed", "upstream_unavailable"]


def test_the_command_line() -> None:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(commands.choices) == ["ask", "embed", "export", "ingest", "serve", "server",
                                        "token"]
