"""Tenants: one namespace of stored data per client of a multi-user server.

A tenant is a client's name (the server's token name). Its data lives under the key prefix
`t/<tenant>/` of the one shared `Store`, through a `PrefixStore`; the tenant `None` (a browser,
a server without tokens, the operator) is the store itself, un-prefixed, so data written
before tenancy existed stays where it was. No key the core writes starts with `t/` otherwise,
so the operator's namespace and the tenants' never overlap.

Contract of `PrefixStore` (pure: it does no I/O of its own, only the wrapped store's):
- every key it reads, writes, deletes, lists or expects is `prefix + key` in the wrapped store;
- `keys(p)` lists only wrapped keys under `prefix + p` and returns them without the prefix,
  so a caller never sees, and can never name, a key outside its namespace;
- `commit` is the wrapped store's one atomic commit, with puts, deletes and expectations all
  prefixed: its atomicity and `conflict` behaviour are the wrapped store's.

A durable job's step stages its writes in a `Tx` that commits to the wrapped store, with the
job's journal (one engine serves every tenant): a tenant's library stages them through
`PrefixStaging`, which prefixes them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from . import keyspace
from .ports import Store

if TYPE_CHECKING:
    from .knowledge.library import Library

TENANT_PREFIX = keyspace.TENANTS
MAX_TENANT = 128


def check_tenant(name: str) -> str:
    """`name` if it is usable as a tenant (one path segment of printable characters); raises
    `ValueError` otherwise. Token names are chosen by the operator: a bad one fails the start."""
    if not name or len(name) > MAX_TENANT or "/" in name or not name.isprintable() or any(
            c.isspace() for c in name):
        raise ValueError(f"{name!r} cannot name a tenant: use 1-{MAX_TENANT} printable "
                         "characters without '/' or spaces")
    return name


def tenant_prefix(name: str) -> str:
    """Where tenant `name`'s keys live."""
    return keyspace.tenant_prefix(check_tenant(name))


@dataclass(frozen=True, slots=True)
class Scope:
    """What one client's requests may reach: its tenant's knowledge bases (`library`), the
    store its history and conversations go to (`history`; None: the host stores nothing),
    and the knowledge bases the operator shares with every tenant, read-only (`shared`
    names, found in `shared_library`, the operator's). For a tenant, a shared name always
    means the shared knowledge base."""

    tenant: str | None
    library: Library
    history: Store | None
    shared: frozenset[str] = frozenset()
    shared_library: Library | None = None

    def is_shared(self, kb: str) -> bool:
        return self.shared_library is not None and kb in self.shared

    def library_for(self, kb: str) -> Library:
        """The library that holds knowledge base `kb` for this client (to read it)."""
        if self.shared_library is not None and kb in self.shared:
            return self.shared_library
        return self.library


class Staging(Protocol):
    """Where a step stages writes (a `workflow.Tx`; `knowledge.kb.Staging` is the same)."""

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def expect_value(self, key: str, value: bytes | None) -> None: ...


class PrefixStaging:
    """Staged writes of a prefixed namespace into a step that commits to the wrapped store."""

    __slots__ = ("inner", "prefix")

    def __init__(self, inner: Staging, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix

    def put(self, key: str, value: bytes) -> None:
        self.inner.put(self.prefix + key, value)

    def delete(self, key: str) -> None:
        self.inner.delete(self.prefix + key)

    def expect_value(self, key: str, value: bytes | None) -> None:
        self.inner.expect_value(self.prefix + key, value)


class PrefixStore:
    """A `Store` seen through a key prefix; see the module docstring."""

    __slots__ = ("inner", "prefix")

    def __init__(self, inner: Store, prefix: str) -> None:
        if not prefix:
            raise ValueError("a PrefixStore needs a non-empty prefix")
        self.inner = inner
        self.prefix = prefix

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(self.prefix + key)

    async def put(self, key: str, value: bytes) -> None:
        await self.inner.put(self.prefix + key, value)

    async def delete(self, key: str) -> None:
        await self.inner.delete(self.prefix + key)

    async def keys(self, prefix: str = "") -> list[str]:
        cut = len(self.prefix)
        return [k[cut:] for k in await self.inner.keys(self.prefix + prefix)]

    async def commit(self, puts: Mapping[str, bytes], deletes: Sequence[str] = (),
                     expect: Mapping[str, bytes | None] | None = None) -> None:
        p = self.prefix
        await self.inner.commit({p + k: v for k, v in puts.items()}, [p + k for k in deletes],
                                None if expect is None else {p + k: v for k, v in expect.items()})
