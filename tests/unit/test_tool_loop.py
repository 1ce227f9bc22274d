"""The agent loop: a scripted model calls tools; what the user would see of each step.

Plain test functions, no fixtures: the same file runs in Pyodide.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from tests.support.models import ChatModel
from wasmagent.errors import AgentError, ErrorCode
from wasmagent.pipeline.tool_loop import ToolLoop
from wasmagent.ports import LoopClock, ToolCallRequest
from wasmagent.protocol import Event, PassageIn
from wasmagent.runtime.context import Context
from wasmagent.tools import ToolRegistry, default_tools

PASSAGES = [PassageIn("guide/offline.md", "Offline", "", "The app works offline.")]
Turn = list[str | ToolCallRequest]


class Scripted(ChatModel):
    """A model that answers each turn from a script and records what it was sent."""

    name = "scripted"

    def __init__(self, *turns: Turn) -> None:
        self.turns = list(turns)
        self.seen: list[list[Mapping[str, Any]]] = []
        self.offered: list[str] = []

    async def chat(self, messages: Sequence[Mapping[str, Any]],
                   tools: Sequence[Mapping[str, Any]], ctx: Context
                   ) -> AsyncIterator[str | ToolCallRequest]:
        self.seen.append(list(messages))
        self.offered = [t["name"] for t in tools]
        turn = self.turns.pop(0) if self.turns else [call("calculator", {"expression": "1+1"})]
        for part in turn:
            await asyncio.sleep(0)
            yield part


def call(name: str, args: Any, cid: str | None = None) -> ToolCallRequest:
    text = args if isinstance(args, str) else json.dumps(args)
    return ToolCallRequest(cid or f"c-{name}-{len(text)}", name, text)


async def run(model: Scripted, *, max_steps: int = 6, ctx: Context | None = None
              ) -> tuple[Any, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []

    def emit(event: Event) -> None:
        events.append(event.to_wire())

    loop = ToolLoop(model, default_tools(), LoopClock(), max_steps=max_steps)
    outcome = await loop.run("r1", "What is 17.5% of 2,340, and how long until 2026-12-25?",
                             PASSAGES, ctx or Context("r1"), emit)
    return outcome, events


async def test_two_tools_in_one_step_then_the_answer() -> None:
    model = Scripted(
        ["Let me compute that. ",
         call("calculator", {"expression": "2340 * 17.5 / 100"}, "a"),
         call("days_until", {"date": "2026-12-25"}, "b")],
        ["17.5% of 2,340 is 409.5."])
    outcome, events = await run(model)
    kinds = [e["type"] for e in events]
    assert kinds.count("tool_call") == 2
    assert kinds.count("tool_result") == 2
    assert kinds.index("tool_result") > kinds.index("tool_call")
    results = {e["call_id"]: e for e in events if e["type"] == "tool_result"}
    assert results["a"]["ok"]
    assert "409.5" in results["a"]["text"]
    assert results["b"]["ok"]
    assert "day" in results["b"]["text"]
    assert outcome.steps == 2
    assert outcome.finished
    # the whole answer is what was streamed, in order
    assert outcome.text == "".join(e["text"] for e in events if e["type"] == "delta")
    assert outcome.text.endswith("409.5.")
    # the model saw both results, each tied to its call
    tool_messages = [m for m in model.seen[1] if m["role"] == "tool"]
    assert {m["tool_call_id"] for m in tool_messages} == {"a", "b"}
    assert "calculator" in model.offered


async def test_a_tool_error_goes_back_to_the_model_not_to_the_user() -> None:
    model = Scripted(
        [call("calculator", "{not json", "bad"), call("no_such_tool", {}, "gone"),
         call("calculator", {"expression": "1/0"}, "zero"),
         call("calculator", {"expr": "2"}, "wrong")],
        ["I could not compute that."])
    outcome, events = await run(model)
    results = {e["call_id"]: e for e in events if e["type"] == "tool_result"}
    assert not any(r["ok"] for r in results.values())
    assert "not valid JSON" in results["bad"]["text"]
    assert "not_found" in results["gone"]["text"]
    assert "tool_bad_arguments" in results["wrong"]["text"]
    assert outcome.text == "I could not compute that."
    told = [m["content"] for m in model.seen[1] if m["role"] == "tool"]
    assert len(told) == 4
    assert all(t.startswith("error (") for t in told)


async def test_a_model_that_never_stops_calling_tools_is_stopped_with_what_it_found() -> None:
    outcome, events = await run(Scripted(), max_steps=3)
    assert not outcome.finished
    assert outcome.steps == 3
    assert [e["type"] for e in events].count("tool_call") == 3
    assert "I stopped after 3 steps" in outcome.text
    assert "1+1 = 2" in outcome.text, "what the tools established is kept"


async def test_cancelling_the_request_mid_loop_ends_it() -> None:
    ctx = Context("r1")
    started = asyncio.Event()

    class Slow(Scripted):
        async def chat(self, messages: Sequence[Mapping[str, Any]],
                       tools: Sequence[Mapping[str, Any]], ctx: Context
                       ) -> AsyncIterator[str | ToolCallRequest]:
            started.set()
            await ctx.run(asyncio.Event().wait())
            yield "never"

    task = asyncio.ensure_future(run(Slow(), ctx=ctx))
    await started.wait()
    ctx.cancel("the user left")
    with pytest.raises(AgentError) as info:
        await task
    assert info.value.code is ErrorCode.CANCELLED


class ListJournal:
    """A `Journal` kept in a list: what a workflow run records, without the store."""

    def __init__(self, steps: list[tuple[str, Any]] | None = None) -> None:
        self.steps = steps if steps is not None else []
        self.next = 0

    @property
    def replaying(self) -> bool:
        return self.next < len(self.steps)

    async def step(self, name: str, fn: Any, *, retry: Any = True) -> Any:
        n, self.next = self.next, self.next + 1
        if n < len(self.steps):
            assert self.steps[n][0] == name
            return self.steps[n][1]
        result = await fn()
        self.steps.append((name, json.loads(json.dumps(result))))  # JSON, as a store keeps it
        return result


async def test_a_journaled_loop_replays_its_steps_without_the_model_or_the_tools() -> None:
    model = Scripted(
        ["Let me compute that. ",
         call("calculator", {"expression": "2340 * 17.5 / 100"}, "a"),
         call("days_until", {"date": "2026-12-25"}, "b")],
        ["17.5% of 2,340 is 409.5."])
    journal = ListJournal()
    events: list[dict[str, Any]] = []
    loop = ToolLoop(model, default_tools(), LoopClock())
    first = await loop.run("r1", "q", PASSAGES, Context("r1"), lambda e: events.append(
        e.to_wire()), journal=journal)
    assert [name for name, _ in journal.steps] == ["turn 1", "call a", "call b", "turn 2"]

    class Gone(Scripted):
        def chat(self, *args: Any, **kwargs: Any) -> AsyncIterator[str | ToolCallRequest]:
            raise AssertionError("a replayed turn never asks the model")

    replayed: list[dict[str, Any]] = []
    again = await ToolLoop(Gone(), default_tools(), LoopClock()).run(
        "r1", "q", PASSAGES, Context("r1"), lambda e: replayed.append(e.to_wire()),
        journal=ListJournal(journal.steps))
    assert again.text == first.text == "".join(
        e["text"] for e in replayed if e["type"] == "delta")
    results = [(e["call_id"], e["text"]) for e in events if e["type"] == "tool_result"]
    assert [(e["call_id"], e["text"]) for e in replayed if e["type"] == "tool_result"] == results
    assert [(s.call.id, s.ok, s.text) for s in again.calls] == [
        (s.call.id, s.ok, s.text) for s in first.calls]


async def test_a_journaled_turns_calls_still_run_at_the_same_time() -> None:
    # The first call keeps yielding to the loop: run together, the second one gets to run
    # meanwhile; run one after the other, it cannot have started.
    tools = ToolRegistry()
    second_ran = asyncio.Event()
    seen: list[bool] = []

    @tools.tool
    async def slow_lookup(item: str) -> str:
        """Look an item up slowly."""
        for _ in range(20):
            await asyncio.sleep(0)
        seen.append(second_ran.is_set())
        return f"{item}: found"

    @tools.tool
    async def quick_lookup(item: str) -> str:
        """Look an item up quickly."""
        second_ran.set()
        return f"{item}: found"

    model = Scripted([call("slow_lookup", {"item": "a"}, "a"),
                      call("quick_lookup", {"item": "b"}, "b")], ["Both found."])
    journal = ListJournal()
    outcome = await ToolLoop(model, tools, LoopClock()).run(
        "r1", "q", PASSAGES, Context("r1"), lambda e: None, journal=journal)
    assert seen == [True]
    assert [name for name, _ in journal.steps] == ["turn 1", "call a", "call b", "turn 2"]
    assert outcome.text == "Both found."
