"""Server fixtures: REAL processes on free loopback ports (started by
`tests/support/processes.py`: the fake OpenAI-compatible upstream and the agent server; by
`tests/support/postgres.py`: a throwaway PostgreSQL cluster), the documents they are seeded
with, and WebSocket/SSE client helpers.

Every start waits for readiness with a bounded timeout and every process is stopped at teardown
(terminate, then kill), also when a test fails. Servers are module- or session-scoped where
tests can share one: a boot loads the ONNX model (about 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from ..support.postgres import PostgresCluster, start_postgres
from ..support.processes import FakeUpstream, Server, start_fake, start_server

RECV_TIMEOUT_S = 60.0
"""A safety net on every receive and HTTP call: generous, so that a loaded machine is not a
failure (answers take milliseconds to seconds)."""

DOCS = [
    {"source": "guide/offline.md", "text": "# Offline\n\nAfter the first visit a service worker "
     "keeps every file cached, so the app works offline without any network connection."},
    {"source": "guide/install.md", "text": "# Install\n\nYou need Python 3.11 or newer. Run "
     "./build.sh serve and open the printed address in a browser."},
]
QUESTION = "does the app work offline?"


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def main_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    fake = start_fake(tmp_path_factory.mktemp("main-fake"))
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def server(main_fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """The shared server: no auth, no rate limit (fuzzing sends hundreds of requests), a short
    LLM read timeout (so a hanging upstream fails fast), the documents ingested."""
    srv = start_server(tmp_path_factory.mktemp("main-server"), main_fake, "--rate", "0",
                       "--llm-timeout", "1.5")
    try:
        asyncio.run(seed(srv))
        yield srv
    finally:
        srv.proc.stop()


async def seed(srv: Server) -> None:
    """Ingest `DOCS` into the server's default knowledge base."""
    async with ws_client(srv) as ws:
        events = await ws.request({"type": "ingest", "id": "seed", "kb": "default",
                                   "documents": DOCS})
        assert events[-1]["type"] == "done", events


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the session; `postgres.new_database()` gives each test a
    fresh database URL."""
    cluster = start_postgres()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def fake(server: Server) -> Iterator[FakeUpstream]:
    """The shared server's upstream, reset to well-behaved before and after each test."""
    assert server.fake is not None
    server.fake.control()
    yield server.fake
    server.fake.control()


# ---- a small WebSocket client -----------------------------------------------------------------


class WsClient:
    """Sends protocol requests and collects their events; every receive has a timeout."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self._n = 0
        self._held: list[dict[str, Any]] = []
        """Events of other requests that arrived while collecting one request's events."""

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, dict):
            message = json.dumps(message, ensure_ascii=False)
        await self.conn.send(message)

    async def recv(self, within: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), within)
        event: dict[str, Any] = json.loads(raw)
        return event

    async def until_terminal(self, rid: str | None = None, within: float = RECV_TIMEOUT_S
                             ) -> list[dict[str, Any]]:
        """Events (of request `rid`, or any) up to and including the terminal one; events
        of other requests are held for their own `until_terminal` call."""
        events = []
        while True:
            mine = [i for i, e in enumerate(self._held) if rid is None or e.get("id") == rid]
            event = self._held.pop(mine[0]) if mine else await self.recv(within)
            if rid is not None and event.get("id") != rid:
                self._held.append(event)
                continue
            events.append(event)
            if event["type"] in ("done", "error"):
                return events

    async def request(self, message: dict[str, Any], within: float = RECV_TIMEOUT_S
                      ) -> list[dict[str, Any]]:
        """Send one request (adding `v` and an `id` when missing) and collect its events."""
        self._n += 1
        message = {"v": 1, "id": f"r{self._n}", **message}
        await self.send(message)
        return await self.until_terminal(message["id"], within)

    async def status(self) -> dict[str, Any]:
        events = await self.request({"type": "status"})
        assert [e["type"] for e in events] == ["result", "done"], events
        data: dict[str, Any] = events[0]["data"]
        return data


@contextlib.asynccontextmanager
async def ws_client(srv: Server, *, token: str | None = None, origin: str | None = None,
                    subprotocols: Sequence[str] = ("wasmagent.v1",),
                    headers: dict[str, str] | None = None) -> AsyncIterator[WsClient]:
    offered = [Subprotocol(s) for s in subprotocols] + (
        [Subprotocol(f"bearer.{token}")] if token else [])
    conn = await asyncio.wait_for(connect(
        srv.ws_url, subprotocols=offered or None,
        origin=Origin(origin) if origin else None, additional_headers=headers, max_size=None,
        open_timeout=RECV_TIMEOUT_S, close_timeout=5), RECV_TIMEOUT_S)
    try:
        yield WsClient(conn)
    finally:
        await conn.close()


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """`(event name, data)` pairs of a Server-Sent Events body."""
    out = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out
