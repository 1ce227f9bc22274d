"""Vector helpers the embedding tests share."""

from __future__ import annotations

import math
import zlib
from array import array
from collections.abc import Sequence

from wasmagent.ports import Tensor


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def hashed_embeddings(ids: Tensor, normalise: bool = False) -> Tensor:
    """A stand-in MiniLM's output: each row's token ids hashed into 384 buckets, so texts
    sharing words get close vectors without a model (and without numpy, for Pyodide)."""
    rows, width = ids.shape
    out = array("f", bytes(4 * 384 * rows))
    for r in range(rows):
        for t in ids.data[r * width:(r + 1) * width]:
            out[r * 384 + zlib.crc32(str(t).encode()) % 384] += 1.0
        if normalise:
            norm = math.sqrt(sum(x * x for x in out[r * 384:(r + 1) * 384])) or 1.0
            for i in range(r * 384, (r + 1) * 384):
                out[i] /= norm
    return Tensor("float32", (rows, 384), out)


class ListVectors:
    """A pure-Python `VectorSearch` (the core tests run in Pyodide, without numpy), counting
    its searches."""

    def __init__(self) -> None:
        self.spaces: dict[str, list[list[float]]] = {}
        self.searches = 0

    async def add(self, space: str, dim: int, rows: array) -> int:  # type: ignore[type-arg]
        found = self.spaces.setdefault(space, [])
        found.extend(list(rows[i:i + dim]) for i in range(0, len(rows), dim))
        return len(found)

    async def search(self, space: str, query: array, k: int  # type: ignore[type-arg]
                     ) -> list[tuple[int, float]]:
        self.searches += 1
        scores = [(i, sum(a * b for a, b in zip(row, query, strict=True)))
                  for i, row in enumerate(self.spaces.get(space, []))]
        return sorted(scores, key=lambda s: (-s[1], s[0]))[:k]

    async def drop(self, space: str) -> None:
        self.spaces.pop(space, None)
