"""Tool calls from a model that has no tool-calling format of its own: JSON under a grammar.

The local model (SmolLM2-135M in wllama) was not trained to call tools, and llama.cpp's chat
template for it ignores OpenAI `tools`. So the agent loop's turn is asked differently: the
tools are described in the system prompt, and the model must answer with one JSON object
that a JSON Schema (`step_schema`, compiled to a llama.cpp grammar by the host) allows:

    {"tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}}]}
    {"answer": "17 × 23 is 391."}

Decoding under the grammar means every call the model emits parses and fits a registered
tool's parameters (names are `const`s, arguments are the tool's own schema): a small model
can still choose badly, but never malformed. `StepReader` turns the streamed JSON back into
what a `ToolLlm` yields: the answer's text piece by piece as it is decoded (the user reads
it as it comes, as with any model), tool calls once the object is complete.

`plain_messages` rewrites the loop's Chat Completions history (assistant `tool_calls`,
`tool` results) into plain system/user/assistant turns that any chat template accepts.
`json_turn` is the whole turn over a `Generate` port (the host's constrained decoder).
No I/O of its own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Final

from ..errors import UpstreamError
from ..ports import ToolCallRequest

MAX_CALLS: Final = 4
"""Calls one turn may ask for: a bound on what a looping small model can queue at once."""
MAX_ANSWER_CHARS: Final = 1200

FORMAT: Final = (
    "\n\nYou can call these tools:\n{tools}\n\n"
    "Reply with one JSON object and nothing else. To call tools: "
    '{{"tool_calls": [{{"name": "<tool>", "arguments": {{...}}}}]}}. '
    'To answer the user: {{"answer": "<your answer>"}}. '
    "Use the tools' results when you answer.")


Generate = Callable[[list[dict[str, str]], dict[str, Any]], AsyncGenerator[str, None]]
"""A host's decoder: (plain messages, JSON Schema) -> the reply's text pieces as decoded."""


async def json_turn(generate: Generate, messages: Sequence[Mapping[str, Any]],
                    tools: Sequence[Mapping[str, Any]]
                    ) -> AsyncGenerator[str | ToolCallRequest, None]:
    """One turn of the agent loop as a `ToolLlm.chat` yields it: the answer's text pieces as
    they are decoded, or the tool calls once the reply is complete."""
    turn = 1 + sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))
    # Ids unique within a run: a durable run names its journal steps after them.
    reader = StepReader(f"json{turn}")
    schema = step_schema(tools, must_call=must_call(messages))
    async with aclosing(generate(plain_messages(messages, tools), schema)) as pieces:
        async for piece in pieces:
            if text := reader.feed(piece):
                yield text
    for call in reader.finish():
        yield call


def step_schema(tools: Sequence[Mapping[str, Any]], *, must_call: bool) -> dict[str, Any]:
    """The JSON Schema of one turn: tool calls (each a registered tool with its own
    parameters) or, unless `must_call`, an answer."""
    calls = {"type": "object",
             "properties": {"tool_calls": {"type": "array", "minItems": 1,
                                           "maxItems": MAX_CALLS,
                                           "items": {"anyOf": [_call(t) for t in tools]}}},
             "required": ["tool_calls"], "additionalProperties": False}
    if must_call:
        return calls
    answer = {"type": "object",
              "properties": {"answer": {"type": "string", "maxLength": MAX_ANSWER_CHARS}},
              "required": ["answer"], "additionalProperties": False}
    return {"anyOf": [calls, answer]}


def _call(tool: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(tool.get("parameters") or {"type": "object", "properties": {}})
    # Keys the model invents would only be refused by the registry afterwards.
    params.setdefault("additionalProperties", False)
    return {"type": "object",
            "properties": {"name": {"const": tool["name"]}, "arguments": params},
            "required": ["name", "arguments"], "additionalProperties": False}


def must_call(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether this turn must call a tool: the loop is only entered for a question judged to
    need one, and a model that answers before any tool ran answers from nothing (measured:
    given the choice, the 135M model guessed the arithmetic instead of calling the tool)."""
    return not any(m.get("role") == "tool" for m in messages)


def plain_messages(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
                   ) -> list[dict[str, str]]:
    """The loop's messages as plain chat turns, the tools and the reply format described in
    the system prompt; each turn's tool results as one user message."""
    listed = "\n".join(f"- {_signature(t)}: {t.get('description') or ''}".rstrip(": ")
                       for t in tools)
    out: list[dict[str, str]] = []
    results: list[str] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            results.append(str(m.get("content") or ""))
            continue
        if results:
            out.append(_results(results))
            results = []
        if role == "system":
            out.append({"role": "system",
                        "content": str(m.get("content") or "") + FORMAT.format(tools=listed)})
        elif role == "assistant" and m.get("tool_calls"):
            calls = [{"name": c["function"]["name"],
                      "arguments": _loads(c["function"]["arguments"])} for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": json.dumps({"tool_calls": calls})})
        else:
            out.append({"role": str(role), "content": str(m.get("content") or "")})
    if results:
        out.append(_results(results))
    return out


def _signature(tool: Mapping[str, Any]) -> str:
    props = (tool.get("parameters") or {}).get("properties") or {}
    args = ", ".join(f"{name}: {spec.get('type', 'value')}" if isinstance(spec, Mapping)
                     else name for name, spec in props.items())
    return f"{tool['name']}({args})"


def _results(results: Sequence[str]) -> dict[str, str]:
    listed = "\n".join(f"- {r}" for r in results)
    return {"role": "user", "content": f"Tool results:\n{listed}\n\nNow reply with JSON."}


def _loads(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text


class StepReader:
    """Reads one turn's JSON as it streams: `feed(piece)` returns the answer text decoded so
    far that was not returned before; `finish()` returns the turn's tool calls (none for an
    answer) and raises `UpstreamError` when the object is incomplete (the token budget ran
    out mid-call) or not what the schema allows."""

    def __init__(self, call_prefix: str = "local") -> None:
        self._text: list[str] = []
        self._prefix = call_prefix
        self._start: int | None = None  # where the answer string's characters begin
        self._done = 0  # characters of the raw answer string already decoded
        self._closed = False

    def feed(self, piece: str) -> str:
        self._text.append(piece)
        raw = "".join(self._text)
        if self._start is None:
            self._start = _answer_start(raw)
            if self._start is None:
                return ""
        if self._closed:
            return ""
        decoded, used, self._closed = _decode(raw, self._start + self._done)
        self._done += used
        return decoded

    def finish(self) -> list[ToolCallRequest]:
        raw = "".join(self._text)
        try:
            step = json.loads(raw)
        except ValueError:
            raise UpstreamError("the local model's reply was cut off before it was complete "
                                f"({len(raw)} characters)", retryable=False) from None
        if isinstance(step, dict) and isinstance(step.get("answer"), str):
            return []
        calls = step.get("tool_calls") if isinstance(step, dict) else None
        if not isinstance(calls, list) or not calls:
            raise UpstreamError("the local model replied with neither tool calls nor an "
                                "answer", retryable=False)
        return [ToolCallRequest(f"{self._prefix}_{n}", str(c.get("name")),
                                json.dumps(c.get("arguments", {})))
                for n, c in enumerate(calls, 1) if isinstance(c, dict)]


def _answer_start(raw: str) -> int | None:
    """Index just past the opening quote of the `answer` value, once it has streamed."""
    key = raw.find('"answer"')
    if key < 0 or raw[:key].strip() != "{":  # an argument named "answer" is not the answer
        return None
    rest = raw[key + len('"answer"'):]
    stripped = rest.lstrip()
    if not stripped.startswith(":"):
        return None
    value = stripped[1:].lstrip()
    if not value.startswith('"'):
        return None
    return len(raw) - len(value) + 1


ESCAPES: Final = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
                  "t": "\t"}


def _decode(raw: str, at: int) -> tuple[str, int, bool]:
    """Decodes JSON string characters from `raw[at:]` up to what is complete: (text, raw
    characters used, whether the closing quote was reached). An escape cut in half by the
    stream waits for its next piece."""
    out: list[str] = []
    i = at
    for kind, value, width in _chars(raw, at):
        if kind == "end":
            return "".join(out), i - at + width, True
        if kind == "partial":
            break
        out.append(value)
        i += width
    return "".join(out), i - at, False


def _chars(raw: str, at: int) -> Iterator[tuple[str, str, int]]:
    i = at
    while i < len(raw):
        c = raw[i]
        if c == '"':
            yield "end", "", 1
            return
        if c != "\\":
            yield "char", c, 1
            i += 1
            continue
        if i + 1 >= len(raw):
            yield "partial", "", 0
            return
        e = raw[i + 1]
        if e != "u":
            yield "char", ESCAPES.get(e, e), 2
            i += 2
            continue
        # A character outside the BMP comes as two escapes (a surrogate pair): wait for both.
        high = raw[i + 2:i + 3] in ("d", "D") and raw[i + 3:i + 4] in tuple("89abAB")
        if i + (8 if high else 6) > len(raw):
            yield "partial", "", 0
            return
        width = 12 if high and raw[i + 6:i + 8] == "\\u" else 6
        if i + width > len(raw):
            yield "partial", "", 0
            return
        yield "char", _unescape(raw[i:i + width]), width
        i += width


def _unescape(escape: str) -> str:
    try:
        text: str = json.loads(f'"{escape}"')
    except ValueError:
        return escape  # not a valid escape after all: shown as written, never a crash
    return text
