"""The agent service edge: every request ends with one terminal event, and nothing kills it."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.aio import collect, of
from wasmagent.agent import Agent
from wasmagent.errors import AgentError, ErrorCode
from wasmagent.ports import Host, LoopClock
from wasmagent.protocol import Ask, Delta, Event


def _agent() -> tuple[Agent, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    agent = Agent(Host(name="test", clock=LoopClock()), collect(events))
    return agent, events


async def test_status_reports_the_host_and_ends_with_done() -> None:
    agent, events = _agent()
    agent.submit('{"v": 1, "type": "status", "id": "s1"}')
    await agent.drain()
    result, done = of(events, "s1")
    assert result["type"] == "result"
    assert result["data"]["host"] == "test"
    assert result["data"]["protocol"] == 1
    assert done["type"] == "done"


async def test_malformed_input_gets_an_error_and_the_agent_keeps_serving() -> None:
    agent, events = _agent()
    for raw in ["{", "[]", '{"v": 1, "type": "nope", "id": "bad1"}', '{"v": 1, "id": "bad2"}']:
        agent.submit(raw)
    agent.submit('{"v": 1, "type": "status", "id": "ok"}')
    await agent.drain()
    errors = [e for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["bad_json", "bad_json", "bad_message", "bad_message"]
    assert [e["id"] for e in errors] == [None, None, "bad1", "bad2"]
    assert [e["type"] for e in of(events, "ok")] == ["result", "done"]


async def test_a_crashing_handler_becomes_an_internal_error_not_a_dead_agent() -> None:
    agent, events = _agent()

    async def boom(request: Ask, emit: Any) -> None:
        emit(Delta(request.id, "partial "))
        raise ZeroDivisionError("oops")

    agent.route(Ask, boom)
    agent.submit('{"v": 1, "type": "ask", "id": "a", "text": "hi"}')
    agent.submit('{"v": 1, "type": "status", "id": "s"}')
    await agent.drain()
    kinds = [(e["type"], e.get("code")) for e in of(events, "a")]
    assert kinds == [("delta", None), ("error", "internal")]
    assert of(events, "s")[-1]["type"] == "done"


async def test_agent_errors_keep_their_code() -> None:
    agent, events = _agent()

    async def refuse(request: Ask, emit: Any) -> None:
        raise AgentError(ErrorCode.NOT_FOUND, "no such knowledge base")

    agent.route(Ask, refuse)
    agent.submit('{"v": 1, "type": "ask", "id": "a", "text": "hi", "kb": "x"}')
    await agent.drain()
    assert of(events, "a") == [{"v": 1, "type": "error", "id": "a", "code": "not_found",
                                 "message": "no such knowledge base"}]


async def test_cancel_stops_a_running_request_with_a_cancelled_error() -> None:
    agent, events = _agent()
    started = asyncio.Event()

    async def slow(request: Ask, emit: Any) -> None:
        started.set()
        await asyncio.sleep(30)

    agent.route(Ask, slow)
    agent.submit('{"v": 1, "type": "ask", "id": "a", "text": "hi"}')
    await started.wait()
    agent.submit('{"v": 1, "type": "cancel", "id": "c", "target": "a"}')
    await agent.drain()
    assert of(events, "a")[-1]["code"] == "cancelled"
    assert of(events, "c")[0]["data"] == {"target": "a", "cancelled": True}
    assert agent.in_flight == 0


async def test_duplicate_ids_in_flight_are_refused() -> None:
    agent, events = _agent()
    gate = asyncio.Event()

    async def wait(request: Ask, emit: Any) -> None:
        await gate.wait()

    agent.route(Ask, wait)
    agent.submit('{"v": 1, "type": "ask", "id": "a", "text": "one"}')
    agent.submit('{"v": 1, "type": "ask", "id": "a", "text": "two"}')
    refused = [e for e in events if e["id"] is None]  # at once, before the first ends
    assert [(e["type"], e["code"]) for e in refused] == [("error", "bad_message")]
    assert "'a'" in refused[0]["message"]
    gate.set()
    await agent.drain()
    assert [e["type"] for e in of(events, "a")] == ["done"]
    assert [e for e in events if e["id"] is None] == refused


async def test_unrouted_requests_say_not_ready() -> None:
    agent, events = _agent()
    agent.submit('{"v": 1, "type": "kb.list", "id": "k"}')
    await agent.drain()
    assert of(events, "k")[0]["code"] == "not_ready"


async def test_a_failing_sink_does_not_stop_the_agent() -> None:
    delivered: list[Event] = []

    def sink(event: Event) -> None:
        if event.id == "s1":
            raise OSError("port closed")
        delivered.append(event)

    agent = Agent(Host(name="test", clock=LoopClock()), sink)
    agent.submit('{"v": 1, "type": "status", "id": "s1"}')
    agent.submit('{"v": 1, "type": "status", "id": "s2"}')
    await agent.drain()
    assert [e.TYPE for e in delivered] == ["result", "done"]


def test_events_are_plain_data() -> None:
    event: Event = Delta("x", "hello")
    assert event.to_wire() == {"v": 1, "type": "delta", "id": "x", "text": "hello"}


async def test_the_message_size_limit_is_the_hosts() -> None:
    agent, events = _agent()
    agent.max_message_bytes = 64
    agent.submit('{"v": 1, "type": "status", "id": "big", "pad": "' + "x" * 64 + '"}')
    agent.submit(b'{"v": 1, "type": "status", "id": "bytes", "pad": "' + b"x" * 64 + b'"}')
    agent.submit('{"v": 1, "type": "status", "id": "s1"}')
    await agent.drain()
    refused = [e for e in events if e["type"] == "error"]
    assert [(e["code"], e["id"]) for e in refused] == [("too_large", None)] * 2
    assert "over 64 bytes" in refused[0]["message"]
    assert [e["type"] for e in of(events, "s1")] == ["result", "done"]


async def test_a_request_cancelled_before_it_ran_still_ends_with_one_error() -> None:
    agent, events = _agent()

    async def never(request: Ask, emit: Any) -> None:
        raise AssertionError("must not run")

    agent.route(Ask, never)
    agent.submit('{"v": 1, "type": "ask", "id": "a", "text": "hi"}')
    agent.cancel_all()  # the client left before the request's task got to run
    await agent.drain()
    assert [(e["type"], e.get("code")) for e in of(events, "a")] == [("error", "cancelled")]
    assert agent.in_flight == 0


async def test_drain_returns_when_the_requests_finished_just_before_it() -> None:
    # On Python 3.12+ (Pyodide runs 3.14) awaiting a gather of finished tasks does not yield;
    # a drain built on it spun forever before the tasks' done callbacks could run.
    agent, events = _agent()

    async def quick(request: Ask, emit: Any) -> None:
        return None

    agent.route(Ask, quick)
    agent.submit('{"v": 1, "type": "ask", "id": "a", "text": "hi"}')
    await asyncio.sleep(0)  # the request runs and finishes; its done callback is pending
    await agent.drain()  # (the old drain hung here, spinning without yielding)
    assert of(events, "a")[-1]["type"] == "done"
