"""A portable dump of stored key/value pairs: how a knowledge base built natively (at build
time, or by the benchmarks) is shipped to a browser and loaded into its Store.

Format: a sequence of records `<u32 key length><u32 value length><key utf-8><value>`,
little-endian. Pure functions; `load_dump` writes through the `Store` port.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from .. import keyspace
from ..errors import AgentError, ErrorCode
from ..ports import Store

_HEAD = struct.Struct("<II")


def encode(pairs: Iterable[tuple[str, bytes]]) -> bytes:
    out = bytearray()
    for key, value in pairs:
        raw = key.encode()
        out += _HEAD.pack(len(raw), len(value)) + raw + value
    return bytes(out)


def decode(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The pairs of a dump; raises `AgentError(STORAGE)` on a truncated or corrupt dump."""
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        if offset + _HEAD.size > len(view):
            raise AgentError(ErrorCode.STORAGE, "the knowledge base dump is truncated")
        key_len, value_len = _HEAD.unpack_from(view, offset)
        start = offset + _HEAD.size
        end = start + key_len + value_len
        if end > len(view):
            raise AgentError(ErrorCode.STORAGE, "the knowledge base dump is truncated")
        yield bytes(view[start:start + key_len]).decode(), bytes(view[start + key_len:end])
        offset = end


async def dump_kb(store: Store, name: str) -> bytes:
    """The dump of knowledge base `name` in `store`; `AgentError(NOT_FOUND)` if it is empty."""
    keys = await store.keys(keyspace.kb_prefix(name))
    if keyspace.kb_meta(name) not in keys:
        raise AgentError(ErrorCode.NOT_FOUND, f"there is no knowledge base named {name!r}")
    pairs = []
    for key in keys:
        value = await store.get(key)
        if value is not None:
            pairs.append((key, value))
    return encode(pairs)


async def load_dump(store: Store, data: bytes, only: str = "") -> int:
    """Write every pair of a dump into `store` (meta keys last, so a crash leaves no half KB).

    With `only`, every key must start with it (a dump of the knowledge base asked for), or
    nothing is written and `AgentError(NOT_FOUND)` says which knowledge base the dump holds.
    """
    pairs = list(decode(data))
    stray = next((key for key, _ in pairs if not key.startswith(only)), None)
    if stray is not None:
        raise AgentError(ErrorCode.NOT_FOUND,
                         f"the dump is not {only!r} only: it holds the key {stray!r}")
    pairs.sort(key=lambda pair: pair[0].endswith("/meta"))
    for key, value in pairs:
        await store.put(key, value)
    return len(pairs)
