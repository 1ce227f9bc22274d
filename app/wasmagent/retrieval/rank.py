"""The final ranking of a search: fused BM25 + dense scores, then what a page is and says.

`rank(query, lexical, dense, chunks, k, idf)` takes both first-stage rankings (best first) and
returns the `k` best chunks as `Fused` rows, best first:

1. weighted reciprocal rank fusion of the two lists (`fusion.fuse`);
2. plus a title signal: the share of the question's content words (weighted by idf) found in
   the chunk's page title, and in its heading — a page *about* the asked thing beats one that
   mentions it in passing; and a page signal: a share of the fused score of the page's next-best
   candidate chunk (a page with a second matching passage is more likely about the subject; the
   sum over all of them was as good on dev but let a long page outvote a short one about it);
3. plus a page-kind prior from the title and path (titles, and common documentation-site
   names such as Sphinx's `genindex` or a `whatsnew/` or `changelog` path — nothing about one
   corpus in particular): index and contents pages rank last, release notes ("What's New",
   changelogs) lower unless the question is about versions or changes, guides (how-to,
   tutorial, FAQ) a little higher for how-to questions;
4. then at most `per_page` chunks of one page (one by default), so the answer can draw on
   (and cite) several pages when the evidence is spread.

Weights were fitted on the dev half of tests/bench/eval (never the test half): over plain RRF
the search's page MRR on dev went from 0.748 to 0.797 and recall@5 from 0.940 to 0.952, most of
it from the page signal and one passage per page; the title and kind signals add little there
and are kept small. Later attempts found nothing more: extra signals (raw cosine and BM25
magnitudes, a page's opening section, signature-like headings, a passage both rankings found,
query-word coverage, page-level RRF, C-declaration headings) swept one at a time lost on dev,
and re-fitting all weights on one half of dev gained nothing on the other half. What still
fails is mostly the meaning of the question. Works on the ~40 first-stage candidates of a
query, never the whole index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..text.query import asks_about_changes, clean_query
from .chunking import Chunk
from .fusion import Fused, fuse
from .lexical import analyze


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each signal adds to a chunk's fused score (RRF scale: rank 1 ≈ 0.09)."""

    lexical: float = 1.0
    dense: float = 1.0
    title: float = 0.06
    heading: float = 0.03
    index_page: float = -0.2
    changelog: float = -0.04
    guide: float = 0.01
    page: float = 0.3
    rrf_k: int = 10
    per_page: int = 1


WEIGHTS = Weights()

_INDEX = re.compile(r"^(?:index|general index|table of contents|contents|search|"
                    r"module index|site ?map)\b|\b(?:contents|index)$", re.I)
_CHANGELOG = re.compile(r"what.?s new|change ?log|release notes|\bnews\b|\bhistory\b", re.I)
_GUIDE = re.compile(r"how ?to|tutorial|guide|faq|cookbook|getting started|introduction",
                    re.I)
_HOWTO_Q = re.compile(r"^\s*(?:how|what is the (?:best|easiest) way|can i|is there a way)\b",
                      re.I)


@lru_cache(maxsize=4096)
def page_kind(title: str, source: str) -> str:
    """`index`, `changelog`, `guide` or `reference`, from a page's title and path."""
    name = source.rsplit("/", 1)[-1].lower()
    if _INDEX.search(title) or name.startswith(("genindex", "py-modindex", "search.")):
        return "index"
    if _CHANGELOG.search(title) or re.search(r"changelog|changes|whatsnew|news", source, re.I):
        return "changelog"
    if _GUIDE.search(title) or re.search(r"(?:^|/)(?:howto|tutorial|guide|faq)s?/", source):
        return "guide"
    return "reference"


@lru_cache(maxsize=8192)
def _terms(text: str) -> frozenset[str]:
    return frozenset(analyze(text))


def _share(query: dict[str, float], total: float, text: str) -> float:
    if not total:
        return 0.0
    found = _terms(text)
    return sum(w for t, w in query.items() if t in found) / total


def rank(query: str, lexical: Sequence[tuple[int, float]], dense: Sequence[tuple[int, float]],
         chunks: Sequence[Chunk], k: int, idf: Callable[[str], float] | None = None, *,
         weights: Weights = WEIGHTS) -> list[Fused]:
    """The `k` best chunks, best first; see the module docstring."""
    if dense:
        fused = fuse(lexical, dense, k=weights.rrf_k, dense_weight=weights.dense,
                     lexical_weight=weights.lexical)
    else:
        # Keyword search alone (no model): rank positions would hide by how much an exact
        # match of a rare word beats the rest; keep BM25's own proportions, on the RRF scale.
        top = lexical[0][1] if lexical and lexical[0][1] > 0 else 1.0
        fused = [Fused(i, weights.lexical * s / top / (weights.rrf_k + 1), s, 0.0)
                 for i, s in lexical]
    terms = {t: (idf(t) if idf else 1.0) for t in set(analyze(clean_query(query)))}
    terms = {t: w for t, w in terms.items() if w > 0}
    total = sum(terms.values())
    changes = asks_about_changes(query)
    howto = bool(_HOWTO_Q.search(query))
    # The page signal is the page's best *other* passage (`fused` is best first), not the sum of
    # all of them: a long page that mentions a word everywhere must not outvote a short one
    # that is about it.
    tops: dict[str, list[Fused]] = {}
    for f in fused:
        best = tops.setdefault(chunks[f.index].source, [])
        if len(best) < 2:
            best.append(f)
    scored: list[tuple[float, Fused]] = []
    for f in fused:
        c = chunks[f.index]
        kind = page_kind(c.title, c.source)
        others = [g.score for g in tops[c.source] if g is not f]
        other = others[0] if others else 0.0
        bonus = (weights.page * other
                 + weights.title * _share(terms, total, c.title)
                 + weights.heading * _share(terms, total, c.heading))
        if kind == "index":
            bonus += weights.index_page
        elif kind == "changelog" and not changes:
            bonus += weights.changelog
        elif kind == "guide" and howto:
            bonus += weights.guide
        scored.append((f.score + bonus, f))
    scored.sort(key=lambda item: (-item[0], -item[1].dense))
    out: list[Fused] = []
    per_page: dict[str, int] = {}
    for score, f in scored:
        source = chunks[f.index].source
        if per_page.get(source, 0) >= weights.per_page:
            continue
        per_page[source] = per_page.get(source, 0) + 1
        out.append(Fused(f.index, score, f.lexical, f.dense))
        if len(out) >= k:
            break
    return out
