"""Tool calls from a model that has no tool-calling format of its own: JSON under a grammar.

The local model (SmolLM2-135M in wllama) was not trained to call tools, and llama.cpp's chat
template for it ignores OpenAI `tools`. So the agent loop's turns are asked differently:

- The first turn (no tool has run yet) must call tools: the tools are described in the system
  prompt, and the reply is decoded under a grammar built from their schemas (`grammar.py`):

      {"tool_calls":[{"name":"calculator","arguments":{"expression":"17 * 23"}}]}

  so every call parses, names a registered tool and fits its parameters: a small model can
  still choose badly, but never malformed. `read_calls` turns the JSON into tool calls.
- Once results are back, the model answers in plain text, streamed as it is decoded (and
  stopped at its first repeated sentence, `repetition.py`). It is not offered tools again:
  asked to choose again, the 135M model repeated its calls (measured), and each turn costs
  it tens of seconds; the loop's step limit would be reached long after the user gave up.
- Every turn shares one short system prompt (`plain_messages`), so llama.cpp reuses the
  prompt it already read (its KV cache) and reads only what is new: at ~8-25 prompt tokens
  a second in wasm, the prompt is most of the time a local answer takes.

`plain_messages` rewrites the loop's Chat Completions history (assistant `tool_calls`,
`tool` results) into plain system/user/assistant turns that any chat template accepts.
`json_turn` is a whole turn over a `Generate` port (the host's decoder). No I/O of its own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Final

from ..errors import UpstreamError
from ..ports import ToolCallRequest
from .grammar import tool_grammar
from .repetition import until_repeat

SYSTEM: Final = (
    "You are a careful assistant with tools:\n{tools}\n"
    'First call the tools the question needs, as JSON: {{"tool_calls":[{{"name":"<tool>",'
    '"arguments":{{...}}}}]}}. Then answer in one or two sentences with their results.')
"""(No worked example: given one, the 135M model copied its values into every call.)"""


Generate = Callable[[list[dict[str, str]], str | None], AsyncGenerator[str, None]]
"""A host's decoder: (plain messages, GBNF grammar or None for free text) -> the reply's text
pieces as they are decoded."""


async def json_turn(generate: Generate, messages: Sequence[Mapping[str, Any]],
                    tools: Sequence[Mapping[str, Any]]
                    ) -> AsyncGenerator[str | ToolCallRequest, None]:
    """One turn of the agent loop as a `ToolLlm.chat` yields it: tool calls (first turn), or
    the answer's text pieces as they are decoded (once results are back)."""
    plain = plain_messages(messages, tools)
    if not must_call(messages):
        async with aclosing(until_repeat(generate(plain, None))) as pieces:
            async for piece in pieces:
                yield piece
        return
    async with aclosing(generate(plain, tool_grammar(tools))) as pieces:
        raw = "".join([piece async for piece in pieces])
    # (A run has one tool turn, so its call ids are unique within the run, as a durable run
    # needs: it names its journal steps after them.)
    for call in read_calls(raw, "json1"):
        yield call


def must_call(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether this is the tool turn: the loop is only entered for a question judged to need
    a tool, and a model that answers before any tool ran answers from nothing (measured:
    given the choice, the 135M model guessed the arithmetic instead of calling the tool)."""
    return not any(m.get("role") == "tool" for m in messages)


def plain_messages(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
                   ) -> list[dict[str, str]]:
    """The loop's messages as plain chat turns under one short system prompt that lists the
    tools (the loop's own system prompt is written for models that know tools); each turn's
    tool results as one user message."""
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
            out.append({"role": "system", "content": SYSTEM.format(tools=listed)})
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
    return {"role": "user", "content": f"Tool results:\n{listed}\n\nNow answer the question."}


def _loads(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text


def read_calls(raw: str, prefix: str) -> list[ToolCallRequest]:
    """A tool turn's calls from its JSON; `UpstreamError` when the object is incomplete (the
    token budget ran out mid-call) or not what the grammar allows."""
    try:
        step = json.loads(raw)
    except ValueError:
        raise UpstreamError("the local model's tool call was cut off before it was "
                            f"complete ({len(raw)} characters)", retryable=False) from None
    calls = step.get("tool_calls") if isinstance(step, dict) else None
    if not isinstance(calls, list) or not calls:
        raise UpstreamError("the local model replied without tool calls", retryable=False)
    return [ToolCallRequest(f"{prefix}_{n}", str(c.get("name")),
                            json.dumps(c.get("arguments", {})))
            for n, c in enumerate(calls, 1) if isinstance(c, dict)]
