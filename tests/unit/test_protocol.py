"""The wire protocol: what a client sending messages would notice."""

from __future__ import annotations

import json

import pytest

from wasmagent.errors import AgentError, ErrorCode
from wasmagent.protocol import (
    MAX_MESSAGE_BYTES,
    Ask,
    Citation,
    Done,
    Error,
    Ingest,
    Status,
    ToolsLoad,
    json_schema,
    parse_request,
)


def _code(raw: object) -> str:
    with pytest.raises(AgentError) as info:
        parse_request(raw)  # type: ignore[arg-type]
    return info.value.code.value


def test_valid_requests_parse_to_typed_messages() -> None:
    ask = parse_request('{"v": 1, "type": "ask", "id": "a1", "text": "what is a list?"}')
    assert ask == Ask(id="a1", text="what is a list?", kb=None, top_k=5)
    status = parse_request({"v": 1, "type": "status", "id": "s"})
    assert status == Status(id="s")
    ingest = parse_request({"v": 1, "type": "ingest", "id": "i", "kb": "docs",
                            "documents": [{"source": "a.md", "text": "# A\nbody"}]})
    assert isinstance(ingest, Ingest)
    assert ingest.documents[0].source == "a.md"
    assert ingest.documents[0].kind is None


def test_each_kind_of_bad_input_has_its_own_code() -> None:
    cases = {
        "not json at all": "bad_json",
        "[1, 2]": "bad_json",
        '{"v": 2, "type": "ask", "id": "x", "text": "hi"}': "unsupported_version",
        '{"v": true, "type": "status", "id": "x"}': "unsupported_version",
        '{"type": "status", "id": "x"}': "unsupported_version",
        '{"v": 1, "type": "launch", "id": "x"}': "bad_message",
        '{"v": 1, "type": "ask", "id": "x"}': "bad_message",
        '{"v": 1, "type": "ask", "text": "hi"}': "bad_message",
        '{"v": 1, "type": "ask", "id": "", "text": "hi"}': "bad_message",
        '{"v": 1, "type": "ask", "id": 5, "text": "hi"}': "bad_message",
        '{"v": 1, "type": "ask", "id": "x", "text": ""}': "bad_message",
        '{"v": 1, "type": "ask", "id": "x", "text": "hi", "top_k": 0}': "bad_message",
        '{"v": 1, "type": "ask", "id": "x", "text": "hi", "top_k": true}': "bad_message",
        '{"v": 1, "type": "ask", "id": "x", "text": "hi", "extra": 1}': "bad_message",
        '{"v": 1, "type": "ingest", "id": "x", "kb": "k", "documents": []}': "bad_message",
        '{"v": 1, "type": "ingest", "id": "x", "kb": "k", "documents": [{"source": "a"}]}':
            "bad_message",
        '{"v": 1, "type": "ingest", "id": "x", "kb": "k", "documents": [{"source": "a",'
        ' "text": "t", "kind": "pdf"}]}': "bad_message",
    }
    for raw, code in cases.items():
        assert _code(raw) == code, raw


def test_error_messages_name_the_offending_field() -> None:
    with pytest.raises(AgentError) as info:
        parse_request({"v": 1, "type": "ingest", "id": "x", "kb": "k",
                       "documents": [{"source": "a", "text": 3}]})
    assert "documents[0].text" in info.value.message


def test_oversized_messages_are_refused_before_parsing() -> None:
    raw = '{"v": 1, "type": "ask", "id": "x", "text": "' + "a" * MAX_MESSAGE_BYTES + '"}'
    assert _code(raw) == ErrorCode.TOO_LARGE.value


def test_the_size_limit_is_the_callers_and_counts_utf8_bytes() -> None:
    status = '{"v": 1, "type": "status", "id": "s", "pad": "%s"}'
    small = status % ("x" * 50)
    with pytest.raises(AgentError) as info:
        parse_request(small, max_bytes=40)
    assert info.value.code is ErrorCode.TOO_LARGE
    assert "40 bytes" in info.value.message
    # 2,100 characters but 4,200 bytes: over a 4,096-byte limit, as bytes and as text alike
    wide = status % ("é" * 2100)
    for raw in (wide, wide.encode()):
        with pytest.raises(AgentError) as info:
            parse_request(raw, max_bytes=4096)
        assert info.value.code is ErrorCode.TOO_LARGE
    # under the limit, the message is judged on its content (here: an unknown field)
    with pytest.raises(AgentError) as info:
        parse_request(status % ("é" * 2000), max_bytes=4096)
    assert info.value.code is ErrorCode.BAD_MESSAGE
    # text holding lone surrogates (which UTF-8 cannot encode) is measured, not crashed on
    lone = '{"v": 1, "type": "status", "id": "' + "\ud800" * 10 + '"}'
    with pytest.raises(AgentError) as info:
        parse_request(lone, max_bytes=len(lone) + 5)
    assert info.value.code is ErrorCode.TOO_LARGE


def test_events_serialise_with_version_and_type() -> None:
    wire = json.loads(Citation("r1", "a.md", "A", "intro", 0.5, "text").to_json())
    assert wire == {"v": 1, "type": "citation", "id": "r1", "source": "a.md", "title": "A",
                    "anchor": "intro", "score": 0.5, "snippet": "text"}
    assert Done("r1").TERMINAL
    assert Error("r1", "internal", "x").TERMINAL
    assert not Citation.TERMINAL


def test_schema_covers_every_message_and_error_code() -> None:
    schema = json_schema()
    requests, events = schema["$defs"]["requests"], schema["$defs"]["events"]
    assert set(requests) == {"status", "ask", "embed", "ingest", "cancel", "kb.list", "kb.delete",
                             "kb.passage", "history.list", "data.clear", "server.connect",
                             "tools.load", "jobs.list", "jobs.get", "jobs.cancel", "jobs.watch",
                             "llm.chat"}
    assert set(events) == {"progress", "delta", "citation", "tool_call", "tool_result", "answer",
                           "result", "error", "done"}
    assert set(events["error"]["properties"]["code"]["enum"]) == {c.value for c in ErrorCode}
    ask = requests["ask"]
    assert ask["required"] == ["v", "type", "id", "text"]
    assert ask["properties"]["text"]["maxLength"] == 4000
    assert ask["additionalProperties"] is False


def test_tools_load_carries_an_owner_file_and_is_in_the_schema() -> None:
    request = parse_request({"v": 1, "type": "tools.load", "id": "t", "source": "/tools.py",
                             "code": "x = 1\n"})
    assert request == ToolsLoad(id="t", source="/tools.py", code="x = 1\n")
    assert _code({"v": 1, "type": "tools.load", "id": "t", "source": "", "code": ""}) == \
        "bad_message"
    schema = json_schema()["$defs"]
    assert schema["requests"]["tools.load"]["required"] == ["v", "type", "id", "source", "code"]
    assert "tools_load_failed" in schema["events"]["error"]["properties"]["code"]["enum"]


def test_requests_round_trip_through_their_wire_form() -> None:
    """A host builds a request as a dataclass and sends `to_wire()`: the receiver parses the
    same request back, defaults left out of the message."""
    from wasmagent.protocol import PassageIn

    ask = Ask("r1", "why?", kb="docs", mode="llm", passages=[PassageIn("a.md", "A", "", "x")])
    wire = ask.to_wire()
    assert (wire["v"], wire["type"]) == (1, "ask")
    assert "top_k" not in wire
    assert parse_request(json.dumps(wire)) == ask
    assert parse_request(Status("s").to_json()) == Status("s")


def test_events_serialise_to_text_utf8_can_carry() -> None:
    """A lone surrogate echoed from a client's id must not make the event unsendable."""
    text = Error("s\ud800", "bad_message", "no").to_json()
    text.encode()  # would raise on a raw surrogate
    assert json.loads(text)["id"] == "s\ud800"
    assert Done("é").to_json() == '{"v":1,"type":"done","id":"é"}'


def test_terminal_events_are_known_by_type() -> None:
    from wasmagent.protocol import TERMINAL_TYPES, is_terminal

    assert Done("x").TERMINAL
    assert Error("x", "internal", "m").TERMINAL
    assert not Citation("x", "a", "A", "", 0.5, "s").TERMINAL
    assert sorted(TERMINAL_TYPES) == ["done", "error"]
    assert is_terminal({"type": "done"})
    assert not is_terminal({"type": "delta"})


def test_the_js_module_carries_the_protocol() -> None:
    """protocol.js, generated for the page and worker, states the same names and schema."""
    from wasmagent.protocol import js_module

    text = js_module()
    assert "export const PROTOCOL_VERSION = 1;" in text
    assert 'export const SUBPROTOCOL = "wasmagent.v1";' in text
    assert 'export const TERMINAL_TYPES = ["done", "error"];' in text
    schema_line = next(line for line in text.splitlines() if line.startswith("export const SCHEMA"))
    schema = json.loads(schema_line.removeprefix("export const SCHEMA = ").removesuffix(";"))
    assert schema == json.loads(json.dumps(json_schema()))
    assert set(schema["$defs"]["widget"]) >= {"connect", "ask", "reply", "ready"}
