"""Extractive, grounded answers: quote the best sentences of the best chunks, and cite them.

Nothing is generated: every word of a confident answer comes from a cited chunk. Contract of
`compose_answer(question, hits)`:
- hits are ranked search results (best first) exposing `chunk`, `score` (fused), `lexical`
  (BM25) and `dense` (cosine, 0.0 when there is no model);
- when the evidence is weak — best cosine below `min_dense` with a model, or poor query-term
  coverage without one — the answer is the honest `I_DONT_KNOW` text, `confident=False`, and
  no citations (a closest-but-wrong passage is not presented as an answer);
- otherwise the answer is 1-3 sentences: the best-scoring sentence (query-term overlap weighted
  by rarity, boosted for identifiers and for the chunk's rank) plus its neighbours in the same
  chunk while they add relevant words, in their original order; citations list the chunk the
  sentences come from first, then other strong hits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..retrieval.chunking import Chunk, split_sentences
from ..retrieval.lexical import analyze

I_DONT_KNOW = ("I don't know: nothing in this knowledge base answers that closely enough. "
               "Try rephrasing, or add documents that cover it.")
MIN_DENSE = 0.30
MIN_COVERAGE = 0.5
MAX_WORDS = 90
SNIPPET_CHARS = 280


class HitLike(Protocol):
    @property
    def chunk(self) -> Chunk: ...
    @property
    def score(self) -> float: ...
    @property
    def lexical(self) -> float: ...
    @property
    def dense(self) -> float: ...


@dataclass(frozen=True, slots=True)
class AnswerCitation:
    source: str
    title: str
    anchor: str
    score: float
    snippet: str


@dataclass(frozen=True, slots=True)
class ComposedAnswer:
    text: str
    citations: list[AnswerCitation]
    confident: bool


@dataclass(frozen=True, slots=True)
class _Candidate:
    hit: int
    position: int
    sentence: str
    score: float


def _coverage(question_terms: set[str], chunk: Chunk) -> float:
    if not question_terms:
        return 0.0
    found = set(analyze(chunk.search_text))
    return len(question_terms & found) / len(question_terms)


def is_confident(question: str, hits: Sequence[HitLike], *, min_dense: float = MIN_DENSE
                 ) -> bool:
    if not hits:
        return False
    if any(h.dense for h in hits):
        return max(h.dense for h in hits) >= min_dense
    terms = set(analyze(question))
    return max(_coverage(terms, h.chunk) for h in hits[:3]) >= MIN_COVERAGE


def _weights(question_terms: set[str], sentences: list[set[str]]) -> dict[str, float]:
    """Rarer query terms among the candidate sentences count more; identifiers count double."""
    n = max(1, len(sentences))
    weights = {}
    for term in question_terms:
        df = sum(1 for terms in sentences if term in terms)
        weight = math.log(1 + n / (1 + df))
        weights[term] = weight * (2.0 if "." in term or "_" in term else 1.0)
    return weights


def _candidates(question: str, hits: Sequence[HitLike]) -> list[_Candidate]:
    terms = set(analyze(question))
    pool = [(i, p, s) for i, h in enumerate(hits[:3])
            for p, s in enumerate(split_sentences(h.chunk.text))]
    analyzed = [set(analyze(s)) for _, _, s in pool]
    weights = _weights(terms, analyzed)
    # A heading that matches the question vouches for every sentence under it.
    context = [0.5 * sum(weights[t] for t in terms & set(analyze(h.chunk.heading)))
               for h in hits[:3]]
    out = []
    for (i, p, sentence), sterms in zip(pool, analyzed, strict=True):
        overlap = sum(weights[t] for t in terms & sterms)
        length = len(sentence.split())
        score = (overlap + context[i]) / (1 + 0.05 * max(0, length - 25))
        score += 0.4 * (3 - i) / 3 + (0.15 if p == 0 else 0.0)
        if length < 4:
            score -= 0.5
        out.append(_Candidate(i, p, sentence, score))
    return out


def _expand(best: _Candidate, candidates: list[_Candidate]) -> list[_Candidate]:
    """The best sentence plus useful neighbours from its own chunk, in order."""
    same = sorted((c for c in candidates if c.hit == best.hit), key=lambda c: c.position)
    chosen = [best]
    words = len(best.sentence.split())
    for c in same:
        if c.position != chosen[-1].position + 1 or len(chosen) >= 3:
            continue
        size = len(c.sentence.split())
        if words + size > MAX_WORDS or (words >= 15 and c.score < best.score * 0.5):
            break
        chosen.append(c)
        words += size
    return chosen


def snippet(text: str, around: str = "") -> str:
    """Up to `SNIPPET_CHARS` of `text` from `around` (or the start), with ellipses where cut."""
    start = text.find(around) if around and around in text else 0
    piece = text[start:start + SNIPPET_CHARS]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + SNIPPET_CHARS < len(text) else ""
    return prefix + piece.strip() + suffix


def _cite(hit: HitLike, around: str = "") -> AnswerCitation:
    c = hit.chunk
    score = hit.dense if hit.dense else hit.score
    return AnswerCitation(c.source, c.heading or c.title, c.anchor, score, snippet(c.text, around))


def compose_answer(question: str, hits: Sequence[HitLike], *, min_dense: float = MIN_DENSE
                   ) -> ComposedAnswer:
    """An extractive answer with citations; see the module docstring for the contract."""
    if not is_confident(question, hits, min_dense=min_dense):
        return ComposedAnswer(I_DONT_KNOW, [], False)
    candidates = _candidates(question, hits)
    if not candidates:
        return ComposedAnswer(I_DONT_KNOW, [], False)
    best = max(candidates, key=lambda c: c.score)
    chosen = _expand(best, candidates)
    text = " ".join(c.sentence for c in chosen)
    main = hits[best.hit]
    citations = [_cite(main, chosen[0].sentence)]
    strong = min_dense if any(h.dense for h in hits) else 0.0
    for i, hit in enumerate(hits[:3]):
        if i != best.hit and hit.dense >= strong and hit.chunk.id != main.chunk.id:
            citations.append(_cite(hit))
    return ComposedAnswer(text, citations, True)
