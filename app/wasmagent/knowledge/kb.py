"""One knowledge base: its chunks, a BM25 index and a dense vector space, searched hybrid.

Storage layout in the `Store` (all under `kb/<name>/`):
- `meta`               JSON: name, chunk count, embedding dim, segment count and sizes
- `seg/<n>/chunks`     JSON list of the chunks added by one ingestion segment
- `seg/<n>/vectors`    their embeddings, raw little-endian float32 rows (absent without a model)
- `lexical`            the BM25 index of the first `lexical_segments` segments (`packed.py`)
- `sources`            JSON: chunks per source document in the segments saved with the index

Each step commits the meta, so it stays small: per-source counts (thousands of documents) are
saved with the BM25 index instead, else every step rewrote and compared them (quadratic).

Opening reads every key it needs in one store call where the store can (`read_many`: SQLite
reads them on its thread in one transaction), decodes chunks a segment at a time when they are
first read, hands all vectors to the vector space in one call (`add_rows`), and leaves BM25
postings packed until a query needs them (`packed.py`): 17.5k passages open in tens of ms.
A knowledge base saved before segment sizes were in its meta opens the slow way once (every
chunk decoded, the JSON BM25 index of then parsed); `stage_upgrade` then saves it in this form.

Segments are append-only, so saving new documents never rewrites old chunks or vectors.
A segment and the `meta` that names it are staged into one atomic `Store.commit` that expects
the meta as this process last saw it: a crash leaves either the whole segment or nothing, and
a second writer (another server process, another tab) gets `conflict` instead of overwriting
a segment; it catches up (`catch_up` loads the segments it has not seen) and tries again.
In-memory state changes only after the commit (`apply_*`), under `sync`, so a catch-up and an
own commit never add the same segment twice. The BM25 index is large, so it is saved once per
ingestion (`stage_lexical`), not per segment; loading re-indexes the few segments after it.

Cancellation (a caller leaving, a deadline) may arrive at any await, and must never leave the
in-memory indexes inconsistent for the requests that come after: adding a segment's chunks, its
vector rows and the segment count is one uninterruptible step (`add`), and each loaded instance
has its own vector space, dropped again if its load does not finish, so rows of a half-done load
can never shift another instance's row numbers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from .. import keyspace
from ..errors import AgentError, ErrorCode
from ..ports import Staging, Store, VectorSearch
from ..retrieval.chunking import Chunk, ChunkDeduper
from ..retrieval.lexical import BM25Index
from ..retrieval.rank import rank
from ..runtime.context import uninterruptible
from .packed import (
    ChunkList,
    LazyPostings,
    concat_floats,
    decode_lexical,
    encode_lexical,
    from_le_bytes,
    le_bytes,
    packed_lexical,
)

FORMAT = 1
_instances = itertools.count()


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: the chunk, its fused score and the two scores it came from."""

    chunk: Chunk
    score: float
    lexical: float
    dense: float


class KnowledgeBase:
    """Chunks, their BM25 index and their vectors (kept by a `VectorSearch` port)."""

    def __init__(self, name: str, vectors: VectorSearch | None, dim: int = 384) -> None:
        self.name = name
        self.dim = dim
        self.chunks = ChunkList()
        self._sizes: list[int] = []
        """Chunks per stored segment."""
        self.lexical = BM25Index()
        self._vectors = vectors
        self._segments = 0
        self._lexical_segments = 0
        self._has_vectors = True
        self.sources: dict[str, int] = {}
        self.stored_meta: bytes | None = None
        """The meta bytes as last read from or committed to the store (None: never saved)."""
        self.sync = asyncio.Lock()
        self.outdated = False
        """Loaded from an earlier version's layout: `stage_upgrade` would save it as now."""
        self._dedup: set[str] | None = None
        self.space = f"kb:{name}#{next(_instances)}"
        """This instance's space in the `VectorSearch` port (row i is chunk i)."""

    def __len__(self) -> int:
        return len(self.chunks)

    async def add(self, chunks: Sequence[Chunk], vectors: array | None, *,  # type: ignore[type-arg]
                  segments: int | None = None) -> None:
        """Add chunks (and their vectors, row i for chunk i) to the in-memory indexes and, with
        `segments`, record that this many segments are now in memory. Uninterruptible: a caller
        cancelled meanwhile gets its `CancelledError` once the step is complete."""
        if vectors is not None and len(vectors) != len(chunks) * self.dim:
            raise AgentError(ErrorCode.INTERNAL, "one vector per chunk is required")
        await uninterruptible(self._add(chunks, vectors, segments))

    async def _add(self, chunks: Sequence[Chunk], vectors: array | None,  # type: ignore[type-arg]
                   segments: int | None) -> None:
        if vectors is not None and self._vectors is not None and chunks:
            await self._vectors.add(self.space, self.dim, vectors)
        base = len(self.chunks)
        for offset, chunk in enumerate(chunks):
            self.lexical.add(base + offset, chunk.search_text)
            self.sources[chunk.source] = self.sources.get(chunk.source, 0) + 1
            if self._dedup is not None:
                self._dedup.add(ChunkDeduper.key(chunk.text))
        self.chunks.extend(chunks)
        if vectors is None:
            self._has_vectors = False
        if segments is not None:
            self._sizes.append(len(chunks))
            self._segments = segments

    def searches_by_meaning(self, embedding: array | None) -> bool:  # type: ignore[type-arg]
        """Whether `search` ranks by meaning too (its condition): a question's vector, and
        vectors stored for the chunks (not when they were added while the model was away)."""
        return embedding is not None and self._vectors is not None and self._has_vectors

    async def search(self, query: str, embedding: array | None, k: int = 5  # type: ignore[type-arg]
                     ) -> list[Hit]:
        """The `k` best chunks for a question by fused BM25 + dense ranking."""
        if not self.chunks:
            return []
        depth = max(k * 4, 20)
        lexical = self.lexical.search(query, depth)
        dense: list[tuple[int, float]] = []
        if embedding is not None and self._vectors is not None and self._has_vectors:
            dense = await self._vectors.search(self.space, embedding, depth)
        fused = rank(query, lexical, dense, self.chunks, k, self.lexical.idf)
        return [Hit(self.chunks[f.index], f.score, f.lexical, f.dense) for f in fused]

    # -- persistence -------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return keyspace.kb_prefix(self.name) + "/".join(parts)

    def known(self, text: str) -> bool:
        """Whether a chunk with this text (normalised) is already stored."""
        if self._dedup is None:  # built on first use: loading should not pay for it
            self._dedup = {ChunkDeduper.key(c.text) for c in self.chunks}
        return ChunkDeduper.key(text) in self._dedup

    def stage_segment(self, tx: Staging, chunks: Sequence[Chunk],
                      vectors: array | None) -> bytes:  # type: ignore[type-arg]
        """Stage the next segment and the meta naming it; returns that meta for `apply`."""
        seg = f"{self._segments:06d}"
        payload = json.dumps([asdict(c) for c in chunks], ensure_ascii=False).encode()
        tx.put(self._key("seg", seg, "chunks"), payload)
        if vectors is not None:
            tx.put(self._key("seg", seg, "vectors"), le_bytes(vectors))
        meta = self.meta() | {"chunks": len(self.chunks) + len(chunks),
                              "segments": self._segments + 1,
                              "sizes": [*self._sizes, len(chunks)],
                              "vectors": self._has_vectors and vectors is not None}
        return self._stage_meta(tx, meta)

    async def apply_segment(self, meta: bytes, chunks: Sequence[Chunk],
                            vectors: array | None) -> None:  # type: ignore[type-arg]
        """Make a committed segment visible in memory (skipped if a catch-up already did)."""
        async with self.sync:
            if int(json.loads(meta)["segments"]) <= self._segments:
                return
            await self.add(chunks, vectors, segments=self._segments + 1)
            self.stored_meta = meta

    def stage_lexical(self, tx: Staging) -> bytes | None:
        """Stage the BM25 index as of now, or None if the saved one is current."""
        if self._lexical_segments == self._segments:
            return None
        tx.put(self._key("lexical"), encode_lexical(self.lexical))
        sources = {"segments": self._segments, "counts": self.sources}
        tx.put(self._key("sources"), json.dumps(sources, ensure_ascii=False).encode())
        return self._stage_meta(tx, self.meta() | {"lexical_segments": self._segments})

    def stage_upgrade(self, tx: Staging) -> bytes:
        """Stage this knowledge base's index, sources and meta in the current layout (its
        segments stay as they are); returns the meta for `apply_lexical`."""
        tx.put(self._key("lexical"), encode_lexical(self.lexical))
        sources = {"segments": self._segments, "counts": self.sources}
        tx.put(self._key("sources"), json.dumps(sources, ensure_ascii=False).encode())
        return self._stage_meta(tx, self.meta() | {"lexical_segments": self._segments})

    def apply_lexical(self, meta: bytes) -> None:
        self._lexical_segments = int(json.loads(meta)["lexical_segments"])
        self.stored_meta = meta

    def _stage_meta(self, tx: Staging, meta: dict[str, Any]) -> bytes:
        raw = json.dumps(meta).encode()
        tx.expect_value(self._key("meta"), self.stored_meta)
        tx.put(self._key("meta"), raw)
        return raw

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "chunks": len(self.chunks), "dim": self.dim,
                "segments": self._segments, "lexical_segments": self._lexical_segments,
                "vectors": self._has_vectors, "sizes": self._sizes}

    async def catch_up(self, store: Store, raw: bytes) -> bool:
        """Load the segments another writer committed since we last looked (`raw` is the
        stored meta now). False when the stored base is not a continuation of ours (deleted
        and re-created): the caller reloads it whole."""
        meta = json.loads(raw)
        async with self.sync:
            if int(meta["segments"]) < self._segments or int(meta["dim"]) != self.dim:
                return False
            for n in range(self._segments, int(meta["segments"])):
                chunks, vectors = await self._read_segment(store, n)
                await self.add(chunks, vectors, segments=n + 1)
            self._lexical_segments = int(meta.get("lexical_segments", 0))
            self.stored_meta = raw
        return True

    async def _read_segment(self, store: Store, n: int
                            ) -> tuple[list[Chunk], array | None]:  # type: ignore[type-arg]
        seg = f"{n:06d}"
        raw_chunks = json.loads(await _need(store, self._key("seg", seg, "chunks")))
        data = await store.get(self._key("seg", seg, "vectors"))
        return [Chunk(**c) for c in raw_chunks], None if data is None else from_le_bytes("f", data)

    @classmethod
    async def load(cls, store: Store, name: str, vectors: VectorSearch | None
                   ) -> KnowledgeBase | None:
        """The saved knowledge base `name`, or None if there is none. A load that fails or is
        cancelled leaves nothing behind in `vectors`."""
        kb = cls(name, vectors)
        try:
            return await kb._load(store)
        except BaseException:
            if vectors is not None:
                await vectors.drop(kb.space)
            raise

    async def _load(self, store: Store) -> KnowledgeBase | None:
        raw = await store.get(self._key("meta"))
        if raw is None:
            return None
        meta = json.loads(raw)
        self.stored_meta = raw
        self.dim = int(meta["dim"])
        segments = int(meta["segments"])
        sizes = meta.get("sizes")
        packed = isinstance(sizes, list) and len(sizes) == segments
        self.outdated = not packed
        self._lexical_segments = int(meta.get("lexical_segments", 0))
        names = [f"{n:06d}" for n in range(segments)]
        keys = [*(self._key("seg", seg, "chunks") for seg in names),
                *(self._key("seg", seg, "vectors") for seg in names),
                self._key("lexical"), self._key("sources")]
        values = await read_many(store, keys)
        texts, rows = values[:segments], values[segments:2 * segments]
        saved, sources = values[-2:]
        for n in range(segments):
            text = texts[n]
            if text is None:
                raise AgentError(ErrorCode.STORAGE, "stored knowledge base is incomplete: "
                                 f"{keys[n]} missing")
            if packed:
                self.chunks.add_packed(text, int(sizes[n]))
                self._sizes.append(int(sizes[n]))
            else:  # saved before segment sizes were kept: decode to count
                chunks = [Chunk(**c) for c in json.loads(text)]
                self.chunks.extend(chunks)
                self._sizes.append(len(chunks))
        self._load_sources(sources if packed else None)
        present = [r for r in rows if r is not None]
        if len(present) < len(rows):
            self._has_vectors = False
        elif present and self._vectors is not None:
            await add_rows(self._vectors, self.space, self.dim, present)
        self._segments = segments
        self._has_vectors = self._has_vectors and bool(meta.get("vectors", True))
        self.lexical = (decode_lexical(saved) if saved is not None and self._lexical_segments
                        else BM25Index())
        self.outdated = self.outdated or not packed_lexical(self.lexical)
        if len(self.lexical) > len(self.chunks):  # saved by a writer that committed after our read
            self.lexical = BM25Index()
        covered = len(self.lexical)
        for n in range(covered, len(self.chunks)):
            self.lexical.add(n, self.chunks[n].search_text)
        return self

    def _load_sources(self, raw: bytes | None) -> None:
        """Chunks per source: saved with the index, counted for the segments after it."""
        saved = json.loads(raw) if raw is not None else {}
        first = 0
        # Not when saved by a writer that committed after our read of the meta.
        if saved and int(saved["segments"]) <= len(self._sizes):
            self.sources = {str(k): int(v) for k, v in saved["counts"].items()}
            first = sum(self._sizes[:int(saved["segments"])])
        for n in range(first, len(self.chunks)):
            source = self.chunks[n].source
            self.sources[source] = self.sources.get(source, 0) + 1

    @property
    def lazily_loaded(self) -> bool:
        """Whether BM25 postings are still packed (decoded per query term, nothing to warm)."""
        postings = self.lexical.postings
        return isinstance(postings, LazyPostings) and postings.packed > 0

    async def delete(self, store: Store) -> None:
        """Remove every stored key of this knowledge base (one atomic commit) and its vectors."""
        await store.commit({}, await store.keys(self._key("")))
        if self._vectors is not None:
            await self._vectors.drop(self.space)


async def _need(store: Store, key: str) -> bytes:
    value = await store.get(key)
    if value is None:
        raise AgentError(ErrorCode.STORAGE, f"stored knowledge base is incomplete: {key} missing")
    return value


@runtime_checkable
class ReadsMany(Protocol):
    """A store that reads many keys in one call (`SqliteStore.get_many`)."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...


@runtime_checkable
class AddsParts(Protocol):
    """A vector space that assembles stored rows itself (`NumpyVectors.add_parts`)."""

    async def add_parts(self, space: str, dim: int, parts: Sequence[bytes]) -> int: ...


async def add_rows(vectors: VectorSearch, space: str, dim: int, parts: Sequence[bytes]) -> int:
    """Add the little-endian float32 rows of `parts` to a new space, in one piece: where the
    space can, it copies the parts straight into its own matrix (numpy's allocator asks the
    kernel for huge pages, so 27 MB of rows fault in ~14 pages, not ~6,600: half the copy's
    time when a 17.5k-passage base opens); else they are joined into one array first."""
    if isinstance(vectors, AddsParts):
        return await vectors.add_parts(space, dim, parts)
    return await vectors.add(space, dim, concat_floats(parts))


async def read_many(store: Store, keys: Sequence[str]) -> list[bytes | None]:
    """The values of `keys`, in order: in one call where the store can, else all at once
    (IndexedDB serves concurrent reads together)."""
    if isinstance(store, ReadsMany):
        return await store.get_many(keys)
    return list(await asyncio.gather(*(store.get(key) for key in keys)))
