"""Extractive, grounded answers: quote the best sentences of the best chunks, and cite them.

Nothing is generated: every word of an answer's text comes from a cited chunk, or is one of
the two fixed notices. Contract of `compose_answer(question, hits)`:
- hits are ranked search results (best first) exposing `chunk`, `score` (fused), `lexical`
  (BM25) and `dense` (cosine, 0.0 when there is no model);
- three outcomes, by how strong the evidence is (`evidence`):
  - **none** — best cosine below `NONE_DENSE` with a model (or, without one, under
    `MIN_COVERAGE` of the question's content words in the top hits): the honest `I_DONT_KNOW`,
    `confident=False`, no citations (a closest-but-wrong passage is not presented at all). A
    question in another language that BM25 matched through the glossary is *weak* instead: the
    model is English-only, so its low cosine says little;
  - **weak** — some evidence, but not enough to assert a sentence: `NOT_SURE` ("I'm not sure —
    these pages may help:"), `confident=False`, citing up to `MAX_PAGES` distinct pages in rank
    order. That is when none of the hits was among the model's nearest passages (the question
    was searched by meaning, `dense=True`, but only BM25 found these), or the top hit was not
    found by both BM25 and the dense search, or its own cosine is under `STRONG_DENSE` (unless
    it holds every content word of the question and no hit is closer in meaning: short
    documents and questions score lower cosines), or the top passages hold under
    `MIN_COVERAGE` of the question's words, or no sentence holds `MIN_MATCH` of them;
  - **strong** — 1-3 sentences, `confident=True`: among the sentences of the top
    `SENTENCE_HITS` hits that hold at least `MIN_MATCH` of the question's content words (in the
    sentence or the heading/title above it), the best by rarity-weighted overlap, heading match
    and length, minus `HIT_PENALTY` per rank step of its hit (the quoted page is cited first, so
    it should be the best-ranked page that answers); plus its neighbours in the same chunk while
    they add relevant words, in their original order. Citations: that chunk, then other pages
    in rank order whose evidence is close to the best's (`_pages`; one citation per page, ≤
    `MAX_PAGES`).
- Thresholds and weights were fitted on the dev half of tests/bench/eval, never the test half.
  Calibration (`STRONG_DENSE` judged on the top hit, not the best cosine anywhere) was chosen
  so that confident answers cite an answering page ≥ 98% of the time on dev, leaving room for
  the unseen half (BENCHMARKS.md has both halves).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

from ..protocol import Source
from ..retrieval.chunking import Chunk, split_sentences
from ..retrieval.lexical import analyze
from ..text.query import clean_query, is_foreign

I_DONT_KNOW = ("I don't know: nothing in this knowledge base answers that closely enough. "
               "Try rephrasing, or add documents that cover it.")
NOT_SURE = "I'm not sure — these pages may help:"
NONE_DENSE = 0.25
"""Below this best cosine nothing is cited: MiniLM scores unrelated pairs ~0.0-0.15 (an
off-topic question against this project's own docs: 0.11), while short, vague on-topic
questions against small knowledge bases can score only ~0.3."""
STRONG_DENSE = 0.5
COSINE_TIE = 0.01
"""Cosines closer than this are a tie: int8 MiniLM moves a cosine by up to ~0.005 between
CPUs (VNNI or not) and runtimes (onnxruntime natively, onnxruntime-web), and 0.309 against
0.313 was enough to flip a sure answer to "not sure" when a page elsewhere changed."""
"""From this cosine of the top hit (with enough coverage) a sentence may be asserted."""
MIN_COVERAGE = 0.4
"""The share of the question's content words the best passages must hold."""
MAX_WORDS = 90
MAX_PAGES = 5
CITE_RATIO = 0.75
"""Another page is cited with a confident answer when its cosine is ≥ this × the best's, …"""
FUSED_RATIO = 0.5
"""… or its fused score ≥ this × the best's. On the dev half of tests/bench/eval, citing only
by cosine left out 4% of questions' answering pages that the search had in its top 5 (found
by BM25 alone, so without a cosine); a fused-score floor of 0.4 cited them all with the ranking
weights of before, and 0.5 (dev: 0.35-0.5 alike, 0.6 loses one) with the ones refitted with
BM25's rank and the unlisted chunks' cosine counted, whose scores carry a larger common part."""
FUSED_TIE = 0.97
"""A passage this close to the first in fused score stands in for it in `evidence`."""
SENTENCE_HITS = 3
MATCH_WEIGHT = 1.0
HIT_PENALTY = 2.0
"""Sentence-score units per rank step of a sentence's hit. 3.0 gained dev MRR 0.837 -> 0.842,
but then "sorted by key" (a serialisation option) outranked the sentence that says what a key
function is, the issue's own failure shape (tests/unit/test_extractive.py)."""
MIN_MATCH = 0.34
"""A quoted sentence (with its heading and title) holds at least this share of the question's
rarity-weighted content words: about one word in three."""
SNIPPET_CHARS = 280
ON_TOPIC = 0.5
ON_TOPIC_DENSE = 0.4

Evidence = Literal["none", "weak", "strong"]


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
class ComposedAnswer:
    text: str
    citations: list[Source]
    confident: bool
    on_topic: bool = False
    """Whether the documents speak to the question even if not surely (`_on_topic`): a sure
    intent guess (out of scope, a tool nobody could parse) gives way to them then."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    hit: int
    position: int
    sentence: str
    score: float
    matched: float
    """The share of the question's (weighted) content words found in this sentence or in the
    heading or title above it (an FAQ heading often is the question, its sentences only the
    answer)."""


@lru_cache(maxsize=256)
def _terms(text: str) -> frozenset[str]:
    """A passage's analysed words. One answer reads the top passages' several times (evidence,
    on-topic, coverage), and stemming a whole passage each time was a third of an answer's work
    (~3 ms natively, 3-5x that in Pyodide) on the Python docs."""
    return frozenset(analyze(text))


def _coverage(question_terms: set[str], chunk: Chunk) -> float:
    if not question_terms:
        return 0.0
    found = _terms(chunk.search_text)
    return len(question_terms & found) / len(question_terms)


def _by_meaning(hits: Sequence[HitLike], dense: bool | None) -> bool:
    """Whether the question was searched by meaning too: as the caller says, or (None) as the
    hits' cosines show."""
    return any(h.dense for h in hits) if dense is None else dense


def evidence(question: str, hits: Sequence[HitLike], dense: bool | None = None) -> Evidence:
    """How strongly the hits answer the question (see the module docstring). `dense`: whether
    the question was searched by meaning too; None reads it from the hits' cosines."""
    if not hits:
        return "none"
    terms = set(analyze(question))
    covered = [_coverage(terms, h.chunk) for h in hits[:3]]
    coverage = max(covered, default=0.0)
    if not _by_meaning(hits, dense):
        return "strong" if coverage >= MIN_COVERAGE else "none"
    best = max(h.dense for h in hits)
    if best == 0.0:
        # Searched by meaning too, yet none of the model's nearest passages made the top hits:
        # the words in common may be a coincidence ("write me a poem about the sea" against the
        # Python docs had a confident quote) or a name only BM25 knows. Pages, no assertion.
        return "weak" if coverage >= MIN_COVERAGE else "none"
    if best < NONE_DENSE:
        # The model is English-only: a question in another language that BM25 still matched
        # (through the glossary) gets the pages, never an assertion.
        return "weak" if is_foreign(question) and hits[0].lexical > 0 else "none"
    top = hits[0]
    # Both rankings must have found the passage that would be quoted, and either it is close in
    # meaning (cosine) with good coverage, or — for short documents and questions, whose cosines
    # run lower — a top passage holds every content word of the question and is as close as
    # any (a near-tie in the fused score may have put another page first: the answer quotes
    # the passage that holds the words, not necessarily the first).
    close = top.lexical > 0 and top.dense >= STRONG_DENSE and coverage >= MIN_COVERAGE
    whole = any(h.lexical > 0 and h.dense >= max(NONE_DENSE, best - COSINE_TIE) and share >= 1
                and h.score >= FUSED_TIE * top.score
                for h, share in zip(hits, covered, strict=False))
    return "strong" if close or whole else "weak"


def _on_topic(question: str, hits: Sequence[HitLike], dense: bool | None) -> bool:
    """Whether the documents speak to the question though not surely (their evidence is not
    "none"): a top passage holds at least `ON_TOPIC` of the question's content words and (with
    a model) the closest one is at least `ON_TOPIC_DENSE` close in meaning. The intent head calls
    how-to questions it has never seen out of scope or a tool request ("check if an ip address
    belongs to a network", "how many days between two dates": 5 of 168 on the dev half of
    tests/bench/eval, cosines 0.46-0.60 to their pages), and those pages, cited, help more than
    a canned brush-off; a real brush-off against the Python docs finds one word of two ("play
    some music": 0.36, "send an email to my boss": 0.37)."""
    best = max((h.dense for h in hits), default=0.0)
    if _by_meaning(hits, dense) and best < ON_TOPIC_DENSE:
        return False
    terms = set(analyze(question))
    return max((_coverage(terms, h.chunk) for h in hits[:3]), default=0.0) >= ON_TOPIC


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
    top = hits[:SENTENCE_HITS]
    pool = [(i, p, s) for i, h in enumerate(top)
            for p, s in enumerate(split_sentences(h.chunk.text))]
    analyzed = [set(analyze(s)) for _, _, s in pool]
    weights = _weights(terms, analyzed)
    total = sum(weights.values()) or 1.0
    # A heading that matches the question vouches for every sentence under it.
    heads = [terms & set(analyze(h.chunk.heading)) for h in top]
    titled = [heads[i] | (terms & set(analyze(h.chunk.title))) for i, h in enumerate(top)]
    out = []
    for (i, p, sentence), sterms in zip(pool, analyzed, strict=True):
        own = terms & sterms
        overlap = sum(weights[t] for t in own)
        context = 0.5 * sum(weights[t] for t in heads[i])
        length = len(sentence.split())
        score = (overlap + context) / (1 + 0.05 * max(0, length - 25))
        score += 0.4 * (len(top) - i) / len(top) + (0.15 if p == 0 else 0.0)
        if length < 4:
            score -= 0.5
        matched = sum(weights[t] for t in own | titled[i]) / total
        out.append(_Candidate(i, p, sentence, score, matched))
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


def _cite(hit: HitLike, around: str = "") -> Source:
    c = hit.chunk
    score = hit.dense if hit.dense else hit.score
    return Source(c.source, c.heading or c.title, c.anchor, score, snippet(c.text, around))


def _pages(hits: Sequence[HitLike], first: HitLike | None = None) -> list[HitLike]:
    """One hit per page (its best) in rank order, `first` leading, at most MAX_PAGES. With a
    `first` (a confident answer) other pages only when their evidence is close to the best
    hit's: cosine ≥ `CITE_RATIO` × the best (BM25 without a model), or fused score ≥
    `FUSED_RATIO` × the best — a page only BM25 found has no cosine at all, yet may be the one
    that answers."""
    dense = any(h.dense for h in hits)
    best = max((h.dense if dense else h.lexical) for h in hits) if hits else 0.0
    top = max((h.score for h in hits), default=0.0)
    chosen = [first] if first is not None else []
    seen = {h.chunk.source for h in chosen}
    for hit in hits:
        if len(chosen) >= MAX_PAGES:
            break
        strength = hit.dense if dense else hit.lexical
        close = first is None or strength >= CITE_RATIO * best or hit.score >= FUSED_RATIO * top
        if hit.chunk.source not in seen and close:
            chosen.append(hit)
            seen.add(hit.chunk.source)
    return chosen


def compose_answer(question: str, hits: Sequence[HitLike],
                   dense: bool | None = None) -> ComposedAnswer:
    """An extractive answer with citations; see the module docstring for the contract.
    `dense`: whether the question was searched by meaning too (None: read from the hits)."""
    question = clean_query(question)
    level = evidence(question, hits, dense)
    if level == "none":
        return ComposedAnswer(I_DONT_KNOW, [], False)
    every = [] if level == "weak" else _candidates(question, hits)
    candidates = [c for c in every if c.matched >= MIN_MATCH]
    if not candidates:
        return ComposedAnswer(NOT_SURE, [_cite(h) for h in _pages(hits)], False,
                              _on_topic(question, hits, dense))
    # The sentence score already weighs rare words and the heading; a sentence that says more of
    # what was asked gets a further lift, and a lower-ranked hit must earn its place: the page
    # quoted is the first one cited, and it should be the best-ranked page that answers.
    best = max(candidates, key=lambda c: c.score + MATCH_WEIGHT * c.matched - HIT_PENALTY * c.hit)
    chosen = _expand(best, every)
    main = hits[best.hit]
    others = _pages(hits, main)[1:]
    citations = [_cite(main, chosen[0].sentence)] + [_cite(h) for h in others]
    return ComposedAnswer(" ".join(c.sentence for c in chosen), citations, True, True)
