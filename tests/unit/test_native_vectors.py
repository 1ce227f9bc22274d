"""The native `VectorSearch` (numpy): vectors added a segment at a time (capacity grown by
doubling, not re-stacked) search exactly like the same rows added as one block, and so do the
stored segments of a knowledge base handed over as they were read (`add_parts`), opened through
`KnowledgeBase.load` or added to a space that already has rows."""

from __future__ import annotations

import itertools
import json
from array import array
from collections.abc import Sequence

from wasmagent.hosts.native import NumpyVectors
from wasmagent.knowledge.kb import KnowledgeBase, add_rows
from wasmagent.knowledge.packed import le_bytes
from wasmagent.ports import MemoryStore


async def test_vectors_added_a_segment_at_a_time_search_like_one_block() -> None:
    rows = array("f", [float((i * 7919) % 101) for i in range(384 * 300)])
    whole, pieces = NumpyVectors(), NumpyVectors()
    await whole.add("s", 384, rows)
    for start in range(0, 300, 37):
        await pieces.add("s", 384, rows[start * 384:min(300, start + 37) * 384])
    query = rows[5 * 384:6 * 384]
    assert await pieces.search("s", query, 10) == await whole.search("s", query, 10)
    await pieces.drop("s")
    assert await pieces.search("s", query, 10) == []


def _rows(count: int, seed: int = 0) -> array:  # type: ignore[type-arg]
    return array("f", [float(((i + seed) * 7919) % 101) / 7 for i in range(384 * count)])


async def test_stored_segments_handed_over_as_read_search_like_one_block() -> None:
    rows = _rows(300)
    cuts = [0, 37, 38, 120, 300]
    parts = [le_bytes(rows[a * 384:b * 384]) for a, b in itertools.pairwise(cuts)]
    whole, opened = NumpyVectors(), NumpyVectors()
    await whole.add("s", 384, rows)
    assert await add_rows(opened, "s", 384, parts) == 300
    for row in (0, 37, 150, 299):
        query = rows[row * 384:(row + 1) * 384]
        assert await opened.search("s", query, 10) == await whole.search("s", query, 10)
    # Rows added after the stored ones (ingesting into an opened knowledge base) append.
    more = _rows(20, seed=5)
    assert await opened.add("s", 384, more) == 320
    assert await opened.add_parts("s", 384, [le_bytes(more)]) == 340
    await whole.add("s", 384, more)
    await whole.add("s", 384, more)
    query = more[3 * 384:4 * 384]
    assert await opened.search("s", query, 25) == await whole.search("s", query, 25)


async def test_a_knowledge_base_opens_its_vectors_through_add_parts() -> None:
    store = MemoryStore()
    rows = _rows(8)
    meta = {"format": 1, "name": "k", "chunks": 8, "dim": 384, "segments": 2,
            "lexical_segments": 0, "vectors": True, "sizes": [5, 3]}
    chunks = [{"id": f"c{i}", "source": "a.md", "title": "A", "heading": "A", "anchor": "",
               "text": f"zebra {i}"} for i in range(8)]
    await store.commit({
        "kb/k/meta": json.dumps(meta).encode(),
        "kb/k/seg/000000/chunks": json.dumps(chunks[:5]).encode(),
        "kb/k/seg/000000/vectors": le_bytes(rows[:5 * 384]),
        "kb/k/seg/000001/chunks": json.dumps(chunks[5:]).encode(),
        "kb/k/seg/000001/vectors": le_bytes(rows[5 * 384:]),
    }, [])
    handed: list[int] = []

    class Recording(NumpyVectors):
        async def add_parts(self, space: str, dim: int, parts: Sequence[bytes]) -> int:
            handed.append(len(parts))
            return await super().add_parts(space, dim, parts)

    vectors, whole = Recording(), NumpyVectors()
    kb = await KnowledgeBase.load(store, "k", vectors)
    assert kb is not None
    assert len(kb) == 8
    assert handed == [2]
    await whole.add("w", 384, rows)
    query = rows[6 * 384:7 * 384]
    assert await vectors.search(kb.space, query, 8) == await whole.search("w", query, 8)
