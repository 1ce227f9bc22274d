"""Tool calls from a model without a tool format (the local one): JSON under a grammar.

The grammar itself is llama.cpp's (tests/e2e/test_local_tools.py runs the real model); here:
the schema it is compiled from, the rewriting of the loop's messages, and reading the reply
as it streams. Plain test functions: the same file runs in Pyodide.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest

from wasmagent.errors import ErrorCode, UpstreamError
from wasmagent.llm.json_tools import (
    StepReader,
    json_turn,
    must_call,
    plain_messages,
    step_schema,
)
from wasmagent.pipeline.tool_loop import ToolLoop
from wasmagent.ports import LoopClock, ToolCallRequest
from wasmagent.protocol import Event, PassageIn
from wasmagent.runtime.context import Context
from wasmagent.tools import default_tools

TOOLS = default_tools().describe()


def pieces(text: str, seed: int) -> list[str]:
    """`text` cut at random places, as tokens arrive (escapes cut in half included)."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, len(text) // 3)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def read(text: str, seed: int = 0) -> tuple[str, list[ToolCallRequest]]:
    reader = StepReader("t")
    shown = "".join(reader.feed(p) for p in pieces(text, seed))
    return shown, reader.finish()


def test_a_first_turn_must_call_a_registered_tool_with_its_own_parameters() -> None:
    schema = step_schema(TOOLS, must_call=True)
    assert schema["required"] == ["tool_calls"], "no answer before any tool ran"
    items = schema["properties"]["tool_calls"]["items"]["anyOf"]
    assert [i["properties"]["name"]["const"] for i in items] == [t["name"] for t in TOOLS]
    calc = next(i for i in items if i["properties"]["name"]["const"] == "calculator")
    params = calc["properties"]["arguments"]
    assert params["properties"] == TOOLS[0]["parameters"]["properties"]
    assert params["additionalProperties"] is False, "no invented keys"


def test_after_tool_results_the_model_may_answer_or_call_again() -> None:
    schema = step_schema(TOOLS, must_call=False)
    calls, answer = schema["anyOf"]
    assert calls["required"] == ["tool_calls"]
    assert answer["properties"]["answer"]["type"] == "string"
    asked = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert must_call(asked)
    assert not must_call([*asked, {"role": "tool", "tool_call_id": "a", "content": "391"}])


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
    assert plain[0]["content"].startswith("Answer from the passages.")
    assert "calculator(expression: string)" in plain[0]["content"]
    assert '{"answer":' in plain[0]["content"], "the reply format is explained"
    said = json.loads(plain[2]["content"])
    assert said == {"tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}},
                                   {"name": "days_until", "arguments": {"date": "2026-12-25"}}]}
    assert "17 * 23 = 391" in plain[3]["content"]
    assert "25 days" in plain[3]["content"]


def test_an_answer_streams_as_it_is_decoded_escapes_and_all() -> None:
    answer = 'It is "391" —\n17 × 23 = 391 \\ done 😀 (see [1]).'
    for seed in range(6):
        text = '{ "answer" :  ' + json.dumps(answer) + " }"
        shown, calls = read(text, seed)
        assert shown == answer
        assert calls == []
        # The same through non-ASCII escapes (\u00d7, surrogate pairs), as some decoders write.
        shown, _ = read(json.dumps({"answer": answer}, ensure_ascii=True), seed)
        assert shown == answer


def test_nothing_of_a_tool_call_is_shown_and_each_call_comes_out_whole() -> None:
    text = json.dumps({"tool_calls": [
        {"name": "calculator", "arguments": {"expression": "2340 * 0.175", "answer": "x"}},
        {"name": "days_until", "arguments": {"date": "2026-12-25"}}]}, indent=2)
    shown, calls = read(text, 3)
    assert shown == "", "an argument named answer is not the answer"
    assert [(c.id, c.name) for c in calls] == [("t_1", "calculator"), ("t_2", "days_until")]
    assert json.loads(calls[0].arguments) == {"expression": "2340 * 0.175", "answer": "x"}


def test_a_reply_cut_off_by_the_token_budget_is_a_typed_error() -> None:
    reader = StepReader("t")
    reader.feed('{"tool_calls": [{"name": "calculator", "arguments": {"expre')
    with pytest.raises(UpstreamError) as caught:
        reader.finish()
    assert caught.value.code is ErrorCode.UPSTREAM
    assert "cut off" in caught.value.message


class Decoder:
    """A constrained decoder double: replies are scripted JSON texts, streamed in pieces; it
    records the plain messages and schema of each turn."""

    def __init__(self, *replies: Any) -> None:
        self.replies = [json.dumps(r) for r in replies]
        self.seen: list[tuple[list[dict[str, str]], dict[str, Any]]] = []

    async def generate(self, plain: list[dict[str, str]], schema: dict[str, Any]
                       ) -> AsyncGenerator[str, None]:
        self.seen.append((plain, schema))
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
        {"answer": "17.5% of 2,340 is 409.5."})
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
    (_, first_schema), (second, second_schema) = decoder.seen
    assert first_schema["required"] == ["tool_calls"]
    assert "anyOf" in second_schema
    assert "409.5" in second[-1]["content"], "the results reach the model"
    ids = {e["call_id"] for e in events if e["type"] == "tool_call"}
    assert len(ids) == 2
