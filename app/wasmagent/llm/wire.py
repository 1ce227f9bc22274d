"""The OpenAI Chat Completions wire format, with no I/O: request bodies and streamed chunks.

`SseDecoder` turns the bytes of a `text/event-stream` body into the `data:` payloads of its
events, incrementally: feed it pieces as they arrive, split anywhere (even inside a UTF-8
character or a CRLF). `chunk_text` reads one payload: the text of a `chat.completion.chunk`
delta, `None` for chunks that carry none (role, finish), or `DONE` for the `[DONE]` sentinel.
`ToolCalls` gathers the pieces of streamed tool calls (`delta.tool_calls`, each call's
arguments split over many chunks, calls told apart by `index`).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any, Final

from ..errors import UpstreamError
from ..ports import ToolCallRequest
from ..protocol import PassageIn

DONE: Final = "[DONE]"
MAX_PASSAGE_CHARS = 1500

SYSTEM_PROMPT = (
    "You are a careful assistant. Answer the question using only the numbered passages. "
    "Cite the passages you use with their numbers in square brackets, like [1]. If the "
    "passages do not contain the answer, say that you don't know. Be concise.")


def build_messages(question: str, passages: Sequence[PassageIn],
                   turns: Sequence[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """The chat messages for a retrieval-augmented answer: instructions, the conversation's
    earlier turns, then the passages and the question."""
    blocks = []
    for n, p in enumerate(passages, 1):
        heading = p.title + (f" ({p.source}#{p.anchor})" if p.anchor else f" ({p.source})")
        blocks.append(f"[{n}] {heading}\n{p.text[:MAX_PASSAGE_CHARS]}")
    context = "\n\n".join(blocks) if blocks else "(no passages were found)"
    earlier = [{"role": role, "content": text} for asked, answered in turns
               for role, text in (("user", asked), ("assistant", answered))]
    return [{"role": "system", "content": SYSTEM_PROMPT}, *earlier,
            {"role": "user", "content": f"Passages:\n\n{context}\n\nQuestion: {question}"}]


def chat_body(model: str, messages: Sequence[Any], *, max_tokens: int = 512,
              temperature: float = 0.2, tools: Sequence[Any] = ()) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": list(messages), "stream": True,
                            "max_tokens": max_tokens, "temperature": temperature}
    if tools:
        body["tools"] = [{"type": "function", "function": t} for t in tools]
    return json.dumps(body).encode()


class SseDecoder:
    """Incremental server-sent-events parser that yields each event's joined `data` lines."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []

    def feed(self, piece: bytes) -> list[str]:
        self._buffer += self._text.decode(piece)
        events: list[str] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                return events
            line, self._buffer = self._buffer[:cut[0]], self._buffer[cut[1]:]
            if line == "":
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                self._data.append(line[6:] if line.startswith("data: ") else line[5:])
            # comments (":"), "event:", "id:" and "retry:" lines carry nothing we use

    def close(self) -> list[str]:
        """Flush an event the stream ended without its blank line."""
        return self.feed(b"\n\n") if self._buffer or self._data else []


def _line_end(buffer: str) -> tuple[int, int] | None:
    """(end of line, start of next) for the first complete line; a lone CR at the end waits.
    (`str.find`, not a loop over characters: this runs for every line of every answer.)"""
    lf = buffer.find("\n")
    cr = buffer.find("\r", 0, len(buffer) if lf == -1 else lf)
    if cr == -1:
        return None if lf == -1 else (lf, lf + 1)
    if cr + 1 == len(buffer):
        return None
    return (cr, cr + 2) if buffer[cr + 1] == "\n" else (cr, cr + 1)


def _chunk(payload: str) -> dict[str, Any] | None:
    """A payload's first choice, `None` for `[DONE]`; raises like `chunk_text`."""
    if payload.strip() == DONE:
        return None
    try:
        chunk: Any = json.loads(payload)
    except ValueError:
        raise UpstreamError(f"the LLM sent a malformed stream chunk: {payload[:80]!r}",
                            retryable=False) from None
    if not isinstance(chunk, dict):
        raise UpstreamError("the LLM sent a stream chunk that is not an object", retryable=False)
    if "error" in chunk:
        err = chunk["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        raise UpstreamError(f"the LLM reported an error mid-stream: {message}", retryable=True)
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return {}
    choice: dict[str, Any] = choices[0]
    return choice


class ToolCalls:
    """The tool calls of one streamed answer, assembled from their pieces."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def feed(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        pieces = delta.get("tool_calls") if isinstance(delta, dict) else None
        if not isinstance(pieces, list):
            return
        for piece in pieces:
            if not isinstance(piece, dict):
                continue
            index = piece.get("index", len(self._calls))
            call = self._calls.setdefault(index if isinstance(index, int) else 0,
                                          {"id": "", "name": "", "arguments": ""})
            if isinstance(piece.get("id"), str):
                call["id"] = piece["id"]
            function = piece.get("function")
            if isinstance(function, dict):
                if isinstance(function.get("name"), str):
                    call["name"] += function["name"]
                if isinstance(function.get("arguments"), str):
                    call["arguments"] += function["arguments"]

    def done(self) -> list[ToolCallRequest]:
        """The complete calls, in the model's order (an id made up where the model gave none)."""
        return [ToolCallRequest(c["id"] or f"call_{i}", c["name"], c["arguments"] or "{}")
                for i, c in sorted(self._calls.items())]


def chunk_parts(payload: str, calls: ToolCalls) -> str | None:
    """Like `chunk_text`, also feeding `calls` the chunk's tool-call pieces."""
    choice = _chunk(payload)
    if choice is None:
        return DONE
    calls.feed(choice)
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) and content else None


def chunk_text(payload: str) -> str | None:
    """The delta text in one streamed payload; raises `UpstreamError` on a malformed or error
    payload (an upstream that reports an error inside the stream)."""
    return chunk_parts(payload, ToolCalls())


async def text_parts(parts: AsyncGenerator[str | ToolCallRequest, None]) -> AsyncIterator[str]:
    """The text of a model turn's parts (an answer offered no tools has only text); closing
    this closes `parts`, which ends the model's stream."""
    async with aclosing(parts) as source:
        async for part in source:
            if isinstance(part, str):
                yield part
