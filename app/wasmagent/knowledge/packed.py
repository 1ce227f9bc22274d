"""Stored forms of a knowledge base that open without re-parsing Python objects per passage.

Opening a 17.5k-passage knowledge base used to build ~1.7M BM25 postings and 17.5k chunk
objects before the first question could be answered (2.8 s natively, far more in Pyodide).
What a question needs is a handful of terms' postings and the few chunks it returns, so:

- the BM25 index is stored as one binary blob (`encode_lexical`): counts, then flat
  little-endian int32 arrays (doc ids and lengths, each term's first posting and name offset,
  every posting's doc id and term frequency), then the terms' UTF-8 names, sorted. Reading it
  (`decode_lexical`) makes no object per term: a query's terms are found by bisecting the names
  (`SortedTerms`) and their postings decoded then (`LazyPostings`). The previous binary form
  (a JSON header of terms, parsed into a dict of 46k terms: 21 ms per opening of 17.5k
  passages, against 1.3 ms now) and the JSON form before it still load, and are saved again
  in this one.
- chunks stay in their per-segment JSON blobs and are decoded a segment at a time on first
  access (`ChunkList`).
- vectors stay in their per-segment blobs too (appending never rewrites them); an opening
  reads all of them in one store call and copies them once into one array (`concat_floats`),
  which the native vector space adopts as its matrix without another copy.

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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from ..retrieval.chunking import Chunk
from ..retrieval.lexical import BM25Index, Postings

MAGIC_V2 = b"WABM25\x00\x02"
"""The earlier binary form: a JSON header of terms and posting counts, then the arrays."""
MAGIC = b"WABM25\x00\x03"
_HEADER = struct.Struct("<I")
_COUNTS = struct.Struct("<IIII")


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


def concat_floats(parts: Sequence[bytes]) -> array:  # type: ignore[type-arg]
    """The little-endian float32 rows of `parts` as one array, each part copied once into it
    (growing a large array moves no data where the allocator remaps it): joining the parts
    first and converting after copied 27 MB twice when a 17.5k-passage base opened."""
    values = array("f")
    for part in parts:
        values.frombytes(part)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def _ints(data: memoryview) -> Sequence[int]:
    """Little-endian int32s in `data`, without a copy where the machine is little-endian."""
    if sys.byteorder == "little":
        return data.cast("i")
    return from_le_bytes("i", data)


def encode_lexical(index: BM25Index) -> bytes:
    """The index as one binary blob: counts; doc ids and lengths; per term (sorted) the start
    of its postings and of its UTF-8 name; doc ids and term frequencies of every posting; then
    the names. Nothing in it needs a Python object per term or per passage to be read back."""
    postings = index.postings
    rows = (postings.export() if isinstance(postings, LazyPostings)
            else ((t, array("i", d.keys()), array("i", d.values())) for t, d in postings.items()))
    names: list[bytes] = []
    starts, offsets = array("i", [0]), array("i", [0])
    docs, tfs = array("i"), array("i")
    for term, term_docs, term_tfs in sorted(rows, key=lambda row: row[0]):
        raw = term.encode()
        names.append(raw)
        offsets.append(offsets[-1] + len(raw))
        docs.extend(term_docs)
        tfs.extend(term_tfs)
        starts.append(len(docs))
    lengths = index.lengths
    return b"".join([MAGIC, _COUNTS.pack(len(lengths), len(names), len(docs), offsets[-1]),
                     le_bytes(array("i", lengths.keys())), le_bytes(array("i", lengths.values())),
                     le_bytes(starts), le_bytes(offsets), le_bytes(docs), le_bytes(tfs),
                     *names])


def decode_lexical(data: bytes) -> BM25Index:
    """An index from `encode_lexical`'s blob or an earlier version's (the binary form with a
    JSON header, or `BM25Index.to_bytes`' JSON), postings left packed until a term is asked
    for. Raises ValueError on anything else."""
    if data.startswith(MAGIC_V2):
        return _decode_v2(data)
    if not data.startswith(MAGIC):
        return BM25Index.from_bytes(data)
    view = memoryview(data)
    at = len(MAGIC)
    n, terms, total, size = _COUNTS.unpack_from(view, at)
    at += _COUNTS.size
    lengths = (n, n, terms + 1, terms + 1, total, total)
    if at + 4 * sum(lengths) + size != len(view):
        raise ValueError("the stored BM25 index is truncated")
    parts = []
    for length in lengths:
        parts.append(_ints(view[at:at + 4 * length]))
        at += 4 * length
    ids, lens, starts, offsets, docs, tfs = parts
    table = SortedTerms(bytes(view[at:]), offsets)
    return _index(ids, lens, LazyPostings(table, starts, docs, tfs))


def _decode_v2(data: bytes) -> BM25Index:
    view = memoryview(data)
    at = len(MAGIC_V2)
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
    # Built by C loops only: a Python loop over 50k terms cost ~50 ms of every opening.
    table = dict(zip(header["terms"], range(len(header["terms"])), strict=True))
    starts = array("q", itertools.accumulate(header["counts"], initial=0))
    return _index(ids, lens, LazyPostings(table, starts, docs, tfs))


def _index(ids: Sequence[int], lens: Sequence[int], postings: LazyPostings) -> BM25Index:
    index = BM25Index()
    index.lengths = dict(zip(ids, lens, strict=True))
    index._total = sum(lens)
    index.postings = postings
    return index


class SortedTerms:
    """Term -> number over the sorted UTF-8 names of a packed index, found by bisection on the
    bytes: no Python object per term (building a dict of 46k terms was most of an opening)."""

    def __init__(self, names: bytes, offsets: Sequence[int]) -> None:
        self._names = names
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def get(self, term: str) -> int | None:
        raw = term.encode()
        names, offsets = self._names, self._offsets
        lo, hi = 0, len(offsets) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if names[offsets[mid]:offsets[mid + 1]] < raw:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(offsets) - 1 and names[offsets[lo]:offsets[lo + 1]] == raw:
            return lo
        return None

    def items(self) -> Iterator[tuple[str, int]]:
        offsets = self._offsets
        for n in range(len(offsets) - 1):
            yield self._names[offsets[n]:offsets[n + 1]].decode(), n


TermTable = SortedTerms | dict[str, int]


class LazyPostings(Postings):
    """term -> {doc: tf}, each term's dict built from the packed arrays on first access.

    What a query asks (`df`, `pairs`) is read from the arrays, decoding nothing. Lookups
    (`[]`, `get`, `in`, `setdefault`) decode one term; anything that walks every term
    (iteration, `items`, removal) decodes them all first, after which this is a plain dict.
    A term in the dict itself (decoded, or added since) is never looked up in the packed form."""

    def __init__(self, table: TermTable, starts: Sequence[int], docs: Sequence[int],
                 tfs: Sequence[int]) -> None:
        super().__init__()
        self._table: TermTable | None = table
        self._left = len(table)
        self._starts = starts
        self._docs, self._tfs = docs, tfs

    @property
    def packed(self) -> int:
        """Terms not decoded yet."""
        return self._left

    def _find(self, term: str) -> int | None:
        if self._table is None or dict.__contains__(self, term):
            return None
        return self._table.get(term)

    def _decode(self, term: str, n: int) -> dict[int, int]:
        start, end = self._starts[n], self._starts[n + 1]
        found = dict(zip(self._docs[start:end], self._tfs[start:end], strict=True))
        dict.__setitem__(self, term, found)
        self._left -= 1
        return found

    def df(self, term: str) -> int:
        n = self._find(term)
        if n is None:
            return len(dict.get(self, term, ()))
        return self._starts[n + 1] - self._starts[n]

    def pairs(self, term: str) -> tuple[Iterable[int], Iterable[int]]:
        n = self._find(term)
        if n is None:
            docs = dict.get(self, term) or {}
            return docs.keys(), docs.values()
        start, end = self._starts[n], self._starts[n + 1]
        return self._docs[start:end], self._tfs[start:end]

    def export(self) -> Iterator[tuple[str, Sequence[int], Sequence[int]]]:
        """(term, docs, tfs) for every term, packed ones straight from the arrays (saving an
        index must not build 46k dicts only to flatten them again)."""
        for term, found in dict.items(self):
            yield term, array("i", found.keys()), array("i", found.values())
        if self._table is not None:
            for term, n in self._table.items():
                if not dict.__contains__(self, term):
                    start, end = self._starts[n], self._starts[n + 1]
                    yield term, self._docs[start:end], self._tfs[start:end]

    def materialize(self) -> None:
        if self._table is not None:
            for term, n in list(self._table.items()):
                if not dict.__contains__(self, term):
                    self._decode(term, n)
        self._table, self._left = None, 0
        self._starts = self._docs = self._tfs = array("i")

    def __getitem__(self, term: str) -> dict[int, int]:
        n = self._find(term)
        if n is not None:
            return self._decode(term, n)
        return dict.__getitem__(self, term)

    def get(self, term: str, default: Any = None) -> Any:
        n = self._find(term)
        if n is not None:
            return self._decode(term, n)
        return dict.get(self, term, default)

    def __contains__(self, term: object) -> bool:
        return dict.__contains__(self, term) or (isinstance(term, str)
                                                 and self._find(term) is not None)

    def setdefault(self, term: str, default: Any = None) -> Any:
        n = self._find(term)
        if n is not None:
            self._decode(term, n)
        return dict.setdefault(self, term, default)

    def __len__(self) -> int:
        return dict.__len__(self) + self._left

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

    def __eq__(self, other: object) -> bool:
        self.materialize()
        if isinstance(other, LazyPostings):
            other.materialize()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a dict is

    def __reduce__(self) -> Any:
        self.materialize()
        return (dict, (dict(dict.items(self)),))


def packed_lexical(index: BM25Index) -> bool:
    """Whether `index` was read from the current stored form (an earlier one is re-saved)."""
    postings = index.postings
    return isinstance(postings, LazyPostings) and isinstance(postings._table, SortedTerms)


class ChunkList(Sequence[Chunk]):
    """The chunks of a knowledge base, in order; stored segments stay as their JSON bytes until
    one of their chunks is read, and then only the chunks read become `Chunk`s (a question's
    40-odd candidates span as many segments: 2,500 objects made for 40 used)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._parts: list[list[Chunk | dict[str, str]] | tuple[bytes, int]] = []
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

    def _part(self, n: int) -> list[Chunk | dict[str, str]]:
        part = self._parts[n]
        if isinstance(part, tuple):
            raw, count = part
            decoded: list[Chunk | dict[str, str]] = json.loads(raw)
            if len(decoded) != count:
                raise ValueError(f"a stored segment holds {len(decoded)} chunks, not {count}")
            self._parts[n] = part = decoded
        return part

    def _chunk(self, n: int, offset: int) -> Chunk:
        part = self._part(n)
        item = part[offset]
        if isinstance(item, dict):
            part[offset] = item = Chunk(**item)
        return item

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
        return self._chunk(n, i - self._starts[n])

    def __iter__(self) -> Iterator[Chunk]:
        for n in range(len(self._parts)):
            for offset in range(len(self._part(n))):
                yield self._chunk(n, offset)
