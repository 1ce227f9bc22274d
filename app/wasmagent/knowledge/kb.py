"""One knowledge base: its chunks, a BM25 index and a dense vector space, searched hybrid.

Storage layout in the `Store` (all under `kb/<name>/`):
- `meta`               JSON: name, chunk count, embedding dim, segment count, sources
- `seg/<n>/chunks`     JSON list of the chunks added by one ingestion segment
- `seg/<n>/vectors`    their embeddings, raw little-endian float32 rows (absent without a model)
- `lexical`            the serialised BM25 index of the first `lexical_segments` segments

Segments are append-only, so saving new documents never rewrites old chunks or vectors.
A segment becomes visible only once `meta` names it: a crash mid-save leaves the previous
state intact (orphan segment keys are overwritten by the next save). The BM25 index is large,
so it is saved once per ingestion (`save_lexical`), not per segment; loading re-indexes the few
segments saved after it.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import AgentError, ErrorCode
from ..ports import Store, VectorSearch
from ..retrieval.chunking import Chunk
from ..retrieval.fusion import fuse
from ..retrieval.lexical import BM25Index

FORMAT = 1


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
        self.chunks: list[Chunk] = []
        self.lexical = BM25Index()
        self._vectors = vectors
        self._segments = 0
        self._lexical_segments = 0
        self._has_vectors = True
        self.sources: dict[str, int] = {}

    @property
    def space(self) -> str:
        return f"kb:{self.name}"

    def __len__(self) -> int:
        return len(self.chunks)

    async def add(self, chunks: Sequence[Chunk], vectors: array | None) -> None:  # type: ignore[type-arg]
        """Add chunks (and their vectors, row i for chunk i) to the in-memory indexes."""
        if vectors is not None and len(vectors) != len(chunks) * self.dim:
            raise AgentError(ErrorCode.INTERNAL, "one vector per chunk is required")
        base = len(self.chunks)
        for offset, chunk in enumerate(chunks):
            self.lexical.add(base + offset, chunk.search_text)
            self.sources[chunk.source] = self.sources.get(chunk.source, 0) + 1
        self.chunks.extend(chunks)
        if vectors is None:
            self._has_vectors = False
        elif self._vectors is not None and chunks:
            await self._vectors.add(self.space, self.dim, vectors)

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
        fused = fuse(lexical, dense)[:k]
        return [Hit(self.chunks[f.index], f.score, f.lexical, f.dense) for f in fused]

    # -- persistence -------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return "/".join(["kb", self.name, *parts])

    async def commit(self, store: Store, chunks: Sequence[Chunk],
                     vectors: array | None) -> None:  # type: ignore[type-arg]
        """Persist a newly added segment, then the meta that names it."""
        seg = f"{self._segments:06d}"
        payload = json.dumps([asdict(c) for c in chunks], ensure_ascii=False).encode()
        await store.put(self._key("seg", seg, "chunks"), payload)
        if vectors is not None:
            await store.put(self._key("seg", seg, "vectors"), _le_bytes(vectors))
        self._segments += 1
        await store.put(self._key("meta"), json.dumps(self.meta()).encode())

    async def save_lexical(self, store: Store) -> None:
        """Persist the BM25 index as of now (once per ingestion: it is the largest value)."""
        if self._lexical_segments == self._segments:
            return
        await store.put(self._key("lexical"), self.lexical.to_bytes())
        self._lexical_segments = self._segments
        await store.put(self._key("meta"), json.dumps(self.meta()).encode())

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "chunks": len(self.chunks), "dim": self.dim,
                "segments": self._segments, "lexical_segments": self._lexical_segments,
                "vectors": self._has_vectors,
                "sources": self.sources}

    @classmethod
    async def load(cls, store: Store, name: str, vectors: VectorSearch | None
                   ) -> KnowledgeBase | None:
        """The saved knowledge base `name`, or None if there is none."""
        kb = cls(name, vectors)
        raw = await store.get(kb._key("meta"))
        if raw is None:
            return None
        meta = json.loads(raw)
        kb.dim = int(meta["dim"])
        for n in range(int(meta["segments"])):
            seg = f"{n:06d}"
            raw_chunks = json.loads(await _need(store, kb._key("seg", seg, "chunks")))
            chunks = [Chunk(**c) for c in raw_chunks]
            data = await store.get(kb._key("seg", seg, "vectors"))
            kb.chunks.extend(chunks)
            for c in chunks:
                kb.sources[c.source] = kb.sources.get(c.source, 0) + 1
            if data is None:
                kb._has_vectors = False
            elif vectors is not None:
                await vectors.add(kb.space, kb.dim, _from_le_bytes(data))
        kb._segments = int(meta["segments"])
        kb._has_vectors = kb._has_vectors and bool(meta.get("vectors", True))
        kb._lexical_segments = int(meta.get("lexical_segments", 0))
        saved = await store.get(kb._key("lexical")) if kb._lexical_segments else None
        kb.lexical = BM25Index.from_bytes(saved) if saved is not None else BM25Index()
        covered = len(kb.lexical)
        for n in range(covered, len(kb.chunks)):
            kb.lexical.add(n, kb.chunks[n].search_text)
        return kb

    async def delete(self, store: Store) -> None:
        """Remove every stored key of this knowledge base and its vectors."""
        for key in await store.keys(self._key("")):
            await store.delete(key)
        if self._vectors is not None:
            await self._vectors.drop(self.space)


async def _need(store: Store, key: str) -> bytes:
    value = await store.get(key)
    if value is None:
        raise AgentError(ErrorCode.STORAGE, f"stored knowledge base is incomplete: {key} missing")
    return value


def _le_bytes(values: array) -> bytes:  # type: ignore[type-arg]
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array("f", values)
    swapped.byteswap()
    return swapped.tobytes()


def _from_le_bytes(data: bytes) -> array:  # type: ignore[type-arg]
    values = array("f")
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values
