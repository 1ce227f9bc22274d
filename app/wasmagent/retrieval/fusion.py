"""Fuse a lexical and a dense ranking into one (reciprocal rank fusion).

RRF (Cormack et al. 2009) adds 1 / (k + rank) over the lists a document appears in. It needs no
score calibration between BM25 (unbounded) and cosine similarity (-1..1), which is why it is
used here. k = 10 rather than the customary 60: a smaller k lets the top of each list count
more, which on our Python-docs evaluation set lifted MRR from 0.80 to 0.82 (k was swept over
10/30/60; see BENCHMARKS.md, and note the set is small). The raw scores ride along so the
answer step can judge confidence on a calibrated scale (the cosine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RRF_K = 10


@dataclass(frozen=True, slots=True)
class Fused:
    index: int
    score: float
    lexical: float
    dense: float


def fuse(lexical: Sequence[tuple[int, float]], dense: Sequence[tuple[int, float]], *,
         k: int = RRF_K, dense_weight: float = 1.0, lexical_weight: float = 1.0) -> list[Fused]:
    """Both rankings (best first) merged by weighted RRF, best first; ties by dense score."""
    fused: dict[int, float] = {}
    lex_scores = dict(lexical)
    dense_scores = dict(dense)
    for rank, (doc, _) in enumerate(lexical):
        fused[doc] = fused.get(doc, 0.0) + lexical_weight / (k + rank + 1)
    for rank, (doc, _) in enumerate(dense):
        fused[doc] = fused.get(doc, 0.0) + dense_weight / (k + rank + 1)
    ranked = sorted(fused.items(), key=lambda item: (-item[1], -dense_scores.get(item[0], 0.0)))
    return [Fused(doc, score, lex_scores.get(doc, 0.0), dense_scores.get(doc, 0.0))
            for doc, score in ranked]
