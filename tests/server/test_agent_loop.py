"""The server's LLM decides which tools to call: a real server, its (fake) upstream scripted
to call tools, and what a WebSocket client sees of each step."""

from __future__ import annotations

import json
from typing import Any

from ..support.processes import FakeUpstream, Server
from .conftest import ws_client

TWO_TOOLS = "How much is seventeen times twenty-three, and how long until Christmas 2026?"
"""No rule recognises it (the rules would answer "17 * 23" themselves): the model decides."""


def calls(*pairs: tuple[str, dict[str, Any]]) -> str:
    return "call:" + json.dumps([{"name": n, "arguments": a} for n, a in pairs])


async def test_the_model_calls_two_tools_and_answers_with_their_results(
        server: Server, fake: FakeUpstream) -> None:
    fake.control([calls(("calculator", {"expression": "17 * 23"}),
                        ("days_until", {"date": "2026-12-25"}))])
    async with ws_client(server) as ws:
        events = await ws.request({"type": "ask", "text": TWO_TOOLS, "mode": "llm"})
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "done", events[-1]
    called = [e for e in events if e["type"] == "tool_call"]
    returned = {e["call_id"]: e for e in events if e["type"] == "tool_result"}
    assert [c["name"] for c in called] == ["calculator", "days_until"]
    assert json.loads(called[0]["arguments"]) == {"expression": "17 * 23"}
    assert {c["step"] for c in called} == {1}
    assert returned[called[0]["call_id"]]["text"] == "17 * 23 = 391"
    assert returned[called[1]["call_id"]]["ok"]
    answer = next(e for e in events if e["type"] == "answer")
    assert "391" in answer["text"], "the model's answer used the tool's result"
    assert answer["text"] == "".join(e["text"] for e in events if e["type"] == "delta")
    assert answer["timings_ms"]["steps"] == 2
    assert answer["timings_ms"]["tools"] >= 0


async def test_a_call_the_registry_refuses_goes_back_to_the_model(
        server: Server, fake: FakeUpstream) -> None:
    fake.control([calls(("rm_rf", {"path": "/"}), ("calculator", {"expr": "1"}))])
    async with ws_client(server) as ws:
        events = await ws.request({"type": "ask", "text": TWO_TOOLS, "mode": "llm"})
    assert events[-1]["type"] == "done", events[-1]
    results = [e for e in events if e["type"] == "tool_result"]
    assert [r["ok"] for r in results] == [False, False]
    assert "not_found" in results[0]["text"]
    assert "tool_bad_arguments" in results[1]["text"]
    answer = next(e for e in events if e["type"] == "answer")
    assert "error (not_found)" in answer["text"], "the model was told what went wrong"


async def test_llm_chat_relays_the_models_tool_calls_without_running_them(
        server: Server, fake: FakeUpstream) -> None:
    """The browser runs the loop (and its site owner's tools) itself: the server only relays
    one model turn, offered the tools the browser names."""
    owner_tool = {"name": "opening_hours", "description": "The shop's opening hours.",
                  "parameters": {"type": "object", "properties": {"day": {"type": "string"}},
                                 "required": ["day"], "additionalProperties": False}}
    fake.control([calls(("opening_hours", {"day": "sunday"}))])
    async with ws_client(server) as ws:
        events = await ws.request({"type": "llm.chat", "tools": [owner_tool], "messages": [
            {"role": "user", "content": "when are you open on sunday?"}]})
        assert [e["type"] for e in events] == ["tool_call", "done"], events
        assert events[0]["name"] == "opening_hours"
        assert json.loads(events[0]["arguments"]) == {"day": "sunday"}
        # the browser sends the result back with the next turn; the model answers with text
        answer = await ws.request({"type": "llm.chat", "tools": [owner_tool], "messages": [
            {"role": "user", "content": "Passages:\n\n[1] Hours\nOpen daily.\n\nQuestion: when?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": events[0]["call_id"], "type": "function",
                 "function": {"name": "opening_hours", "arguments": events[0]["arguments"]}}]},
            {"role": "tool", "tool_call_id": events[0]["call_id"], "content": "10:00-16:00"}]})
    assert answer[-1]["type"] == "done", answer
    text = "".join(e["text"] for e in answer if e["type"] == "delta")
    assert "10:00-16:00" in text
    assert not any(e["type"] == "tool_result" for e in events + answer), "nothing ran here"
