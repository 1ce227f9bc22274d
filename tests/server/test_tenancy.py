"""Tenants on a server with tokens (issue 15, item 1): every client (token) has its own
knowledge bases, history, conversations and jobs, on SQLite and PostgreSQL and across server
processes; knowledge bases named with `--shared-kb` are the operator's, readable by every
client and changed by none (`forbidden`).

The core of it is one table with a row for EVERY protocol request type (a test fails when a
type is added without a row): client bob sends it, naming alice's data where the request
takes a name, and must see none of alice's data; after every row, alice's data is checked
intact. Real server processes (`tests/support/processes.py`), a real PostgreSQL cluster.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wasmagent.protocol import REQUEST_TYPES

from ..support.postgres import PostgresCluster
from ..support.processes import ROOT, Server, make_token, start_server
from .conftest import RECV_TIMEOUT_S, ws_client

SECRET = "4711"
QUESTION = "what is the launch code of project zebracorn?"
ALICE_DOCS = [{"source": "secret.md", "text": "# Secret\n\nThe launch code of project zebracorn "
               f"is {SECRET}. Only alice may know it."}]
BOB_DOCS = [{"source": "bob.md", "text": "# Bob\n\nBob's notes say that soup needs salt."}]
PUBLIC_DOCS = [{"source": "handbook.md", "text": "# Holidays\n\nEvery employee gets thirty days "
                "of paid holiday a year."}]
PUBLIC = "public"
CLI_TIMEOUT_S = 180.0

Events = list[dict[str, Any]]


@dataclass
class World:
    """A server with tokens for alice and bob, a shared `public` knowledge base, and alice's
    data: her `default` knowledge base, one turn of conversation `conv-a`, her ingestion job."""

    srv: Server
    job: str
    chunks: int


def _make_tokens(tokens_file: Path) -> dict[str, str]:
    return {name: make_token(name, tokens_file) for name in ("alice", "bob")}


def _tenant_server(log_dir: Path, database: str, tokens_file: Path, tokens: dict[str, str]
                   ) -> Server:
    srv = start_server(log_dir, None, "--tokens", str(tokens_file), "--rate", "0",
                       "--shared-kb", PUBLIC, database=database)
    srv.tokens, srv.tokens_file = tokens, tokens_file
    return srv


def _fill_shared(kind: str, database: str, log_dir: Path) -> None:
    """The operator fills the shared knowledge base, as README says: with the CLI into a
    SQLite file, or through a server without tokens on the same database."""
    if kind == "sqlite":
        docs = log_dir / "public-docs"
        docs.mkdir()
        (docs / "handbook.md").write_text(PUBLIC_DOCS[0]["text"])
        subprocess.run([sys.executable, "-m", "wasmagent", "ingest", str(docs), "--kb",
                        database.removeprefix("sqlite:///"), "--name", PUBLIC], cwd=ROOT,
                       check=True, capture_output=True, timeout=CLI_TIMEOUT_S)
        return
    operator = start_server(log_dir / "operator", None, "--rate", "0", database=database)
    try:
        async def ingest() -> None:
            async with ws_client(operator) as ws:
                events = await ws.request({"type": "ingest", "kb": PUBLIC,
                                           "documents": PUBLIC_DOCS})
                assert events[-1]["type"] == "done", events

        asyncio.run(ingest())
    finally:
        operator.proc.stop()


def _database(kind: str, request: pytest.FixtureRequest, log_dir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{log_dir / 'tenants.sqlite'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    log_dir = tmp_path_factory.mktemp(f"tenancy-{request.param}")
    database = _database(request.param, request, log_dir)
    _fill_shared(request.param, database, log_dir)
    tokens_file = log_dir / "tokens.txt"
    srv = _tenant_server(log_dir, database, tokens_file, _make_tokens(tokens_file))
    try:
        job, chunks = asyncio.run(_seed_alice(srv))
        yield World(srv, job, chunks)
    finally:
        srv.proc.stop()


async def _seed_alice(srv: Server) -> tuple[str, int]:
    async with ws_client(srv, token=srv.tokens["alice"]) as ws:
        ingested = await ws.request({"type": "ingest", "kb": "default",
                                     "documents": ALICE_DOCS})
        assert ingested[-1]["type"] == "done", ingested
        answer = await _answer(ws, {"type": "ask", "text": QUESTION, "mode": "local",
                                    "conversation": "conv-a"})
        assert SECRET in answer["text"], answer
        listed = _result(await ws.request({"type": "kb.list"}))
        chunks = {kb["name"]: kb["chunks"] for kb in listed["kbs"]}["default"]
        return ingested[-2]["data"]["job"], chunks


def _result(events: Events) -> dict[str, Any]:
    assert [e["type"] for e in events[-2:]] == ["result", "done"], events
    data: dict[str, Any] = events[-2]["data"]
    return data


async def _answer(ws: Any, request: dict[str, Any]) -> dict[str, Any]:
    events = await ws.request(request)
    assert events[-1]["type"] == "done", events
    answers = [e for e in events if e["type"] == "answer"]
    assert len(answers) == 1, events
    return answers[0]


def _error(code: str) -> Callable[[Events, World], None]:
    def check(events: Events, world: World) -> None:
        assert (events[-1]["type"], events[-1].get("code")) == ("error", code), events

    return check


def _done(events: Events, world: World) -> None:
    assert events[-1]["type"] == "done", events


def _no_kb_named_default(events: Events, world: World) -> None:
    names = [kb["name"] for kb in _result(events)["kbs"]]
    assert "default" not in names, events
    assert {"name": PUBLIC, "shared": True}.items() <= _shared_entry(events).items()


def _shared_entry(events: Events) -> dict[str, Any]:
    entry: dict[str, Any] = {kb["name"]: kb for kb in _result(events)["kbs"]}[PUBLIC]
    return entry


def _no_jobs_of_alice(events: Events, world: World) -> None:
    assert world.job not in [job["id"] for job in _result(events)["jobs"]], events


def _no_history_of_alice(events: Events, world: World) -> None:
    assert all("zebracorn" not in item["question"] for item in _result(events)["items"])


def _status_names_nobody(events: Events, world: World) -> None:
    data = _result(events)
    assert "log" not in data
    assert "metrics" not in data
    assert "alice" not in json.dumps(data)


SECRET_SOURCE = {"kb": "default", "source": "secret.md", "anchor": "secret"}
ROWS: dict[str, tuple[dict[str, Any], Callable[[Events, World], None]]] = {
    # bob's request (`type` from the key) -> what bob must get
    "status": ({}, _status_names_nobody),
    "ask": ({"text": QUESTION, "kb": "default", "mode": "local"}, _error("not_found")),
    "embed": ({"texts": ["zebracorn"]}, _done),
    "ingest": ({"kb": "bobkb", "documents": BOB_DOCS}, _done),
    "cancel": ({"target": "r1"}, _done),
    "kb.list": ({}, _no_kb_named_default),
    "kb.delete": ({"kb": "default"}, _error("not_found")),
    "kb.passage": (SECRET_SOURCE, _error("not_found")),
    "history.list": ({"limit": 500}, _no_history_of_alice),
    "data.clear": ({}, _done),
    # browser-only requests: the server has no handler for them
    "server.connect": ({"url": "ws://127.0.0.1:1/v1/ws"}, _error("not_ready")),
    "tools.load": ({"source": "t.py", "code": "x = 1"}, _error("not_ready")),
    "jobs.list": ({"limit": 500}, _no_jobs_of_alice),
    "jobs.get": ({"job": "{job}"}, _error("not_found")),
    "jobs.cancel": ({"job": "{job}"}, _error("not_found")),
    "jobs.watch": ({"job": "{job}"}, _error("not_found")),
    # a model turn relayed for a browser's own agent loop (this server has no LLM)
    "llm.chat": ({"messages": [{"role": "user", "content": "hello"}]}, _error("not_ready")),
}
EXTRA_ROWS: dict[str, tuple[dict[str, Any], Callable[[Events, World], None]]] = {
    # the same request types again, in the forms that once leaked the most
    "ask (default kb)": ({"type": "ask", "text": QUESTION, "mode": "local"}, _done),
    "ask (alice's conversation)": ({"type": "ask", "text": "and what was the code?",
                                    "mode": "local", "conversation": "conv-a"}, _done),
    "history.list (alice's conversation)": ({"type": "history.list",
                                             "conversation": "conv-a"},
                                            _no_history_of_alice),
    "ingest into a shared kb": ({"type": "ingest", "kb": PUBLIC, "documents": BOB_DOCS},
                                _error("forbidden")),
    "kb.delete of a shared kb": ({"type": "kb.delete", "kb": PUBLIC}, _error("forbidden")),
}


def test_the_table_has_a_row_for_every_request_type() -> None:
    assert set(ROWS) == set(REQUEST_TYPES)


def _message(name: str, fields: dict[str, Any], world: World) -> dict[str, Any]:
    filled = {k: v.format(job=world.job) if isinstance(v, str) else v for k, v in fields.items()}
    return {"type": name, **filled} if "type" not in fields else filled


@pytest.mark.parametrize("name", [*ROWS, *EXTRA_ROWS])
async def test_bob_cannot_see_or_change_alices_data(world: World, name: str) -> None:
    fields, check = ROWS[name] if name in ROWS else EXTRA_ROWS[name]
    async with ws_client(world.srv, token=world.srv.tokens["bob"]) as bob:
        events = await bob.request(_message(name, fields, world))
    check(events, world)
    seen = json.dumps(events)
    assert SECRET not in seen
    assert "zebracorn" not in seen
    await _alice_is_intact(world)


async def _alice_is_intact(world: World) -> None:
    async with ws_client(world.srv, token=world.srv.tokens["alice"]) as alice:
        kbs = {kb["name"]: kb for kb in _result(await alice.request({"type": "kb.list"}))["kbs"]}
        assert kbs["default"]["chunks"] == world.chunks
        assert kbs[PUBLIC]["shared"] is True
        answer = await _answer(alice, {"type": "ask", "text": QUESTION, "mode": "local"})
        assert SECRET in answer["text"]
        turns = _result(await alice.request({"type": "history.list",
                                             "conversation": "conv-a"}))["items"]
        assert [t["question"] for t in turns] == [QUESTION]
        job = _result(await alice.request({"type": "jobs.get", "job": world.job}))
        assert job["status"] == "done"
        passage = _result(await alice.request({"type": "kb.passage", **SECRET_SOURCE}))
        assert SECRET in passage["texts"][0]


async def test_a_shared_kb_is_readable_by_every_client(world: World) -> None:
    for name in ("alice", "bob"):
        async with ws_client(world.srv, token=world.srv.tokens[name]) as ws:
            answer = await _answer(ws, {"type": "ask", "text": "what paid holiday does every employee get?",
                                        "kb": PUBLIC, "mode": "local"})
            assert "thirty days" in answer["text"]
            assert answer["citations"][0]["source"] == "handbook.md"
            passage = _result(await ws.request({"type": "kb.passage", "kb": PUBLIC,
                                                "source": "handbook.md",
                                                "anchor": "holidays"}))
            assert "thirty days" in passage["texts"][0]
            listed = _result(await ws.request({"type": "kb.list"}))["kbs"]
            assert next(kb for kb in listed if kb["name"] == PUBLIC)["shared"] is True
            await ws.request({"type": "data.clear"})
            # clearing one's own data leaves the shared knowledge base as it was
            listed = _result(await ws.request({"type": "kb.list"}))["kbs"]
            assert PUBLIC in [kb["name"] for kb in listed]
    await _alice_restore(world)


async def _alice_restore(world: World) -> None:
    """Alice cleared her own data above (proving `data.clear` works for her): seed it again
    for the table's rows that may run after this test."""
    job, chunks = await _seed_alice(world.srv)
    world.job, world.chunks = job, chunks


async def test_two_server_processes_on_one_postgresql_keep_tenants_apart(
        tmp_path: Path, postgres: PostgresCluster) -> None:
    database = postgres.new_database()
    tokens_file = tmp_path / "tokens.txt"
    tokens = _make_tokens(tokens_file)
    one = _tenant_server(tmp_path / "one", database, tokens_file, tokens)
    two = _tenant_server(tmp_path / "two", database, tokens_file, tokens)
    try:
        job, _ = await _seed_alice(one)  # alice's data, written through process one
        async with ws_client(two, token=tokens["bob"]) as bob:
            names = [kb["name"] for kb in _result(await bob.request({"type": "kb.list"}))["kbs"]]
            assert names == []  # nothing shared was filled in this database
            ask = await bob.request({"type": "ask", "text": QUESTION, "kb": "default",
                                     "mode": "local"})
            assert ask[-1].get("code") == "not_found", ask
            history = await bob.request({"type": "history.list", "conversation": "conv-a"})
            assert _result(history)["items"] == []
            jobs = _result(await bob.request({"type": "jobs.list"}))["jobs"]
            assert jobs == []
            got = await bob.request({"type": "jobs.get", "job": job})
            assert got[-1].get("code") == "not_found", got
            assert (await bob.request({"type": "data.clear"}))[-1]["type"] == "done"
        async with ws_client(two, token=tokens["alice"]) as alice:
            answer = await _answer(alice, {"type": "ask", "text": QUESTION, "mode": "local"})
            assert SECRET in answer["text"]  # her own, written on process one
            turns = _result(await alice.request({"type": "history.list",
                                                 "conversation": "conv-a"}))["items"]
            assert [t["question"] for t in turns] == [QUESTION]
            assert _result(await alice.request({"type": "jobs.get", "job": job}))["id"] == job
    finally:
        one.proc.stop()
        two.proc.stop()


def test_a_token_name_that_cannot_be_a_tenant_fails_the_start(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.txt"
    tokens_file.write_text(f"ops/team {'0' * 64}\n")
    done = subprocess.run([sys.executable, "-m", "wasmagent", "server", "--port", "1",
                           "--tokens", str(tokens_file), "--store", str(tmp_path / "x.sqlite")],
                          cwd=ROOT, capture_output=True, text=True, timeout=RECV_TIMEOUT_S,
                          check=False)
    assert done.returncode != 0
    assert "cannot name a tenant" in done.stderr
