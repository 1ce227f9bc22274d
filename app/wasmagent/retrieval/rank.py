"""The final ranking of a search: fused BM25 + dense evidence, then what a page is and says.

`rank(query, lexical, dense, chunks, k, idf)` takes both first-stage rankings (best first) and
returns the `k` best chunks as `Fused` rows, best first. A chunk's score is a linear model over
signals of the ~40 first-stage candidates of a query, never the whole index:

- first-stage evidence: its reciprocal rank (RRF, Cormack et al. 2009) in each list, its
  cosine (for a chunk the dense search did not list, the last listed one's: it is at most that
  close, and counting it as 0 cost a passage BM25 alone found ~0.25 against one only alike in
  meaning, among 150 pages alike but for their numbers), how far its cosine is below the best
  candidate's (`cosine_gap`: ranks hide that gap, and in a small knowledge base it is the
  clearest evidence there is — a short guide at 0.47 against a README section at 0.26), its
  BM25 score relative to the best one, and whether both searches found it;
- what it says: the idf-weighted share of the question's content words in its heading; and a
  page signal, the unweighted RRF score of the page's next-best candidate chunk (a page with a
  second matching passage is more likely about the subject; the sum over all of them let a long
  page outvote a short one about it);
- what the page is, from its title and path (`page_kind`, and common documentation-site names:
  Sphinx's `genindex`, a `whatsnew/` or `changelog` path, `faq`, `tutorial`, a `c-api/` path
  — nothing about one corpus in particular), crossed with what kind of question it is: index
  pages rank last, release notes and C-API reference lower (the latter unless the question is
  about C), FAQ pages higher for "why/is/does" questions and lower otherwise, tutorials higher.
  A page of measurements (a `report`: "Benchmarks") ranks lower unless the question is about
  speed or size, a prior like the release notes' (the Python docs have no such page to learn
  from): its figures name every component, change with every run, and in the app's own
  knowledge base had it outrank the model card for "which embedding model does it use?".
  A guide page is never pushed *down* for being a guide (the fit's bound): fitted freely on the
  Python docs, whose HOWTOs are long essays beside the reference page that answers, it learned
  to, and in the app's own knowledge base a user's setup guide then lost to README.md.

Then at most `per_page` chunks of one page are kept (one by default), so the answer can draw on
(and cite) several pages when the evidence is spread.

The weights were learned on the tuning questions of tests/bench/eval — the dev half and the
older `legacy` set, never the test half: a listwise softmax model (the probability of the
answering pages' chunks among a query's candidates, L2-regularised, features standardised)
fitted offline with numpy (tests/bench/eval/fit_rank.py), then rescaled so the dense RRF weight
is 1 (BM25's RRF weight, set by hand at 1, counts in the fit as it does here). The app's own
questions of small mixed knowledge bases (tests/bench/eval/own_kb.py, what the browser tests
ask) and tests/server/test_durable's identifier question are not in the fit; the fit must pass
them, and does with a margin.
Tried and left out: discounting the page signal by the page's share of the knowledge base (how
many of its passages a list holds by chance: it lowered cross-validated MRR on dev and failed
an own question whose answering page has several real matches), the page title's share of the
question's words (with the heading and the indexed title text already counted its learned
weight was negative), raw coverage of the question's words in the passage, a page's number of
candidate chunks (which would let a page gain from repeating a word), question-length
interactions, an async-variant prior. Release notes keep no penalty for questions about
changes: that rule has too few examples to learn from, so it stays a prior.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..text.query import asks_about_changes, clean_query
from .chunking import Chunk
from .fusion import Fused
from .lexical import analyze

SIGNALS = ("lexical", "dense", "cosine", "cosine_gap", "bm25", "both", "heading", "page",
           "index_page", "changelog", "changelog_asked", "guide", "guide_howto", "tutorial", "faq",
           "faq_why", "c_api", "report")
"""The signals of a candidate chunk (`signals`), in order; each has its weight in `Weights`."""


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each signal adds to a chunk's score (RRF scale: rank 1 ≈ 0.09); see the module
    docstring for how they were fitted (tests/bench/eval/fit_rank.py refits them)."""

    lexical: float = 1.0
    """Set by hand, as the dense rank's (plain RRF), not fitted: the Python docs fit drove it to
    ~0 (BM25's relative score carried their lexical evidence), and then a question naming an
    identifier (a shelf, an order number) lost to a passage that only reads like it. The other
    weights are fitted with it counted (and `bm25` ≥ 0.3, fit_rank.py's `BM25_FLOOR`)."""
    dense: float = 1.0
    cosine: float = 1.141
    cosine_gap: float = 1.97
    bm25: float = 0.3
    both: float = 0.263
    heading: float = 0.605
    page: float = 3.678
    index_page: float = -0.884
    changelog: float = -0.672
    changelog_asked: float = 0.0
    guide: float = 0.0
    guide_howto: float = 0.0
    tutorial: float = 0.291
    faq: float = -1.32
    faq_why: float = 2.18
    c_api: float = -1.023
    report: float = -0.672
    """A prior, not fitted (the Python docs have no such page): the release notes' weight."""
    rrf_k: int = 10
    per_page: int = 1

    def vector(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in SIGNALS)


WEIGHTS = Weights()

_INDEX = re.compile(r"^(?:index|general index|table of contents|contents|search|"
                    r"module index|site ?map)\b|\b(?:contents|index)$", re.I)
_CHANGELOG = re.compile(r"what.?s new|change ?log|release notes|\bnews\b|\bhistory\b", re.I)
_GUIDE = re.compile(r"how ?to|tutorial|guide|faq|cookbook|getting started|introduction",
                    re.I)
_HOWTO_Q = re.compile(r"^\s*(?:how|what is the (?:best|easiest) way|can i|is there a way)\b",
                      re.I)
_C_API = re.compile(r"(?:^|/)c-?api/")
_REPORT = re.compile(r"\bbenchmark(?:s|ing)?\b|\bperformance (?:results|report)\b|"
                     r"\bmeasurements\b", re.I)
_SPEED_Q = re.compile(r"\b(?:fast|faster|fastest|slow|slower|speed|latency|latencies|how long|"
                      r"how quick(?:ly)?|benchmarks?|performance|throughput|p50|p95|p99|ms|"
                      r"milliseconds|seconds|memory|how big|size|compare|comparison|versus|vs)\b",
                      re.I)
_WHY_Q = re.compile(r"^\s*(?:why|is|are|does|do|what happens)\b", re.I)
# C, C++, a C-API name (`PyObject`, `Py_INCREF`) or words about extending and embedding.
_ABOUT_C = re.compile(r"\bC\b|\bC\+\+|\bPy[A-Z_]\w+|(?i:c-api|\bcapi\b|extension module|"
                      r"\bembed|\bcpython\b|refcount|reference count)")


def asks_why(query: str) -> bool:
    """Whether the question asks why, or whether something is so (FAQ pages answer those)."""
    return bool(_WHY_Q.search(query))


def asks_about_c(query: str) -> bool:
    """Whether the question is about C (then C-API reference pages may answer)."""
    return bool(_ABOUT_C.search(query))


@lru_cache(maxsize=4096)
def page_kind(title: str, source: str) -> str:
    """`index`, `changelog`, `report`, `guide` or `reference`, from a page's title and path.
    A report is a page of measurements (benchmarks): like release notes, it records how fast
    or how big, and its figures mention everything else (and change with every run)."""
    name = source.rsplit("/", 1)[-1].lower()
    if _INDEX.search(title) or name.startswith(("genindex", "py-modindex", "search.")):
        return "index"
    if _REPORT.search(title) or name.startswith("benchmark"):
        return "report"
    if _CHANGELOG.search(title) or re.search(r"changelog|changes|whatsnew|news", source, re.I):
        return "changelog"
    if _GUIDE.search(title) or re.search(r"(?:^|/)(?:howto|tutorial|guide|faq)s?/", source):
        return "guide"
    return "reference"


@lru_cache(maxsize=4096)
def _page_traits(title: str, source: str) -> tuple[str, bool, bool, bool]:
    """(kind, FAQ, tutorial, C-API reference) of a page."""
    both = f"{source} {title}".lower()
    return (page_kind(title, source), "faq" in both, "tutorial" in both,
            bool(_C_API.search(source.lower())))


@lru_cache(maxsize=8192)
def _terms(text: str) -> frozenset[str]:
    return frozenset(analyze(text))


def _share(query: dict[str, float], total: float, text: str) -> float:
    if not total:
        return 0.0
    found = _terms(text)
    return sum(w for t, w in query.items() if t in found) / total


def _kinds(title: str, source: str, *, howto: bool, why: bool, changes: bool,
           about_c: bool, speed: bool) -> tuple[float, ...]:
    """The page-kind signals (`SIGNALS` from `index_page` on) of a page for a question."""
    kind, faq, tutorial, c_api = _page_traits(title, source)
    return (float(kind == "index"), float(kind == "changelog" and not changes),
            float(kind == "changelog" and changes), float(kind == "guide"),
            float(kind == "guide" and howto), float(tutorial), float(faq), float(faq and why),
            float(c_api and not about_c), float(kind == "report" and not speed))


def signals(query: str, lexical: Sequence[tuple[int, float]],
            dense: Sequence[tuple[int, float]], chunks: Sequence[Chunk],
            idf: Callable[[str], float] | None = None, rrf_k: int = WEIGHTS.rrf_k
            ) -> dict[int, tuple[float, ...]]:
    """Every candidate chunk (in either ranking) with its signals, in `SIGNALS` order."""
    lex_rank = {doc: r for r, (doc, _) in enumerate(lexical)}
    dense_rank = {doc: r for r, (doc, _) in enumerate(dense)}
    lex_score = dict(lexical)
    cosine = dict(dense)
    top_bm25 = lexical[0][1] if lexical and lexical[0][1] > 0 else 1.0
    # A chunk the dense search did not list is at most as close as its last one.
    floor = dense[-1][1] if dense else 0.0
    top_cosine = dense[0][1] if dense else 0.0
    rrf: dict[int, tuple[float, float]] = {}
    for doc in (*lex_rank, *dense_rank):
        if doc not in rrf:
            rrf[doc] = (1 / (rrf_k + 1 + lex_rank[doc]) if doc in lex_rank else 0.0,
                        1 / (rrf_k + 1 + dense_rank[doc]) if doc in dense_rank else 0.0)
    terms = {t: (idf(t) if idf else 1.0) for t in set(analyze(clean_query(query)))}
    terms = {t: v for t, v in terms.items() if v > 0}
    total = sum(terms.values())
    question = {"howto": bool(_HOWTO_Q.search(query)), "why": asks_why(query),
                "changes": asks_about_changes(query), "about_c": asks_about_c(query),
                "speed": bool(_SPEED_Q.search(query))}
    # The page signal is the page's best *other* candidate (by plain RRF), not the sum of all of
    # them: a long page that mentions a word everywhere must not outvote a short one about it.
    tops: dict[str, list[int]] = {}
    for doc in sorted(rrf, key=lambda d: -sum(rrf[d])):
        best = tops.setdefault(chunks[doc].source, [])
        if len(best) < 2:
            best.append(doc)
    out: dict[int, tuple[float, ...]] = {}
    for doc, (lex_rrf, dense_rrf) in rrf.items():
        c = chunks[doc]
        other = next((sum(rrf[d]) for d in tops[c.source] if d != doc), 0.0)
        near = cosine.get(doc, floor)
        out[doc] = (lex_rrf, dense_rrf, near, near - top_cosine, lex_score.get(doc, 0.0) / top_bm25,
                    float(doc in lex_rank and doc in dense_rank), _share(terms, total, c.heading),
                    other, *_kinds(c.title, c.source, **question))
    return out


def rank(query: str, lexical: Sequence[tuple[int, float]], dense: Sequence[tuple[int, float]],
         chunks: Sequence[Chunk], k: int, idf: Callable[[str], float] | None = None, *,
         weights: Weights = WEIGHTS) -> list[Fused]:
    """The `k` best chunks, best first; see the module docstring."""
    vector = weights.vector()
    if not dense:
        # Keyword search alone (no model): rank positions would hide by how much an exact match
        # of a rare word beats the rest; BM25's own proportions stand in for its RRF signal.
        vector = (0.0, 0.0, 0.0, 0.0, weights.bm25 + 1 / (weights.rrf_k + 1), *vector[5:])
    bm25 = dict(lexical)
    cosine = dict(dense)
    scored: list[tuple[float, Fused]] = []
    for doc, x in signals(query, lexical, dense, chunks, idf, weights.rrf_k).items():
        score = sum(w * v for w, v in zip(vector, x, strict=True))
        # The answer step reads a cosine of 0.0 as "the dense search did not find it".
        scored.append((score, Fused(doc, score, bm25.get(doc, 0.0), cosine.get(doc, 0.0))))
    scored.sort(key=lambda item: (-item[0], -item[1].dense))
    out: list[Fused] = []
    per_page: dict[str, int] = {}
    for _, f in scored:
        source = chunks[f.index].source
        if per_page.get(source, 0) >= weights.per_page:
            continue
        per_page[source] = per_page.get(source, 0) + 1
        out.append(f)
        if len(out) >= k:
            break
    return out
