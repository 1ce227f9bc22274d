"""The `Store` contract as the core relies on it, run on every store: memory, SQLite (a temp
file) and PostgreSQL (a real throwaway cluster, `tests/support/postgres.py`).

Then what only the durable SQL stores promise: data and schema survive reopening, migrations
run once (also when several processes open one database at once), an old SQLite file from
before migrations is adopted, a newer schema is refused, an unreachable database is a clear
`storage_failed` that never shows its password, and the server runs on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from wasmagent.errors import AgentError, ErrorCode
from wasmagent.hosts.server.config import DATABASE_ENV, DEFAULT_DATABASE, database_url
from wasmagent.hosts.sql import (
    SCHEMA_VERSION,
    PostgresStore,
    SqliteStore,
    SqlStore,
    open_store,
    prefix_end,
    redact_url,
)
from wasmagent.ports import MemoryStore, Store

from ..support.postgres import PostgresCluster
from ..support.processes import Server, free_port, start_server
from .conftest import DOCS, QUESTION, seed, ws_client

KINDS = ("memory", "sqlite", "postgresql")
DURABLE = ("sqlite", "postgresql")


@dataclass
class Place:
    """Where one test's data lives; every `open()` is a new handle (its own connection or pool)
    on the same data. Memory has one handle: it lives as long as the process."""

    kind: str
    url: str = ""
    memory: MemoryStore = field(default_factory=MemoryStore)
    handles: list[SqlStore] = field(default_factory=list)

    async def open(self) -> Store:
        if self.kind == "memory":
            return self.memory
        store = await open_store(self.url)
        self.handles.append(store)
        return store

    async def close(self, store: Store) -> None:
        if isinstance(store, SqliteStore | PostgresStore) and store in self.handles:
            self.handles.remove(store)
            await store.aclose()

    async def close_all(self) -> None:
        for store in list(self.handles):
            await self.close(store)


def _url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        return cluster.new_database()
    return str(tmp_path / "store.sqlite") if kind == "sqlite" else ""


@pytest.fixture(params=KINDS)
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    """Each contract test runs on every store."""
    here = Place(request.param, _url(request.param, request, tmp_path))
    yield here
    await here.close_all()


@pytest.fixture(params=DURABLE)
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    """The stores that keep data past a close."""
    here = Place(request.param, _url(request.param, request, tmp_path))
    yield here
    await here.close_all()


async def contents(store: Store) -> dict[str, bytes | None]:
    return {k: await store.get(k) for k in await store.keys()}


async def conflict(write: Awaitable[None]) -> AgentError:
    with pytest.raises(AgentError) as caught:
        await write
    assert caught.value.code is ErrorCode.CONFLICT, caught.value
    return caught.value


# ---- the contract, on every store ------------------------------------------------------------


async def test_values_round_trip_byte_for_byte(place: Place) -> None:
    store = await place.open()
    values = {"empty": b"", "binary": bytes(range(256)) * 4, "nul": b"\x00\x00",
              "large": os.urandom(5 * 1024 * 1024), "text": "ünïcode ✓".encode()}
    for key, value in values.items():
        await store.put(key, value)
    for key, value in values.items():
        got = await store.get(key)
        assert type(got) is bytes
        assert got == value, key
    await store.put("text", b"replaced")
    assert await store.get("text") == b"replaced"
    assert await store.get("missing") is None
    await store.delete("binary")
    await store.delete("never-there")  # deleting a missing key is not an error
    assert await store.get("binary") is None
    assert await store.keys() == ["empty", "large", "nul", "text"]


KEYS = ["a", "a%", "a%b", "a_b", "aXb", "ab", "a\\b", "b", "kb/x", "kb/y/1", "kb0", "kb",
        "kb/\U0010ffff", "kb/\U0010ffffz", "é", "éa", "日本", "日本語", "🙂", "🙂x",
        "x\ud7ffa", "x\ue000", "Z", " lead", "%", "_"]
PREFIXES = ["", "a", "a%", "a_", "%", "_", "a\\", "kb/", "kb", "é", "日本", "🙂", "x\ud7ff",
            "kb/\U0010ffff", "\U0010ffff", "zzz"]


async def test_keys_are_sorted_and_prefixes_are_exact(place: Place) -> None:
    """Code point order, as Python sorts; `%`, `_` and `\\` are plain characters in a
    prefix, not wildcards; astral and edge-of-range characters behave."""
    store = await place.open()
    for key in KEYS:
        await store.put(key, key.encode("utf-8", "surrogatepass"))
    assert await store.keys() == sorted(KEYS)
    for prefix in PREFIXES:
        assert await store.keys(prefix) == sorted(k for k in KEYS if k.startswith(prefix)), prefix


def test_prefix_end_bounds_exactly_the_prefixed_strings() -> None:
    assert prefix_end("") is None
    assert prefix_end("kb/") == "kb0"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff\U0010ffff") is None
    assert prefix_end("x\ud7ff") == "x\ue000", "surrogates cannot be stored: skip them"


async def test_commit_deletes_before_it_puts(place: Place) -> None:
    store = await place.open()
    await store.commit({"a": b"1", "b": b"2", "c": b"3"})
    await store.commit({"a": b"new"}, deletes=["a", "b", "absent"])
    assert await contents(store) == {"a": b"new", "c": b"3"}
    await store.commit({})  # nothing to do is fine
    assert await contents(store) == {"a": b"new", "c": b"3"}


@pytest.mark.parametrize("expect", [
    {"a": b"1", "b": b"changed"},      # a value differs
    {"a": b"1", "b": None},            # expected absent, but present
    {"a": b"1", "zz": b"x"},           # expected present, but absent
    {"a": b"1", "b": b""},             # an empty value is a value, not "absent"
], ids=["value-differs", "absent-but-present", "present-but-absent", "empty-is-not-absent"])
async def test_a_failed_expectation_writes_nothing(place: Place,
                                                   expect: dict[str, bytes | None]) -> None:
    store = await place.open()
    await store.commit({"a": b"1", "b": b"2", "c": b"3"})
    before = await contents(store)
    error = await conflict(store.commit({"a": b"9", "new": b"x"}, deletes=["c", "a"],
                                        expect=expect))
    assert "was not applied" in error.message
    assert await contents(store) == before, "neither the puts nor the deletes landed"


async def test_expectations_that_hold_let_the_commit_through(place: Place) -> None:
    store = await place.open()
    await store.commit({"lease": b"", "job": b"v1"}, expect={"lease": None, "job": None})
    await store.commit({"job": b"v2"}, deletes=["lease"], expect={"lease": b"", "job": b"v1"})
    await store.commit({"job": b"v3"}, expect={"job": b"v2", "lease": None, "other": None})
    assert await contents(store) == {"job": b"v3"}


async def test_racing_commits_on_one_key_exactly_one_wins(place: Place) -> None:
    """Two handles (two connections, for SQL stores) commit against the same expectation at
    the same time, again and again: one wins, the other gets `conflict`, nothing is lost."""
    one, two = await place.open(), await place.open()
    for n in range(15):
        key = f"job/{n}/lease"
        await _race(one, two, key, None, b"taken")
        await _race(one, two, key, await one.get(key), b"renewed")


async def _race(one: Store, two: Store, key: str, expected: bytes | None, value: bytes
                ) -> None:
    results = await asyncio.gather(
        one.commit({key: value + b" by one"}, expect={key: expected}),
        two.commit({key: value + b" by two"}, expect={key: expected}), return_exceptions=True)
    winners = [name for name, r in zip(("one", "two"), results, strict=True) if r is None]
    losers = [r for r in results if r is not None]
    assert len(winners) == 1, results
    assert isinstance(losers[0], AgentError), losers
    assert losers[0].code is ErrorCode.CONFLICT, losers
    assert await one.get(key) == value + b" by " + winners[0].encode()
    assert await two.get(key) == value + b" by " + winners[0].encode()


async def test_commits_that_read_what_the_other_writes_never_both_land(place: Place) -> None:
    """No write skew: a job may finish only if not cancelled, a cancel lands only if the job
    has not finished. Raced again and again, never both."""
    one, two = await place.open(), await place.open()
    for n in range(30):
        done, cancel = f"job/{n}/done", f"job/{n}/cancel"
        results = await asyncio.gather(
            one.commit({done: b"1"}, expect={cancel: None}),
            two.commit({cancel: b"1"}, expect={done: None}), return_exceptions=True)
        assert None in results, results
        assert not (await one.get(done) and await one.get(cancel)), f"round {n}: both landed"


async def test_large_commits_are_atomic_and_race_like_small_ones(place: Place) -> None:
    """Hundreds of keys in one commit (PostgreSQL then locks the whole store, not each key)."""
    one, two = await place.open(), await place.open()
    batch = {f"big/{i:04d}": bytes([i % 256]) * 100 for i in range(300)}
    await conflict(one.commit(batch, expect={"big/0000": b"not there"}))
    assert await one.keys("big/") == []
    for n in range(5):
        lease = f"lease/{n}"
        results = await asyncio.gather(
            one.commit({**batch, lease: b"one"}, expect={lease: None}),
            two.commit({**batch, lease: b"two"}, expect={lease: None}), return_exceptions=True)
        assert results.count(None) == 1, results
    assert await two.keys("big/") == sorted(batch)


async def test_no_update_is_lost_under_contention(place: Place) -> None:
    """Read, then commit expecting what was read, retry on conflict: the pattern durable
    jobs use. Four writers on their own handles add 1 to one counter 8 times each."""
    handles = [await place.open() for _ in range(4)]
    await handles[0].put("counter", b"0")

    async def add_one(store: Store) -> None:
        while True:
            seen = await store.get("counter")
            assert seen is not None
            try:
                await store.commit({"counter": str(int(seen) + 1).encode()},
                                   expect={"counter": seen})
                return
            except AgentError as exc:
                if exc.code is not ErrorCode.CONFLICT:
                    raise
            await asyncio.sleep(0)

    async def writer(store: Store) -> None:
        for _ in range(8):
            await add_one(store)

    await asyncio.wait_for(asyncio.gather(*(writer(s) for s in handles)), 60)
    assert await handles[0].get("counter") == b"32"


async def test_a_plain_put_cannot_slip_under_an_expected_absent_key(place: Place) -> None:
    """A put racing a commit that expects the key absent: either the put lands first and the
    commit conflicts, or the commit lands and the put overwrites it after; never the commit
    writing over a put it claimed not to see."""
    one, two = await place.open(), await place.open()
    for n in range(15):
        key = f"k{n}"
        results = await asyncio.gather(one.commit({key: b"commit"}, expect={key: None}),
                                       two.put(key, b"put"), return_exceptions=True)
        final = await one.get(key)
        if results[0] is None:
            assert final == b"put", "the commit came first, so the put is the last write"
        else:
            assert isinstance(results[0], AgentError)
            assert results[0].code is ErrorCode.CONFLICT
            assert final == b"put"


@pytest.mark.parametrize(("before", "writer"), [
    (None, "INSERT INTO kv VALUES ('k', 'theirs')"),
    (b"v", "UPDATE kv SET value = 'theirs' WHERE key = 'k'"),
    (b"v", "DELETE FROM kv WHERE key = 'k'"),
], ids=["insert", "update", "delete"])
async def test_a_postgres_commit_waits_for_a_writer_in_flight_then_conflicts(
        postgres: PostgresCluster, before: bytes | None, writer: str) -> None:
    """Deterministically, the window the races above only may hit: another connection has
    written the expected key but not committed yet. The commit must wait for it and then
    refuse, not overwrite a change it never saw (whether or not that writer locked anything)."""
    url = postgres.new_database()
    store = await PostgresStore.open(url)
    raw, watcher = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        if before is not None:
            await store.put("k", before)
        in_flight = raw.transaction()
        await in_flight.start()
        await raw.execute(writer)
        commit = asyncio.create_task(store.commit({"k": b"mine"}, expect={"k": before}))
        async with asyncio.timeout(60):  # a safety net: until the commit waits on a lock
            while not await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"):
                assert not commit.done(), "the commit waits for the other writer's row"
                await asyncio.sleep(0.01)
        assert not commit.done(), "the commit waits for the other writer's row"
        await in_flight.commit()
        await conflict(commit)
        assert await store.get("k") == (None if writer.startswith("DELETE") else b"theirs")
    finally:
        await watcher.close()
        await raw.close()
        await store.aclose()


# ---- durable stores: reopening, migrations, adoption -------------------------------------------


async def test_data_survives_closing_and_reopening(durable: Place) -> None:
    store = await durable.open()
    await store.put("kb/a", b"\x00alpha")
    await store.commit({"kb/b": b"beta"}, expect={"kb/b": None})
    await durable.close(store)
    again = await durable.open()
    assert await contents(again) == {"kb/a": b"\x00alpha", "kb/b": b"beta"}


async def test_migrations_run_once_and_reopening_changes_nothing(
        durable: Place, request: pytest.FixtureRequest) -> None:
    store = await durable.open()
    assert isinstance(store, SqliteStore | PostgresStore)
    assert await store.schema_version() == SCHEMA_VERSION
    first = _migration_record(durable, request)
    await store.put("x", b"1")
    await durable.close(store)
    for _ in range(2):
        again = await durable.open()
        assert isinstance(again, SqliteStore | PostgresStore)
        assert await again.schema_version() == SCHEMA_VERSION
        assert await again.get("x") == b"1"
        await durable.close(again)
    assert _migration_record(durable, request) == first, "no migration ran a second time"


def _migration_record(place: Place, request: pytest.FixtureRequest) -> str:
    """What the database records about its migrations (user_version, or the rows of
    schema_migrations with the time each was applied)."""
    if place.kind == "sqlite":
        with sqlite3.connect(place.url) as db:
            return str(db.execute("PRAGMA user_version").fetchone()[0])
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    rows = cluster.psql("SELECT version, applied_at FROM schema_migrations ORDER BY version",
                        database=place.url.rsplit("/", 1)[1])
    assert len(rows.splitlines()) == SCHEMA_VERSION, rows
    return rows


async def test_stores_opening_one_postgres_database_at_once_all_succeed(
        postgres: PostgresCluster) -> None:
    """Server processes started together migrate one database together: an advisory lock
    makes them take turns, so none fails and each migration is recorded once."""
    url = postgres.new_database()
    stores = await asyncio.gather(*(PostgresStore.open(url) for _ in range(6)))
    try:
        assert [await s.schema_version() for s in stores] == [SCHEMA_VERSION] * 6
        await stores[0].put("k", b"v")
        assert await stores[5].get("k") == b"v"
    finally:
        for store in stores:
            await store.aclose()
    count = postgres.psql("SELECT count(*) FROM schema_migrations", url.rsplit("/", 1)[1])
    assert int(count) == SCHEMA_VERSION


async def test_an_old_sqlite_file_is_adopted_with_its_data(tmp_path: Path) -> None:
    """A file written before migrations existed (the kv table, user_version 0)."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        db.executemany("INSERT INTO kv VALUES (?, ?)", [("kb/default/meta", b"{}"),
                                                       ("history/1", b"\x01\x02")])
    db.close()
    store = await open_store(path)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert await contents(store) == {"history/1": b"\x01\x02", "kb/default/meta": b"{}"}
        await store.commit({"new": b"1"}, expect={"new": None})
    finally:
        await store.aclose()


async def test_a_newer_schema_is_refused_not_downgraded(
        durable: Place, request: pytest.FixtureRequest) -> None:
    store = await durable.open()
    await durable.close(store)
    if durable.kind == "sqlite":
        with sqlite3.connect(durable.url) as db:
            db.execute("PRAGMA user_version = 99")
        db.close()
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        cluster.psql("INSERT INTO schema_migrations (version) VALUES (99)",
                     durable.url.rsplit("/", 1)[1])
    with pytest.raises(AgentError) as caught:
        await durable.open()
    assert caught.value.code is ErrorCode.STORAGE
    assert "schema version 99, newer than this wasmagent knows" in caught.value.message


# ---- failures that must read clearly --------------------------------------------------------


async def test_an_unreachable_postgres_is_storage_failed_without_the_password() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://agent:Pa55-w0rd-xyz@127.0.0.1:{port}/wasmagent"
    with pytest.raises(AgentError) as caught:
        await asyncio.wait_for(open_store(url), 30)
    error = caught.value
    assert error.code is ErrorCode.STORAGE
    assert f"PostgreSQL at postgresql://agent:***@127.0.0.1:{port}/wasmagent failed" in error.message
    assert "Pa55-w0rd-xyz" not in error.message
    assert "Pa55-w0rd-xyz" not in repr(error)
    assert error.__cause__ is None, "the driver's exception (and its text) is not chained"


async def test_a_missing_postgres_database_is_storage_failed(postgres: PostgresCluster) -> None:
    url = postgres.url("no_such_database", password="s3cr3t-pw")
    with pytest.raises(AgentError) as caught:
        await open_store(url)
    assert caught.value.code is ErrorCode.STORAGE
    assert 'database "no_such_database" does not exist' in caught.value.message
    assert "s3cr3t-pw" not in caught.value.message


async def test_a_malformed_postgres_url_is_storage_failed_without_the_password() -> None:
    with pytest.raises(AgentError) as caught:
        await open_store("postgresql://agent:hunter2-secret@127.0.0.1:notaport/db")
    assert caught.value.code is ErrorCode.STORAGE
    assert "hunter2-secret" not in caught.value.message


async def test_a_sqlite_file_that_cannot_be_opened_is_storage_failed(tmp_path: Path) -> None:
    with pytest.raises(AgentError) as caught:
        await open_store(tmp_path / "no" / "such" / "dir" / "x.sqlite")
    assert caught.value.code is ErrorCode.STORAGE
    assert "cannot open SQLite database" in caught.value.message


async def test_a_closed_postgres_connection_is_storage_failed(postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    store = await PostgresStore.open(url, max_size=1)
    try:
        postgres.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      f"WHERE datname = '{url.rsplit('/', 1)[1]}'")
        with pytest.raises(AgentError) as caught:
            await store.get("k")
        assert caught.value.code is ErrorCode.STORAGE
        assert await store.get("k") is None, "the pool replaces the broken connection"
    finally:
        await store.aclose()


# ---- database URLs ---------------------------------------------------------------------------


async def test_open_store_reads_every_url_form(tmp_path: Path, postgres: PostgresCluster,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    forms = {":memory:": ":memory:", "sqlite://": ":memory:", "sqlite:///rel.sqlite":
             "rel.sqlite", f"sqlite:///{tmp_path}/abs.sqlite": f"{tmp_path}/abs.sqlite",
             "plain.sqlite": "plain.sqlite"}
    for url, path in forms.items():
        store = await open_store(url)
        assert isinstance(store, SqliteStore), url
        assert store.path == path, url
        await store.aclose()
    for scheme in ("postgresql", "postgres"):
        store = await open_store(postgres.url().replace("postgresql", scheme, 1))
        assert store.kind == "postgresql"
        await store.aclose()
    with pytest.raises(AgentError, match=r"unsupported database URL mysql://u:\*\*\*@h/db"):
        await open_store("mysql://u:pw@h/db")


def test_redact_url_masks_passwords_only() -> None:
    assert redact_url("postgresql://u:p%40ss@db.example:5432/app?sslmode=require") == \
        "postgresql://u:***@db.example:5432/app?sslmode=require"
    assert redact_url("postgresql://db/app?user=u&password=pw") == \
        "postgresql://db/app?user=u&password=***"
    assert redact_url("postgresql://u@db/app") == "postgresql://u@db/app"
    assert redact_url("/var/lib/wasmagent.sqlite") == "/var/lib/wasmagent.sqlite"


def test_the_database_comes_from_the_flag_then_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    assert database_url(None) == DEFAULT_DATABASE
    monkeypatch.setenv(DATABASE_ENV, "postgresql://u:pw@db/app")
    assert database_url(None) == "postgresql://u:pw@db/app"
    assert database_url("other.sqlite") == "other.sqlite"


# ---- the server on PostgreSQL ----------------------------------------------------------------


def test_servers_share_one_postgres_database(postgres: PostgresCluster, tmp_path: Path) -> None:
    """Two server processes start at once on one database (the URL, password included, in
    WASMAGENT_DATABASE_URL): both migrate safely and report it; what one ingests, a restarted
    one answers from; no log line shows the password."""
    password = "db-pw-" + os.urandom(6).hex()
    url = postgres.new_database(password)
    first, second = _start_pair(tmp_path, url)
    try:
        for srv in (first, second):
            assert srv.readyz()["store"] == "postgresql"
        asyncio.run(seed(first))
    finally:
        first.proc.stop()
        second.proc.stop()
    third = _start(tmp_path / "third", url)
    try:
        events = asyncio.run(_ask(third))
        answer = next(e for e in events if e["type"] == "answer")
        assert answer["citations"][0]["source"] == DOCS[0]["source"], answer
    finally:
        third.proc.stop()
    for srv in (first, second, third):
        assert password not in srv.proc.stderr()
        ready = [line for line in srv.log() if line.get("event") == "server_ready"]
        assert ready[0]["store"] == "postgresql"
        assert ready[0]["database"] == redact_url(url)
        assert "***" in ready[0]["database"]


def _start_pair(tmp_path: Path, url: str) -> tuple[Server, Server]:
    with ThreadPoolExecutor(2) as pool:
        starts = [pool.submit(_start, tmp_path / name, url) for name in ("a", "b")]
        first, second = (s.result() for s in starts)
    return first, second


def _start(log_dir: Path, url: str) -> Server:
    return start_server(log_dir, None, "--rate", "0", database=url)


async def _ask(srv: Server) -> list[dict[str, Any]]:
    async with ws_client(srv) as ws:
        return await ws.request({"type": "ask", "text": QUESTION, "mode": "local"})


def test_a_server_whose_database_is_unreachable_exits_saying_why(tmp_path: Path) -> None:
    password = "db-pw-" + os.urandom(6).hex()
    url = f"postgresql://agent:{password}@127.0.0.1:{free_port()}/wasmagent"
    with pytest.raises(RuntimeError, match="exited with") as caught:
        start_server(tmp_path, None, database=url)
    assert "PostgreSQL at postgresql://agent:***@127.0.0.1:" in str(caught.value)
    assert password not in str(caught.value)
