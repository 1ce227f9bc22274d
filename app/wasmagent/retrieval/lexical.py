"""BM25 (Okapi) over chunks, with an analyzer that understands code identifiers.

Analyzer: lower-case; words are runs of letters/digits/underscores, and dotted names stay whole
too (`os.path.join` is indexed as `os.path.join`, `os`, `path` and `join`; `__init__` as
`__init__` and `init`); English stop words go; a light suffix stemmer (plural -s/-es/-ies,
-ing, -ed) folds word forms so "opening files" finds "open a file".

Search scores only documents that contain a query term (an inverted index of postings), and
for each term only its `MAX_POSTINGS` highest-impact documents (impact = the BM25 term weight
without idf, computed once per term and cached until the index changes). A common term in a
17k-chunk index has up to ~8k postings; its low-impact tail does not lift a document into the
top few dozen (3,000 keeps our Python-docs evaluation identical to uncapped scoring; 1,500
already cost recall), and skipping it bounds the per-query work in Pyodide, where pure Python
is slow.
Scores: k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
"""

from __future__ import annotations

import heapq
import json
import math
import re
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from operator import itemgetter

from ..text.query import expand_query

K1 = 1.2
B = 0.75
MAX_POSTINGS = 3000
FORMAT = 1

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not now of off on once only or other our ours ourselves out over
own same she should so some such than that the their theirs them themselves then there these
they this those through to too under until up very was we were what when where which while who
whom why will with would you your yours yourself yourselves s t don i'm it's let me tell show
please explain use using used get want need know way thing things""".split())  # noqa: SIM905

_TOKEN = re.compile(r"[^\W_][\w]*(?:\.[^\W_]\w*)+|\w+", re.UNICODE)
_VOWEL = re.compile(r"[aeiouy]")


def stem(word: str) -> str:
    """A light English suffix stemmer (Porter steps 1 and 5 in spirit); short words stay."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if _VOWEL.search(base):
                if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz":
                    base = base[:-1]
                return base
    # A final silent e goes too, so "parse", "parsed" and "parsing" meet at "pars".
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def analyze(text: str) -> list[str]:
    """The index terms of a text (repeated terms repeat)."""
    terms: list[str] = []
    for raw in _TOKEN.findall(text.lower()):
        if "." in raw:
            terms.append(raw)
            terms.extend(stem(p) for p in raw.split(".") if p and p not in STOPWORDS)
            continue
        if "_" in raw:
            parts = [p for p in raw.split("_") if p]
            if raw.strip("_") != raw or len(parts) > 1:
                terms.append(raw)
            terms.extend(stem(p) for p in parts if p not in STOPWORDS)
            continue
        if raw not in STOPWORDS:
            terms.append(stem(raw))
    return terms


class Postings(dict[str, dict[int, int]]):
    """term -> {doc: tf}, with the questions search asks of one term answered without building
    anything (`knowledge.packed.LazyPostings` answers them from its packed arrays)."""

    def df(self, term: str) -> int:
        """How many documents hold `term`."""
        return len(self.get(term, ()))

    def pairs(self, term: str) -> tuple[Iterable[int], Iterable[int]]:
        """(docs, tfs) of `term`, in the same order."""
        docs = self.get(term) or {}
        return docs.keys(), docs.values()

    def common(self) -> list[str]:
        """Every term, the most common first."""
        return sorted(self, key=lambda term: -len(self[term]))


class BM25Index:
    """An incremental BM25 index over documents numbered 0, 1, 2, ..."""

    def __init__(self) -> None:
        self.postings: Postings = Postings()
        self.lengths: dict[int, int] = {}
        self._total = 0
        # term -> (docs, weights), highest weight first: 12 bytes a posting, not a tuple's ~90
        # (the background warm-up of an index built here keeps all of them).
        self._impacts: dict[str, tuple[array[int], array[float]]] = {}

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, doc: int, text: str) -> None:
        if doc in self.lengths:
            self.remove(doc)
        terms = analyze(text)
        self._impacts.clear()
        for term, tf in Counter(terms).items():
            self.postings.setdefault(term, {})[doc] = tf
        self.lengths[doc] = len(terms)
        self._total += len(terms)

    def remove(self, doc: int) -> None:
        length = self.lengths.pop(doc, None)
        if length is None:
            return
        self._total -= length
        self._impacts.clear()
        for term in list(self.postings):
            docs = self.postings[term]
            if docs.pop(doc, None) is not None and not docs:
                del self.postings[term]

    def idf(self, term: str) -> float:
        df = self.postings.df(term)
        n = len(self.lengths)
        return math.log(1 + (n - df + 0.5) / (df + 0.5)) if df else 0.0

    def search(self, query: str, k: int = 10) -> list[tuple[int, float]]:
        """The `k` best documents for `query` as (doc, score), best first; the query is
        expanded first (`text.query.expand_query`), the indexed text never is."""
        if not self.lengths or k <= 0:
            return []
        scores: dict[int, float] = {}
        for term in set(analyze(expand_query(query))):
            idf = self.idf(term)
            if not idf:
                continue
            docs, weights = self._impact(term)
            for doc, weight in zip(docs, weights, strict=True):
                scores[doc] = scores.get(doc, 0.0) + idf * weight
        # itemgetter, not a lambda: thousands of candidates a question, one call each.
        return heapq.nlargest(k, scores.items(), key=itemgetter(1))

    def warm(self, budget: int = 4_000) -> Iterator[int]:
        """Compute the impact lists of every term, most common first, yielding after about
        `budget` postings each time, so a caller can spread the work over idle moments."""
        done = 0
        for term in self.postings.common():
            # The index may have changed since we started: a removed term is skipped (with no
            # documents left, the average length in `_impact` would divide by zero).
            if term not in self._impacts and self.postings.df(term):
                done += len(self._impact(term)[0])
                if done >= budget:
                    yield done
                    done = 0
        yield done

    def _impact(self, term: str) -> tuple[array[int], array[float]]:
        """The term's postings as (docs, tf weights), highest first, at most MAX_POSTINGS."""
        cached = self._impacts.get(term)
        if cached is None:
            avg = self._total / len(self.lengths) or 1.0
            lengths = self.lengths
            docs, tfs = self.postings.pairs(term)
            weighted = [(doc, tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[doc] / avg)))
                        for doc, tf in zip(docs, tfs, strict=True)]
            if len(weighted) > MAX_POSTINGS:
                weighted = heapq.nlargest(MAX_POSTINGS, weighted, key=itemgetter(1))
            cached = self._impacts[term] = (array("i", map(itemgetter(0), weighted)),
                                            array("d", map(itemgetter(1), weighted)))
        return cached

    def to_bytes(self) -> bytes:
        flat = {t: [x for pair in docs.items() for x in pair] for t, docs in self.postings.items()}
        lengths = [x for pair in self.lengths.items() for x in pair]
        return json.dumps({"format": FORMAT, "lengths": lengths, "postings": flat},
                          separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> BM25Index:
        raw = json.loads(data)
        if raw.get("format") != FORMAT:
            raise ValueError(f"unsupported BM25 index format {raw.get('format')!r}")
        index = cls()
        lens = raw["lengths"]
        index.lengths = {lens[i]: lens[i + 1] for i in range(0, len(lens), 2)}
        index._total = sum(index.lengths.values())
        index.postings = Postings({t: {f[i]: f[i + 1] for i in range(0, len(f), 2)}
                                   for t, f in raw["postings"].items()})
        return index
