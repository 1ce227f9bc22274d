"""The OpenAI wire format with no I/O: SSE decoding however the bytes are split, chunk reading."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmagent.errors import UpstreamError
from wasmagent.llm.wire import DONE, SseDecoder, build_messages, chat_body, chunk_text
from wasmagent.protocol import PassageIn

# Payload text: any characters but line breaks (a `data:` line ends at one), including
# multi-byte UTF-8 (accents, CJK, emoji) so splits land inside characters.
LINE_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
                    max_size=40)
NEWLINES = st.sampled_from(["\n", "\r\n", "\r"])


def _decode_all(pieces: list[bytes]) -> list[str]:
    decoder = SseDecoder()
    out: list[str] = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out + decoder.close()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """An event stream as an upstream might send it, and the payloads it must decode to."""
    events = draw(st.lists(st.lists(LINE_TEXT, min_size=1, max_size=3), max_size=6))
    body = ""
    expected: list[str] = []
    for lines in events:
        nl = draw(NEWLINES)
        if draw(st.booleans()):
            body += f": keep-alive comment{nl}event: message{nl}id: 7{nl}"
        for line in lines:
            # "data: x" strips the one space after the colon; "data:x" has none to strip.
            spaced = line.startswith(" ") or draw(st.booleans())
            body += (f"data: {line}" if spaced else f"data:{line}") + nl
        body += nl
        expected.append("\n".join(lines))
    return body.encode(), expected


@settings(max_examples=300, deadline=None)
@given(sse_streams(), st.lists(st.integers(min_value=0), max_size=12))
def test_sse_decoder_gives_the_same_payloads_however_the_bytes_are_split(
        stream: tuple[bytes, list[str]], cuts: list[int]) -> None:
    body, expected = stream
    assert _decode_all([body]) == expected
    assert _decode_all(_split(body, cuts)) == expected


@settings(max_examples=100, deadline=None)
@given(sse_streams())
def test_sse_decoder_byte_by_byte(stream: tuple[bytes, list[str]]) -> None:
    body, expected = stream
    assert _decode_all([body[i:i + 1] for i in range(len(body))]) == expected


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == ["a"]


def test_a_character_split_across_pieces_is_not_mangled() -> None:
    body = "data: Grüße 日本 🎉\n\n".encode()
    cut = body.index("🎉".encode()) + 2  # inside the four bytes of the emoji
    decoder = SseDecoder()
    assert decoder.feed(body[:cut]) == []
    assert decoder.feed(body[cut:]) == ["Grüße 日本 🎉"]


def test_an_event_without_its_blank_line_is_flushed_at_close() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: [DONE]") == []
    assert decoder.close() == ["[DONE]"]
    assert SseDecoder().close() == []


def test_multi_line_data_joins_with_newlines_and_events_without_data_are_skipped() -> None:
    assert _decode_all([b"data: one\ndata: two\n\nevent: ping\n\n: c\n\ndata: x\n\n"]) == [
        "one\ntwo", "x"]


def _chunk(delta: object, *, choices: object = None) -> str:
    body = {"id": "c", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]
            if choices is None else choices}
    return json.dumps(body)


@pytest.mark.parametrize(("payload", "text"), [
    (_chunk({"content": "Hello"}), "Hello"),
    (_chunk({"content": " wörld 🎉"}), " wörld 🎉"),
    (_chunk({"role": "assistant", "content": ""}), None),
    (_chunk({"role": "assistant"}), None),
    (_chunk({}), None),
    (_chunk({"content": None}), None),
    (_chunk({"content": 42}), None),
    (_chunk("not an object"), None),
    (_chunk({}, choices=[]), None),
    (_chunk({}, choices="nope"), None),
    (_chunk({}, choices=["nope"]), None),
    ('{"id": "c", "object": "chat.completion.chunk"}', None),
    ("[DONE]", DONE),
    (" [DONE] ", DONE),
])
def test_chunk_text_reads_the_delta(payload: str, text: str | None) -> None:
    assert chunk_text(payload) == text


@pytest.mark.parametrize(("payload", "retryable"), [
    ("{not json", False),
    ("[1, 2]", False),
    ('"text"', False),
    ('{"error": {"message": "overloaded", "type": "server_error"}}', True),
    ('{"error": "overloaded"}', True),
])
def test_chunk_text_refuses_malformed_and_error_payloads(payload: str, retryable: bool) -> None:
    with pytest.raises(UpstreamError) as info:
        chunk_text(payload)
    assert info.value.code.value == "upstream_failed"
    assert info.value.retryable is retryable


def test_the_request_body_numbers_passages_and_streams() -> None:
    passages = [PassageIn("guide/a.md", "Install", "install", "Run ./build.sh."),
                PassageIn("notes.txt", "Notes", "", "Version 0.1.")]
    body = json.loads(chat_body("m", build_messages("how to install?", passages), max_tokens=64))
    assert body["model"] == "m"
    assert body["stream"] is True
    assert body["max_tokens"] == 64
    system, user = body["messages"]
    assert system["role"] == "system"
    assert "[1] Install (guide/a.md#install)\nRun ./build.sh." in user["content"]
    assert "[2] Notes (notes.txt)\nVersion 0.1." in user["content"]
    assert user["content"].endswith("Question: how to install?")
    assert "(no passages were found)" in build_messages("q", [])[1]["content"]
