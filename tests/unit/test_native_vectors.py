"""The native `VectorSearch` (numpy): vectors added a segment at a time (capacity grown by
doubling, not re-stacked) search exactly like the same rows added as one block."""

from __future__ import annotations

from array import array

from wasmagent.hosts.native import NumpyVectors


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
