"""Tool calls from a model without a tool format (the local one): JSON under a grammar.

llama.cpp applies the grammar (tests/e2e/test_local_model.py and test_widget_local_model.py
run the real model); here: the grammar built from the tools, the rewriting of the loop's
messages, and reading the calls back. Plain test functions: the same file runs in Pyodide.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest

from wasmagent.errors import ErrorCode, UpstreamError
from wasmagent.llm.grammar import tool_grammar
from wasmagent.llm.json_tools import json_turn, must_call, plain_messages, read_calls
from wasmagent.pipeline.tool_loop import ToolLoop
from wasmagent.ports import LoopClock, ToolCallRequest
from wasmagent.protocol import Event, PassageIn
from wasmagent.runtime.context import Context
from wasmagent.tools import default_tools

TOOLS = default_tools().describe()


def pieces(text: str, seed: int) -> list[str]:
    """`text` cut at random places, as tokens arrive."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, len(text) // 3)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def test_a_tool_turn_may_only_call_registered_tools_with_their_own_parameters() -> None:
    grammar = tool_grammar(TOOLS)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["root"] == '"{\\"tool_calls\\":[" call ("," call){0,1} "]}"', "1-2 calls"
    assert rules["call"] == " | ".join(f"t{i}" for i in range(len(TOOLS)))
    assert rules["t0"] == ('"{\\"name\\":" "\\"calculator\\"" ",\\"arguments\\":{" '
                           't0-m0-first "}}"')
    assert rules["t0-m0-first"] == '"\\"expression\\":" string', "required, a string"
    timezone = next(f"t{i}" for i, t in enumerate(TOOLS) if t["name"] == "datetime_now")
    assert rules[f"{timezone}-m0-first"].endswith(")?"), "an optional argument may be left out"
    assert "char{0,40}" in rules["string"], "a looping model cannot run past the budget"
    asked = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert must_call(asked)
    assert not must_call([*asked, {"role": "tool", "tool_call_id": "a", "content": "391"}])


def test_argument_types_enums_and_optional_members_become_grammar() -> None:
    grammar = tool_grammar([{"name": "book", "description": "Book a table.", "parameters": {
        "type": "object", "required": ["people", "day"],
        "properties": {"people": {"type": "integer"},
                       "day": {"enum": ["friday", "saturday"]},
                       "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                       "ids": {"type": "array", "items": {"type": "number"}}}}}])
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["t0-m0-first"] == '"\\"people\\":" integer t0-m1-rest'
    assert rules["t0-m1-rest"] == '"," "\\"day\\":" ("\\"friday\\"" | "\\"saturday\\"") t0-m2-rest'
    assert rules["t0-m2-rest"] == '("," "\\"note\\":" (string | null) t0-m3-rest) | t0-m3-rest'
    assert rules["t0-m3-rest"] == '("," "\\"ids\\":" ("[" (number ("," number){0,9})? "]"))?'


def test_the_loops_messages_become_plain_turns_any_chat_template_takes() -> None:
    messages = [
        {"role": "system", "content": "Answer from the passages."},
        {"role": "user", "content": "What is 17 * 23 and how long until 2026-12-25?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function",
             "function": {"name": "calculator", "arguments": '{"expression": "17 * 23"}'}},
            {"id": "b", "type": "function",
             "function": {"name": "days_until", "arguments": '{"date": "2026-12-25"}'}}]},
        {"role": "tool", "tool_call_id": "a", "content": "17 * 23 = 391"},
        {"role": "tool", "tool_call_id": "b", "content": "25 days until 2026-12-25"},
    ]
    plain = plain_messages(messages, TOOLS)
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert "calculator(expression: string)" in plain[0]["content"]
    assert '{"tool_calls":' in plain[0]["content"], "the reply format is explained"
    # One system prompt for every turn: the decoder reuses what it already read.
    assert plain_messages(messages[:2], TOOLS)[0] == plain[0]
    said = json.loads(plain[2]["content"])
    assert said == {"tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}},
                                   {"name": "days_until", "arguments": {"date": "2026-12-25"}}]}
    assert "17 * 23 = 391" in plain[3]["content"]
    assert "25 days" in plain[3]["content"]


def test_tool_calls_come_out_whole_with_ids_unique_per_turn() -> None:
    text = json.dumps({"tool_calls": [
        {"name": "calculator", "arguments": {"expression": "2340 * 0.175"}},
        {"name": "days_until", "arguments": {"date": "2026-12-25"}}]}, indent=2)
    calls = read_calls(text, "t")
    assert [(c.id, c.name) for c in calls] == [("t_1", "calculator"), ("t_2", "days_until")]
    assert json.loads(calls[0].arguments) == {"expression": "2340 * 0.175"}


def test_a_reply_cut_off_by_the_token_budget_is_a_typed_error() -> None:
    with pytest.raises(UpstreamError) as caught:
        read_calls('{"tool_calls": [{"name": "calculator", "arguments": {"expre', "t")
    assert caught.value.code is ErrorCode.UPSTREAM
    assert "cut off" in caught.value.message


class Decoder:
    """A decoder double: replies are scripted (JSON for a tool turn, else text), streamed in
    pieces; it records the plain messages and schema of each turn."""

    def __init__(self, *replies: Any) -> None:
        self.replies = [r if isinstance(r, str) else json.dumps(r) for r in replies]
        self.seen: list[tuple[list[dict[str, str]], str | None]] = []

    async def generate(self, plain: list[dict[str, str]], grammar: str | None
                       ) -> AsyncGenerator[str, None]:
        self.seen.append((plain, grammar))
        for piece in pieces(self.replies.pop(0), len(self.seen)):
            yield piece


class JsonModel:
    """A `ToolLlm` as the browser's local model is one: `chat` is `json_turn`."""

    name = "json"

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    def available(self) -> bool:
        return True

    def details(self) -> dict[str, Any]:
        return {}

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the loop uses chat()")

    def chat(self, messages: Sequence[Any], tools: Sequence[Any], ctx: Context
             ) -> AsyncGenerator[str | ToolCallRequest, None]:
        return json_turn(self.decoder.generate, messages, tools)


async def test_a_two_tool_question_through_the_loop_with_a_json_model() -> None:
    decoder = Decoder(
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "2340 * 17.5 / 100"}},
                        {"name": "days_until", "arguments": {"date": "2026-12-25"}}]},
        "17.5% of 2,340 is 409.5. 17.5% of 2,340 is 409.5. (repeated: never shown)")
    events: list[dict[str, Any]] = []

    def emit(event: Event) -> None:
        events.append(event.to_wire())

    loop = ToolLoop(JsonModel(decoder), default_tools(), LoopClock())
    outcome = await loop.run("r1", "What is 17.5% of 2,340, and how long until 2026-12-25?",
                             [PassageIn("a.md", "A", "", "text")], Context("r1"), emit)
    results = [e for e in events if e["type"] == "tool_result"]
    assert [r["name"] for r in results] == ["calculator", "days_until"]
    assert all(r["ok"] for r in results), results
    assert "409.5" in results[0]["text"]
    assert outcome.text == "17.5% of 2,340 is 409.5."
    assert "".join(e["text"] for e in events if e["type"] == "delta") == outcome.text
    (_, first_grammar), (second, second_grammar) = decoder.seen
    assert first_grammar == tool_grammar(default_tools().describe())
    assert second_grammar is None, "the answer is plain text, streamed"
    assert "409.5" in second[-1]["content"], "the results reach the model"
    ids = {e["call_id"] for e in events if e["type"] == "tool_call"}
    assert len(ids) == 2
