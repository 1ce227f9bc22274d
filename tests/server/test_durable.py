"""Durable state on the server: a SIGKILL mid-ingestion loses and duplicates nothing (SQLite
and PostgreSQL), and server processes sharing one PostgreSQL are interchangeable.

Real processes on loopback: the agent server (killed with SIGKILL, restarted on the same
database), a real PostgreSQL cluster, the fake OpenAI-compatible upstream. The expected outcome
comes from the same core ingesting the same documents uninterrupted, in this process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from wasmagent.knowledge.ingest import direct_step, ingest
from wasmagent.knowledge.library import Library
from wasmagent.ports import MemoryStore
from wasmagent.protocol import DocumentIn

from ..support.postgres import PostgresCluster
from ..support.processes import Server, start_fake, start_server
from .conftest import DOCS, QUESTION, ws_client

LONG = ("--job-lease", "1", "--max-message-bytes", str(16 << 20), "--rate", "0")
BIG = [{"source": f"shelf-{i:03d}.md", "text": f"# Shelf {i}\n\n" + "\n\n".join(
    f"## Row {r}\n\n" + " ".join(f"Item {i}-{r}-{s} says that bin {i * 37 + r * 11 + s} holds "
                                 f"part {s} of batch {r}." for s in range(12))
    for r in range(10))} for i in range(150)]


async def _reference(docs: list[dict[str, str]]) -> dict[str, Any]:
    store = MemoryStore()
    library = Library(store, None, None)
    steps = 0
    plain = direct_step(store)

    async def counting(name: str, fn: Any) -> Any:
        nonlocal steps
        steps += 1
        return await plain(name, fn)

    report = await ingest(library, "crash", [DocumentIn(**d) for d in docs], step=counting)
    kb = await library.get("crash")
    return {**report.to_dict(), "steps": steps, "chunks": len(kb), "sources": len(kb.sources)}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'durable.sqlite'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database()


async def _kill_mid_ingestion(srv: Server) -> None:
    """Start the big ingestion and SIGKILL the server once some steps are committed."""
    async with ws_client(srv) as ws:
        await ws.send({"v": 1, "type": "ingest", "id": "big", "kb": "crash", "documents": BIG})
        while True:
            event = await ws.recv(120)
            assert event["type"] == "progress", event
            # progress counts passages (`total` an estimate until the last document)
            if event["message"].startswith("indexed") and 0 < event["loaded"] < event["total"] // 2:
                break
    srv.proc.kill()


async def test_a_server_killed_mid_ingestion_finishes_it_after_restart_exactly_once(
        tmp_path: Path, database: str) -> None:
    expected = await _reference(BIG)
    assert expected["steps"] > 10
    first = start_server(tmp_path, None, *LONG, database=database)
    try:
        await _kill_mid_ingestion(first)
    finally:
        first.proc.stop()
    second = start_server(tmp_path, None, *LONG, database=database)
    try:
        async with ws_client(second) as ws:
            jobs = (await ws.request({"type": "jobs.list"}))[0]["data"]["jobs"]
            assert [j["status"] for j in jobs] == ["running"]  # as the killed process left it
            partial = (await ws.request({"type": "kb.list"}))[0]["data"]["kbs"]
            assert 0 < partial[0]["chunks"] < expected["chunks"]
            events = await ws.request({"type": "jobs.watch", "job": jobs[0]["id"]}, within=180)
            assert events[-1]["type"] == "done", events[-3:]
            job = events[-2]["data"]
            assert job["status"] == "done"
            assert job["runs"] == 2  # started by the first process, resumed by the second
            assert job["steps_done"] == expected["steps"]  # each step recorded exactly once
            for key in ("documents", "chunks_added", "duplicates", "skipped"):
                assert job["result"][key] == expected[key], key
            kbs = (await ws.request({"type": "kb.list"}))[0]["data"]["kbs"]
            assert kbs == [{"name": "crash", "chunks": expected["chunks"],
                            "sources": expected["sources"]}]
            answer = (await ws.request({"type": "ask", "text": "which bin holds part 3 of "
                                        "batch 9 on shelf 149?", "kb": "crash",
                                        "mode": "local"}))[-2]
            assert answer["citations"][0]["source"] == "shelf-149.md"
    finally:
        second.proc.stop()


async def test_two_servers_on_one_postgresql_continue_each_others_conversations(
        tmp_path: Path, postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    fake = start_fake(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = start_server(tmp_path / "a", fake, "--rate", "0", database=url)
    two = start_server(tmp_path / "b", fake, "--rate", "0", database=url)
    try:
        async with ws_client(one) as a, ws_client(two) as b:
            added = await a.request({"type": "ingest", "kb": "default", "documents": DOCS})
            assert added[-1]["type"] == "done", added
            first = await a.request({"type": "ask", "text": QUESTION, "mode": "llm",
                                     "conversation": "visitor-7"})
            assert first[-1]["type"] == "done", first[-2:]
            # the next turn goes to the other process, as a load balancer may send it
            second = await b.request({"type": "ask", "text": "and how do I install it?",
                                      "mode": "llm", "conversation": "visitor-7"})
            assert second[-1]["type"] == "done", second[-2:]
            answer = second[-2]
            assert answer["route"] == "llm"
            assert f"Earlier you asked: {QUESTION}" in answer["text"]
            assert answer["citations"][0]["source"] == "guide/install.md"  # a's knowledge
            history = (await b.request({"type": "history.list",
                                        "conversation": "visitor-7"}))[0]["data"]["items"]
            assert [h["question"] for h in history] == [QUESTION, "and how do I install it?"]
            jobs = (await b.request({"type": "jobs.list"}))[0]["data"]["jobs"]
            assert [(j["kind"], j["status"]) for j in jobs] == [("ingest", "done")]
    finally:
        for srv in (one, two):
            srv.proc.stop()
        fake.stop()


def test_the_reference_ingestion_is_deterministic() -> None:
    runs = [asyncio.run(_reference(BIG[:20])) for _ in range(2)]
    assert runs[0] == runs[1]
