"""One client cannot hold the server's capacity: its unfinished requests are bounded, and the
others are still answered. In-process, over the server's real WebSocket handler and the
deterministic core of tests/unit/test_cancellation.py."""

from __future__ import annotations

import asyncio

from wasmagent.hosts.server.sessions import MAX_OPEN_REQUESTS

from ..unit.test_cancellation import FRESH, QUESTION, Rig, seeded, settle
from .test_cancellation import Socket, _state


def _terminal(sock: Socket, rid: str) -> str | None:
    events = [e for e in sock.events(rid) if e["type"] in ("done", "error")]
    return None if not events else (events[-1].get("code") or events[-1]["type"])


async def test_a_flooding_connection_is_refused_past_its_share_and_others_are_answered() -> None:
    rig = Rig(await seeded())
    rig.model.gate = asyncio.Event()  # nothing finishes until the test says so
    state = _state(rig)
    flood = Socket(state)
    extra = 20
    for n in range(MAX_OPEN_REQUESTS + extra):
        flood.say({"v": 1, "type": "ask", "id": f"f{n}", "text": QUESTION})
    late = [f"f{n}" for n in range(MAX_OPEN_REQUESTS, MAX_OPEN_REQUESTS + extra)]
    await settle(lambda: all(_terminal(flood, rid) for rid in late), "the refusals")
    assert {_terminal(flood, rid) for rid in late} == {"overloaded"}
    other = Socket(state)
    other.say({"v": 1, "type": "ask", "id": "other", "text": FRESH})
    flood.say({"v": 1, "type": "cancel", "id": "stop", "target": "f0"})  # always accepted
    await settle(lambda: _terminal(flood, "f0") is not None, "the cancel")
    assert _terminal(flood, "f0") == "cancelled"
    rig.model.gate.set()
    await settle(lambda: _terminal(other, "other") is not None, "the other client's answer",
                 turns=20_000)
    assert _terminal(other, "other") == "done"
    first = [f"f{n}" for n in range(1, MAX_OPEN_REQUESTS)]
    await settle(lambda: all(_terminal(flood, rid) for rid in first), "the flood answered",
                 turns=50_000)
    assert {_terminal(flood, rid) for rid in first} == {"done"}
    for sock in (flood, other):
        sock.leave()
        await settle(sock.task.done, "the session to end")
    assert state.in_flight_requests == 0
    await rig.service.aclose()
