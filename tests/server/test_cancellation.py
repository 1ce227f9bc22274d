"""Clients that leave mid-request never stall anyone else on the server.

1. In-process and deterministic: the server's real WebSocket handler (`serve_websocket`, the
   same ASGI code uvicorn runs) over the core of `tests/unit/test_cancellation.py` (double
   ports, no timers). A client sends a question and goes away after `k` loop turns, for every
   k until the answer would have been complete; after each, the request is logged as cancelled
   (or ok), a new client is answered exactly like an undisturbed run, the server's in-flight
   and connection gauges are back to 0 and no task is left behind.
2. Against a real server process (real model, SQLite, uvicorn): the probe that found the wedge,
   client A sending a burst of questions and hanging up at once or after a few milliseconds
   while client B asks, round after round; then a question cancelled right after it is sent.
   B is answered every round, and the process ends idle: nothing in flight, ready, and its
   task count back where it was.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import MutableMapping
from typing import Any

from wasmagent.hosts.server.app import _readiness
from wasmagent.hosts.server.config import ServerConfig
from wasmagent.hosts.server.security import RateLimiter
from wasmagent.hosts.server.sessions import serve_websocket
from wasmagent.hosts.server.state import ServerState

from ..support.processes import Server
from ..unit.test_cancellation import FRESH, Rig, _shape, seeded, settle
from ..unit.test_cancellation import QUESTION as FERRY
from ..unit.test_watchdog import Clock
from .conftest import QUESTION, RECV_TIMEOUT_S, ws_client

SCOPE = {"type": "websocket", "path": "/v1/ws", "headers": [], "subprotocols": ["wasmagent.v1"],
         "client": ("127.0.0.1", 50000)}


class Socket:
    """One client's side of an ASGI WebSocket: what it sends in, what the server sent out."""

    def __init__(self, state: ServerState) -> None:
        self.incoming: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.sent: list[MutableMapping[str, Any]] = []
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.get_running_loop().create_task(
            serve_websocket(state, dict(SCOPE), self.incoming.get, self._send))

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)

    def say(self, message: dict[str, Any]) -> None:
        self.incoming.put_nowait({"type": "websocket.receive", "text": json.dumps(message)})

    def leave(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1001})

    def events(self, rid: str) -> list[dict[str, Any]]:
        return [e for e in (json.loads(m["text"]) for m in self.sent
                            if m["type"] == "websocket.send") if e.get("id") == rid]


def _state(rig: Rig) -> ServerState:
    state = ServerState(ServerConfig(rate=0), rig.service, rig.service.telemetry,
                        RateLimiter(0, 0))
    state.ready = True
    return state


def _outcomes(rig: Rig, rid: str) -> list[str]:
    return [line["outcome"] for line in rig.service.telemetry.recent()
            if line["event"] == "request" and line["request_id"] == rid]


async def _answered(rig: Rig, state: ServerState) -> tuple[str, list[str], bool, str]:
    sock = Socket(state)
    sock.say({"v": 1, "type": "ask", "id": "fresh", "text": FRESH})
    await settle(lambda: any(e["type"] in ("done", "error") for e in sock.events("fresh")),
                 "a new client's answer")
    assert sock.events("fresh")[-1]["type"] == "done", sock.events("fresh")
    answer = next(e for e in sock.events("fresh") if e["type"] == "answer")
    sock.leave()
    await settle(sock.task.done, "the new client's session to end")
    return _shape(answer)


async def test_a_client_leaving_at_every_step_of_its_question_stalls_nobody() -> None:
    data = await seeded()
    baseline = asyncio.all_tasks()
    reference = None
    for k in range(400):
        rig = Rig(data)
        state = _state(rig)
        if reference is None:
            reference = await _answered(rig, state)
        before = asyncio.all_tasks()
        sock = Socket(state)
        sock.say({"v": 1, "type": "ask", "id": "target", "text": FERRY})
        for _ in range(k):
            await asyncio.sleep(0)
        complete = any(e["type"] in ("done", "error") for e in sock.events("target"))
        sock.leave()
        await settle(sock.task.done, f"the session to end after leaving at step {k}")
        assert _outcomes(rig, "target") in (["cancelled"], ["ok"]), (k, _outcomes(rig, "target"))
        assert await _answered(rig, state) == reference, k
        await settle(rig.idle, f"the pipeline idle after leaving at step {k}")
        assert (state.in_flight_requests, state.ws_connections) == (0, 0), k
        await settle(lambda b=before: not asyncio.all_tasks() - b,
                     f"no task left over after leaving at step {k}")
        await rig.service.aclose()
        await settle(lambda: not asyncio.all_tasks() - baseline, "the service's tasks gone")
        if complete:
            assert k > 10, "the question was answered before it could be interrupted"
            return
    raise AssertionError("the question never completed")


# ---- a real server process ------------------------------------------------------------------


def _gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    assert found, name
    return float(found.group(1))


async def _idle(server: Server, tasks_before: float) -> None:
    """Wait (bounded, polling the server's own gauges) until nothing is in flight and the
    task count is back to what it was."""
    deadline = time.monotonic() + RECV_TIMEOUT_S
    while True:
        metrics = server.metrics()
        idle = (_gauge(metrics, "wasmagent_in_flight_requests") == 0
                and _gauge(metrics, "wasmagent_in_flight_questions") == 0
                and _gauge(metrics, "wasmagent_asyncio_tasks") <= tasks_before)
        if idle or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert _gauge(metrics, "wasmagent_in_flight_requests") == 0, metrics
    assert _gauge(metrics, "wasmagent_in_flight_questions") == 0, metrics
    assert _gauge(metrics, "wasmagent_asyncio_tasks") <= tasks_before, metrics
    assert _gauge(metrics, "wasmagent_stalled_stages") == 0, metrics


async def test_clients_hanging_up_mid_burst_never_stall_the_next_client(server: Server) -> None:
    tasks_before = _gauge(server.metrics(), "wasmagent_asyncio_tasks")
    for round_ in range(12):
        async with ws_client(server) as leaver:
            for n in range(30):
                await leaver.send({"v": 1, "type": "ask", "id": f"a{round_}-{n}",
                                   "text": QUESTION, "mode": "local"})
            # hang up at once or a little later: the cancellations land in every stage
            await asyncio.sleep((0, 0.002, 0.01, 0.05)[round_ % 4])
        async with ws_client(server) as stayer:
            events = await stayer.request({"type": "ask", "text": QUESTION, "mode": "local"})
            assert events[-1]["type"] == "done", (round_, events[-1])
            answer = next(e for e in events if e["type"] == "answer")
            assert [c["source"] for c in answer["citations"]][:1] == ["guide/offline.md"], answer
    async with ws_client(server) as ws:  # a question cancelled the moment it is sent
        await ws.send({"v": 1, "type": "ask", "id": "quick", "text": QUESTION, "mode": "local"})
        await ws.send({"v": 1, "type": "cancel", "id": "stop", "target": "quick"})
        terminal = (await ws.until_terminal("quick"))[-1]
        assert terminal["type"] == "done" or terminal["code"] == "cancelled", terminal
        events = await ws.request({"type": "ask", "text": QUESTION, "mode": "local"})
        assert events[-1]["type"] == "done", events[-1]
    await _idle(server, tasks_before)
    ready = server.readyz()
    assert ready["ready"] is True, ready
    assert ready["stalled"] == []


async def test_a_stuck_stage_makes_the_server_unready_named_and_counted() -> None:
    clock = Clock()
    rig = Rig(await seeded(), clock)
    state = _state(rig)
    assert _readiness(state)["ready"] is True
    rig.model.gate = asyncio.Event()  # the model runtime stops answering
    sock = Socket(state)
    sock.say({"v": 1, "type": "ask", "id": "stuck", "text": FERRY})
    await settle(lambda: rig.counts()["model run"] > 0, "the question reaches the model")
    assert _readiness(state)["ready"] is True  # a check sees the work arrive (as `run` would)
    clock.offset += rig.service.watchdog.stall_after_s + 1
    body = _readiness(state)
    assert body["ready"] is False
    assert {s["stage"] for s in body["stalled"]} == {"route", "embed"}
    metrics = state.metrics()
    assert re.search(r"^wasmagent_stalled_stages 2$", metrics, re.MULTILINE), metrics
    assert 'wasmagent_stage_stalls_total{stage="embed"} 1' in metrics
    rig.model.gate.set()
    await settle(lambda: bool(sock.events("stuck")), "the answer once the model is back")
    assert _readiness(state)["ready"] is True
    sock.leave()
    await settle(sock.task.done, "the session to end")
    await rig.service.aclose()
