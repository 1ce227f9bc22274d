"""The `Store` port over SQL databases: SQLite (one file, one process) and PostgreSQL (shared
by many server processes), and `open_store(url)`, which picks one from a database URL.

Both keep one table, `kv(key, value)`, ordered by key in code point order (SQLite's BINARY
collation and PostgreSQL's "C" compare UTF-8 bytes, which sort like code points, so both agree
with Python's `sorted`). Each has an ordered list of schema migrations, applied at open inside
one transaction and recorded (SQLite: `PRAGMA user_version`; PostgreSQL: a `schema_migrations`
table), so a database is upgraded once and reopening it changes nothing. A database written by
a newer version (more migrations than this code knows) is refused, never downgraded.

Failures reach callers as `AgentError`: `storage_failed` for a database that cannot be opened,
reached or written (its message names the database with any password masked), `conflict` for a
commit whose expectations no longer hold.

asyncpg is imported only when a PostgreSQL store is opened: SQLite users need not install it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import AgentError, ErrorCode
from ..ports import check_expect
from .blocking import OneThread

if TYPE_CHECKING:
    import asyncpg

SQLITE_MIGRATIONS: tuple[str, ...] = (
    # 1. The key/value table. IF NOT EXISTS adopts a file made before migrations existed: it
    #    already has this very table, at user_version 0.
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
)
POSTGRES_MIGRATIONS: tuple[str, ...] = (
    # 1. The key/value table; COLLATE "C" makes key order and prefix ranges byte order (and
    #    lets the primary key's index serve `keys(prefix)`), whatever the database's locale.
    'CREATE TABLE IF NOT EXISTS kv (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL)',
)
SCHEMA_VERSION = len(SQLITE_MIGRATIONS)
"""The schema version this code writes (both stores have as many migrations)."""

MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(2003792237, 1)"
"""Serialises migrations across processes. The two-integer lock form is a key space of its own,
apart from the one-bigint per-key locks `commit` takes."""
STORE_LOCK = 2003792237, 2
"""Every commit with expectations holds it shared; one touching more than `KEY_LOCKS_MAX` keys
holds it exclusively instead of one lock per key."""
KEY_LOCKS_MAX = 64
"""Advisory locks live in PostgreSQL's shared lock table, which has room for only
max_locks_per_transaction (64 by default) x max_connections entries in all."""
MMAP_BYTES = 1 << 30
"""How much of a SQLite file is read through a memory map (address space, not memory)."""
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 10.0


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix`, in code point order, so
    that `prefix <= key < prefix_end(prefix)` selects exactly the keys with that prefix and an
    index can serve it (unlike LIKE, where `%` and `_` in a prefix are wildcards). None when
    there is no upper bound: the empty prefix, or one made only of U+10FFFF."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            following = last + 1
            if 0xD800 <= following <= 0xDFFF:  # surrogates cannot be stored: skip past them
                following = 0xE000
            return "".join(chars) + chr(following)
    return None


# ---- SQLite ---------------------------------------------------------------------------------


class SqliteStore:
    """The `Store` port over one SQLite file in WAL mode (`:memory:` for tests).

    Calls run in order on one dedicated thread. Several stores (or processes) may share a file:
    `commit` takes SQLite's write lock before reading its expectations.
    """

    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise AgentError(ErrorCode.STORAGE,
                             f"cannot open SQLite database {self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Reads through a memory map skip a read() per page: opening a 17.5k-passage
            # knowledge base (41 MB of blobs in ~10k overflow pages) read in 27 ms, not 46.
            self._db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            _migrate_sqlite(self._db)
        except sqlite3.Error as exc:
            self._db.close()
            raise AgentError(ErrorCode.STORAGE,
                             f"cannot open SQLite database {self.path}: {exc}") from None
        except BaseException:
            self._db.close()
            raise
        self._worker = OneThread("sqlite")

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStore:
        """Open (and migrate) off the event loop."""
        return await asyncio.to_thread(cls, path)

    async def _do(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        def run() -> list[Any]:
            return self._db.execute(sql, params).fetchall()

        try:
            return await self._worker.call(run)
        except sqlite3.Error as exc:
            raise AgentError(ErrorCode.STORAGE, f"SQLite failed: {exc}") from None

    async def get(self, key: str) -> bytes | None:
        rows = await self._do("SELECT value FROM kv WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of `keys`, in order (None where absent), read in one call on the store's
        thread and one read transaction, so from one snapshot: opening a knowledge base reads
        hundreds of keys, and a thread hop per key cost more than the reads."""
        def run() -> list[bytes | None]:
            self._db.execute("BEGIN")
            try:
                return [self._value(key) for key in keys]
            finally:
                self._db.execute("COMMIT")

        try:
            return await self._worker.call(run)
        except sqlite3.Error as exc:
            raise AgentError(ErrorCode.STORAGE, f"SQLite failed: {exc}") from None

    async def put(self, key: str, value: bytes) -> None:
        await self._do("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    async def delete(self, key: str) -> None:
        await self._do("DELETE FROM kv WHERE key = ?", (key,))

    async def keys(self, prefix: str = "") -> list[str]:
        end = prefix_end(prefix)
        if end is None:
            rows = await self._do("SELECT key FROM kv WHERE key >= ? ORDER BY key", (prefix,))
        else:
            rows = await self._do("SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                                  (prefix, end))
        return [r[0] for r in rows]

    async def commit(self, puts: Mapping[str, bytes], deletes: Sequence[str] = (),
                     expect: Mapping[str, bytes | None] | None = None) -> None:
        def run() -> None:
            with _sqlite_transaction(self._db):
                if expect:
                    check_expect({k: self._value(k) for k in expect}, expect)
                self._db.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in deletes])
                self._db.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                                     list(puts.items()))

        try:
            await self._worker.call(run)
        except sqlite3.Error as exc:
            raise AgentError(ErrorCode.STORAGE, f"SQLite failed: {exc}") from None

    def _value(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    async def schema_version(self) -> int:
        rows = await self._do("PRAGMA user_version")
        return int(rows[0][0])

    def close(self) -> None:
        self._worker.close()
        self._db.close()

    async def aclose(self) -> None:
        # Closed on its own thread, after any call still queued there.
        await self._worker.call(self._db.close)
        self._worker.close()


@contextmanager
def _sqlite_transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock before any read, so no other connection can change what
    # the transaction checked before it writes.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _migrate_sqlite(db: sqlite3.Connection) -> None:
    with _sqlite_transaction(db):
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        _refuse_newer(version, len(SQLITE_MIGRATIONS))
        for sql in SQLITE_MIGRATIONS[version:]:
            db.execute(sql)
        # PRAGMA takes no parameters; the value is our own integer.
        db.execute(f"PRAGMA user_version = {len(SQLITE_MIGRATIONS)}")


def _refuse_newer(version: int, known: int) -> None:
    if version > known:
        raise AgentError(ErrorCode.STORAGE, f"the database has schema version {version}, newer "
                         f"than this wasmagent knows ({known}): upgrade wasmagent to use it")


# ---- PostgreSQL -----------------------------------------------------------------------------


def _asyncpg() -> Any:  # the module (untyped: asyncpg ships no type hints)
    try:
        import asyncpg
    except ImportError:
        raise AgentError(ErrorCode.STORAGE, "PostgreSQL needs the asyncpg package: install "
                         "wasmagent[server]") from None
    return asyncpg


class PostgresStore:
    """The `Store` port over a PostgreSQL database, through one asyncpg connection pool.

    Many server processes may share one database. `commit` is one transaction. One with
    expectations first takes a transaction-scoped advisory lock on the hash of every key it
    reads or writes (an absent key has no row to lock), in sorted key order so two commits
    never deadlock on them. Locking the written keys too, not only the expected ones, is what
    rules out write skew: "finish unless cancelled" and "cancel unless finished" never both
    land. Then it reads the expected rows `FOR UPDATE` and compares. Writers that take no
    advisory lock (a plain `put`, a commit without expectations) are caught by the row locks,
    and for a key expected absent by writing it with INSERT ... DO NOTHING and deleting it with
    DELETE ... RETURNING: a row found there is a conflict too. A deadlock or serialization
    failure PostgreSQL reports is a lost race as well: `conflict`, nothing written.

    Open with `await PostgresStore.open(url)`; close with `aclose()`.
    """

    kind = "postgresql"

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self.where = redact_url(url)
        self._secrets = _url_secrets(url)

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10,
                   connect_timeout: float = CONNECT_TIMEOUT_S) -> PostgresStore:
        """Connect the pool and apply any missing migrations (safe to run from several
        processes at once: they wait for one another on an advisory lock)."""
        pg = _asyncpg()
        where, secrets = redact_url(url), _url_secrets(url)
        # ValueError: asyncpg's parsing of a malformed URL (a port that is not a number).
        with _pg_failures(where, secrets, ValueError):
            pool = await pg.create_pool(url, min_size=min_size, max_size=max_size,
                                        timeout=connect_timeout,
                                        command_timeout=COMMAND_TIMEOUT_S)
        store = cls(pool, url)
        try:
            await store._migrate()
        except BaseException:
            await store.aclose()
            raise
        return store

    async def _migrate(self) -> None:
        with self._failures():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(MIGRATION_LOCK)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())")
                applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                _refuse_newer(max(applied, default=0), len(POSTGRES_MIGRATIONS))
                for version, sql in enumerate(POSTGRES_MIGRATIONS, start=1):
                    if version not in applied:
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version) VALUES ($1)", version)

    def _failures(self) -> AbstractContextManager[None]:
        return _pg_failures(self.where, self._secrets)

    async def get(self, key: str) -> bytes | None:
        with self._failures():
            value = await self._pool.fetchval("SELECT value FROM kv WHERE key = $1", key)
        return None if value is None else bytes(value)

    async def put(self, key: str, value: bytes) -> None:
        with self._failures():
            await self._pool.execute(
                "INSERT INTO kv (key, value) VALUES ($1, $2) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", key, bytes(value))

    async def delete(self, key: str) -> None:
        with self._failures():
            await self._pool.execute("DELETE FROM kv WHERE key = $1", key)

    async def keys(self, prefix: str = "") -> list[str]:
        end = prefix_end(prefix)
        with self._failures():
            if end is None:
                rows = await self._pool.fetch(
                    "SELECT key FROM kv WHERE key >= $1 ORDER BY key", prefix)
            else:
                rows = await self._pool.fetch(
                    "SELECT key FROM kv WHERE key >= $1 AND key < $2 ORDER BY key", prefix, end)
        return [r[0] for r in rows]

    async def commit(self, puts: Mapping[str, bytes], deletes: Sequence[str] = (),
                     expect: Mapping[str, bytes | None] | None = None) -> None:
        expect = dict(expect or {})
        absent = {k for k, v in expect.items() if v is None}
        with self._failures():
            async with self._pool.acquire() as conn, conn.transaction():
                if expect:
                    await _lock_keys(conn, {*expect, *puts, *deletes})
                    await _check(conn, expect)
                await _delete_many(conn, deletes, absent)
                await _put_many(conn, puts, absent)

    async def schema_version(self) -> int:
        with self._failures():
            version = await self._pool.fetchval("SELECT max(version) FROM schema_migrations")
        return int(version or 0)

    async def aclose(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self._pool.terminate()  # a connection still busy: don't hang the shutdown


async def _lock_keys(conn: asyncpg.Connection, keys: set[str]) -> None:
    """Advisory locks until the transaction ends: on each key (sorted, so no two commits wait
    for each other in a cycle), or on the whole store for a commit that touches many."""
    if len(keys) > KEY_LOCKS_MAX:
        await conn.execute("SELECT pg_advisory_xact_lock($1::int, $2::int)", *STORE_LOCK)
        return
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1::int, $2::int)", *STORE_LOCK)
    await conn.executemany("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                           [(k,) for k in sorted(keys)])


async def _check(conn: asyncpg.Connection, expect: Mapping[str, bytes | None]) -> None:
    rows = await conn.fetch(
        "SELECT key, value FROM kv WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE",
        list(expect))
    check_expect({r[0]: bytes(r[1]) for r in rows}, expect)


async def _delete_many(conn: asyncpg.Connection, deletes: Sequence[str], absent: set[str]
                       ) -> None:
    if not deletes:
        return
    gone = await conn.fetch("DELETE FROM kv WHERE key = ANY($1::text[]) RETURNING key",
                            list(deletes))
    _conflict_if({r[0] for r in gone} & absent)


async def _put_many(conn: asyncpg.Connection, puts: Mapping[str, bytes], absent: set[str]
                    ) -> None:
    fresh = [k for k in puts if k in absent]
    rest = [k for k in puts if k not in absent]
    if fresh:
        made = await conn.fetch(
            "INSERT INTO kv (key, value) SELECT * FROM unnest($1::text[], $2::bytea[]) "
            "ON CONFLICT (key) DO NOTHING RETURNING key", fresh, [bytes(puts[k]) for k in fresh])
        _conflict_if(set(fresh) - {r[0] for r in made})
    if rest:
        await conn.execute(
            "INSERT INTO kv (key, value) SELECT * FROM unnest($1::text[], $2::bytea[]) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            rest, [bytes(puts[k]) for k in rest])


def _conflict_if(appeared: set[str]) -> None:
    if appeared:
        raise AgentError(ErrorCode.CONFLICT, f"{min(appeared)!r} was changed by someone else; "
                         "the write was not applied")


@contextmanager
def _pg_failures(where: str, secrets: Sequence[str], *also: type[Exception]
                 ) -> Iterator[None]:
    """asyncpg's and the network's exceptions as `AgentError`s whose message never holds a
    password (asyncpg's own messages do not, but a DSN parse error may quote the URL)."""
    pg = _asyncpg()
    try:
        yield
    except pg.TransactionRollbackError:  # deadlock_detected, serialization_failure
        raise AgentError(ErrorCode.CONFLICT, "the write lost a race with another one and was "
                         "not applied") from None
    except (pg.PostgresError, pg.InterfaceError, OSError, TimeoutError, *also) as exc:
        message = f"PostgreSQL at {where} failed: {type(exc).__name__}: {exc}"
        for secret in secrets:
            message = message.replace(secret, "***")
        raise AgentError(ErrorCode.STORAGE, message) from None


# ---- database URLs --------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """`url` fit for logs and messages: the password (in the user part or a `password=` query
    parameter) replaced by `***`. A plain path comes back unchanged."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if "password" in query.lower():
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs],
                          safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _url_secrets(url: str) -> list[str]:
    """The passwords a URL holds, raw and as written (percent-encoded), to scrub from text."""
    if "://" not in url:
        return []
    parts = urlsplit(url)
    found = [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    if parts.password:
        found.append(parts.password)
        found.append(parts.netloc.rpartition("@")[0].partition(":")[2])
    return sorted({s for s in found if s}, key=len, reverse=True)


SqlStore = SqliteStore | PostgresStore


async def open_store(url: str | Path) -> SqlStore:
    """The store a database URL names, opened and migrated.

    `postgresql://...` or `postgres://...` -> `PostgresStore`; `sqlite:///PATH` (SQLAlchemy's
    form: `sqlite:////abs/path` is absolute), `sqlite://` or `:memory:` (in memory), or a plain
    file path -> `SqliteStore`. Another scheme raises `AgentError(STORAGE)`.
    """
    text = str(url)
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return await PostgresStore.open(text)
    if scheme == "sqlite":
        return await SqliteStore.open(_sqlite_path(text))
    if scheme:
        raise AgentError(ErrorCode.STORAGE, f"unsupported database URL {redact_url(text)}: use "
                         "postgresql://..., sqlite:///PATH or a file path")
    return await SqliteStore.open(text)


def _sqlite_path(url: str) -> str:
    rest = url.partition("://")[2]
    if not rest:
        return ":memory:"
    if not rest.startswith("/"):
        raise AgentError(ErrorCode.STORAGE, f"a SQLite URL has no host: write sqlite:///PATH, "
                         f"not {url}")
    return rest[1:] or ":memory:"
