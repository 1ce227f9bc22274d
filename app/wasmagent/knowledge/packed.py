"""Stored forms of a knowledge base that open without re-parsing Python objects per passage.

Opening a 17.5k-passage knowledge base used to build ~1.7M BM25 postings and 17.5k chunk
objects before the first question could be answered (2.8 s natively, far more in Pyodide).
What a question needs is a handful of terms' postings and the few chunks it returns, so:

- the BM25 index is stored as one binary blob (`encode_lexical`): a JSON header with the terms
  and their posting counts, then flat little-endian int32 arrays (doc lengths, doc ids, term
  frequencies). `decode_lexical` reads the header and leaves each term's postings packed until a
  query asks for that term (`LazyPostings`). The JSON form of earlier versions still loads.
- chunks stay in their per-segment JSON blobs and are decoded a segment at a time on first
  access (`ChunkList`).

Both present the same interfaces as the eager structures (a dict of postings, a sequence of
chunks), so ranking code does not know the difference.
"""

from __future__ import annotations

import bisect
import itertools
import json
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import Any, overload

from ..retrieval.chunking import Chunk
from ..retrieval.lexical import BM25Index

MAGIC = b"WABM25\x00\x02"
_HEADER = struct.Struct("<I")


def le_bytes(values: array) -> bytes:  # type: ignore[type-arg]
    """`values` as little-endian bytes: how numbers are stored, whatever the machine."""
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


def from_le_bytes(typecode: str, data: bytes | memoryview) -> array:  # type: ignore[type-arg]
    """The `typecode` numbers stored little-endian in `data` (`le_bytes` read back)."""
    values = array(typecode)
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def _ints(data: memoryview) -> array:  # type: ignore[type-arg]
    return from_le_bytes("i", data)


def encode_lexical(index: BM25Index) -> bytes:
    """The index as one binary blob (see the module docstring)."""
    postings = index.postings
    terms = list(postings)
    docs, tfs = array("i"), array("i")
    counts = []
    for term in terms:
        found = postings[term]
        counts.append(len(found))
        docs.extend(found.keys())
        tfs.extend(found.values())
    lengths = index.lengths
    header = json.dumps({"terms": terms, "counts": counts, "docs": len(lengths)},
                        ensure_ascii=False, separators=(",", ":")).encode()
    return b"".join([MAGIC, _HEADER.pack(len(header)), header,
                     le_bytes(array("i", lengths.keys())), le_bytes(array("i", lengths.values())),
                     le_bytes(docs), le_bytes(tfs)])


def decode_lexical(data: bytes) -> BM25Index:
    """An index from `encode_lexical`'s blob (postings decoded lazily) or from the JSON of
    `BM25Index.to_bytes`. Raises ValueError on anything else."""
    if not data.startswith(MAGIC):
        return BM25Index.from_bytes(data)
    view = memoryview(data)
    at = len(MAGIC)
    (size,) = _HEADER.unpack_from(view, at)
    at += _HEADER.size
    header = json.loads(bytes(view[at:at + size]))
    at += size
    n = int(header["docs"])
    total = sum(header["counts"])
    ids, lens = _ints(view[at:at + 4 * n]), _ints(view[at + 4 * n:at + 8 * n])
    at += 8 * n
    docs, tfs = _ints(view[at:at + 4 * total]), _ints(view[at + 4 * total:at + 8 * total])
    if len(tfs) != total:
        raise ValueError("the stored BM25 index is truncated")
    index = BM25Index()
    index.lengths = dict(zip(ids, lens, strict=True))
    index._total = sum(lens)
    index.postings = LazyPostings(header["terms"], header["counts"], docs, tfs)
    return index


class LazyPostings(dict[str, dict[int, int]]):
    """term -> {doc: tf}, each term's dict built from the packed arrays on first access.

    Lookups (`[]`, `get`, `in`, `setdefault`) decode one term; anything that walks every term
    (iteration, `items`, removal) decodes them all first, after which this is a plain dict."""

    def __init__(self, terms: Sequence[str], counts: Sequence[int],
                 docs: array, tfs: array) -> None:  # type: ignore[type-arg]
        super().__init__()
        # Built by C loops only: a Python loop over 50k terms cost ~50 ms of every opening.
        self._where: dict[str, int] = dict(zip(terms, range(len(terms)), strict=True))
        self._counts = counts
        self._starts = array("q", itertools.accumulate(counts, initial=0))
        self._docs, self._tfs = docs, tfs

    @property
    def packed(self) -> int:
        """Terms not decoded yet."""
        return len(self._where)

    def _decode(self, term: str) -> dict[int, int] | None:
        n = self._where.pop(term, None)
        if n is None:
            return None
        start, end = self._starts[n], self._starts[n] + self._counts[n]
        found = dict(zip(self._docs[start:end], self._tfs[start:end], strict=True))
        dict.__setitem__(self, term, found)
        return found

    def materialize(self) -> None:
        for term in list(self._where):
            self._decode(term)
        self._docs = self._tfs = array("i")

    def __getitem__(self, term: str) -> dict[int, int]:
        if self._where and term in self._where:
            self._decode(term)
        return dict.__getitem__(self, term)

    def get(self, term: str, default: Any = None) -> Any:
        if self._where and term in self._where:
            return self._decode(term)
        return dict.get(self, term, default)

    def __contains__(self, term: object) -> bool:
        return term in self._where or dict.__contains__(self, term)

    def setdefault(self, term: str, default: Any = None) -> Any:
        if self._where and term in self._where:
            self._decode(term)
        return dict.setdefault(self, term, default)

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._where)

    def __iter__(self) -> Iterator[str]:
        self.materialize()
        return dict.__iter__(self)

    def keys(self) -> Any:
        self.materialize()
        return dict.keys(self)

    def values(self) -> Any:
        self.materialize()
        return dict.values(self)

    def items(self) -> Any:
        self.materialize()
        return dict.items(self)

    def __delitem__(self, term: str) -> None:
        self.materialize()
        dict.__delitem__(self, term)

    def pop(self, term: str, *default: Any) -> Any:
        self.materialize()
        return dict.pop(self, term, *default)

    def __reduce__(self) -> Any:
        self.materialize()
        return (dict, (dict(dict.items(self)),))


class ChunkList(Sequence[Chunk]):
    """The chunks of a knowledge base, in order; stored segments stay as their JSON bytes until
    one of their chunks is read."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._parts: list[list[Chunk] | tuple[bytes, int]] = []
        self._len = 0

    def add_packed(self, raw: bytes, count: int) -> None:
        """A stored segment of `count` chunks, decoded on first use."""
        self._starts.append(self._len)
        self._parts.append((raw, count))
        self._len += count

    def extend(self, chunks: Sequence[Chunk]) -> None:
        if chunks:
            self._starts.append(self._len)
            self._parts.append(list(chunks))
            self._len += len(chunks)

    def _part(self, n: int) -> list[Chunk]:
        part = self._parts[n]
        if isinstance(part, tuple):
            raw, count = part
            decoded = [Chunk(**c) for c in json.loads(raw)]
            if len(decoded) != count:
                raise ValueError(f"a stored segment holds {len(decoded)} chunks, not {count}")
            self._parts[n] = part = decoded
        return part

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> Chunk: ...

    @overload
    def __getitem__(self, i: slice) -> list[Chunk]: ...

    def __getitem__(self, i: int | slice) -> Chunk | list[Chunk]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._len))]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("chunk index out of range")
        n = bisect.bisect_right(self._starts, i) - 1
        return self._part(n)[i - self._starts[n]]

    def __iter__(self) -> Iterator[Chunk]:
        for n in range(len(self._parts)):
            yield from self._part(n)
