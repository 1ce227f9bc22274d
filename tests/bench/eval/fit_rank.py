"""Refit the ranking weights (`wasmagent.retrieval.rank.Weights`) on the tuning questions.

    .venv/bin/python tests/bench/eval/fit_rank.py [--cv]

Needs the whole-corpus knowledge base the quality bench builds (.build/bench/pydocs.sqlite).
Uses the dev half and the legacy questions only — never the test half (README.md). For each
question it takes the same first-stage candidates a search does (BM25 and dense, 20 each), their
signals (`rank.signals`), and fits a listwise softmax model: maximise the probability the
answering chunks get among the candidates, L2-regularised on standardised signals. The weights
are printed rescaled so the dense RRF weight is 1, ready to paste into `Weights`.

The Python docs are one large, uniform site; users' knowledge bases are small and mixed. So a
fit is also judged on the app's own questions of such knowledge bases (own_kb.py): its margin on
each (the expected chunk's score minus the best chunk of another page, in dense-RRF units) is
printed, and a fit with a margin ≤ 0 exits with an error — do not take it. So is the identifier
question of tests/server/test_durable over its 150 near-identical pages (`shelves`, the last
margin printed; its knowledge base is ingested once into .build/bench/shelves.sqlite, ~30 s).
They are a check, not training data (`OWN_WEIGHT` 0): the learned weights never saw them and
pass them (smallest margins 0.06 in dense-RRF units, where rank 1 is 0.09). The `report` prior
(a page of measurements) takes the release notes' fitted weight (`TIED`): it was added after
re-rendered benchmark figures made BENCHMARKS.md outrank the model card. `FIXED` signals keep a
hand-set weight, and count in the fit's scores as they will in the product. `PRIORS` bound some
weights: a guide page is never pushed down for being a guide (fitted freely, the Python docs'
long HOWTO essays taught the model to, and a user's short setup guide then lost to README.md in
the app's own knowledge base); `BM25_FLOOR` keeps BM25's relative score for identifiers.

`--cv` first prints four-fold cross-validated search MRR on dev (legacy always in the fit).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[2] / "app"), str(HERE.parents[2])]

import numpy as np  # noqa: E402
import quality  # noqa: E402
from tests.bench.eval import own_kb  # noqa: E402

from wasmagent.retrieval.rank import SIGNALS, WEIGHTS, signals  # noqa: E402

DEPTH = 20
L2 = 3.0
OWN_WEIGHT = 0
"""How many times each own question would count in the fit (0: only checked)."""
FIXED = {"changelog_asked": 0.0, "lexical": WEIGHTS.lexical}
"""Signals kept at a prior weight (in final units): too few tuning examples (release notes asked
about changes) or none (the Python docs have no page of measurements) to learn them from."""
PRIORS = {"guide": 0.0, "guide_howto": 0.0, "tutorial": 0.0}
"""Signals whose weight may not fall below these bounds."""
BM25_FLOOR = 0.3
"""BM25's relative score weighs at least this (final units). It is what an identifier in the
question ("shelf 149", an order number) has for evidence when every passage reads alike to the
model: below ~0.15 "which bin holds part 3 of batch 9 on shelf 149?" cited shelf-003
(tests/server/test_durable; `shelves()` checks it). The Python docs alone would take it to 0.1."""
TIED = {"report": "changelog"}
"""Signals that take another's fitted weight: a page of measurements is a prior like the release
notes' (the Python docs have none to learn from). Set by hand, it fell behind when the fit's
scale grew, and BENCHMARKS.md then outranked the model card for "which embedding model does it
use?" (own_kb.py)."""
FIT = [i for i, name in enumerate(SIGNALS) if name not in FIXED and name not in TIED]


def _fitted(x: Any) -> Any:
    """The FIT columns of signals `x`, a tied signal added into the one whose weight it takes."""
    x = x.copy()
    for name, like in TIED.items():
        x[:, SIGNALS.index(like)] += x[:, SIGNALS.index(name)]
    return x[:, FIT]

Example = tuple[list[str], Any, Any]  # (candidate sources, answering mask, signals)


def _example(query: str, lexical: Any, dense: Any, kb: Any, answers: Any) -> Example:
    found = signals(query, lexical, dense, kb.chunks, kb.lexical.idf, WEIGHTS.rrf_k)
    chunks = [kb.chunks[d] for d in found]
    return ([c.source for c in chunks], np.array([answers(c) for c in chunks], dtype=float),
            np.array(list(found.values()), dtype=float))


async def examples(db: Path, splits: tuple[str, ...]) -> dict[str, list[Example]]:
    from wasmagent.hosts.native import native_host
    from wasmagent.service import Service

    host = native_host(db)
    service = Service(host, lambda event: None, intent_labels=host.intent_labels)
    service.start()
    kb = await service.library.get(quality.KB)
    assert service.embedder is not None
    assert kb._vectors is not None
    out: dict[str, list[Example]] = {}
    for split in splits:
        rows = out[split] = []
        for q in quality.load(split):
            vector = await service.embedder.embed_one(q["q"])
            lexical = kb.lexical.search(q["q"], DEPTH)
            dense = await kb._vectors.search(kb.space, vector, DEPTH)
            pages = set(q["pages"])
            rows.append(_example(q["q"], lexical, dense, kb,
                                 lambda c, pages=pages: c.source in pages))
    await service.aclose()
    own, cases = await own_kb.candidates()
    out["own"] = []
    for case, small, vector in cases:
        lexical = small.lexical.search(case.question, DEPTH)
        dense = await small._vectors.search(small.space, vector, DEPTH)
        expected = re.compile(case.first)
        out["own"].append(_example(case.question, lexical, dense, small,
                                   lambda c, e=expected: bool(e.search(f"{c.source}#{c.anchor}"))))
    await own.aclose()
    return out


SHELVES = [(f"shelf-{i:03d}.md", f"# Shelf {i}\n\n" + "\n\n".join(
    f"## Row {r}\n\n" + " ".join(f"Item {i}-{r}-{s} says that bin {i * 37 + r * 11 + s} holds "
                                 f"part {s} of batch {r}." for s in range(12))
    for r in range(10))) for i in range(150)]
"""tests/server/test_durable's knowledge base: 150 pages alike but for their numbers."""


async def shelves(db: Path) -> Example:
    """The identifier question of tests/server/test_durable over its knowledge base (ingested
    once into `db`, ~30 s)."""
    from wasmagent.hosts.native import native_host
    from wasmagent.protocol import DocumentIn
    from wasmagent.service import Service

    host = native_host(db)
    service = Service(host, lambda event: None, intent_labels=host.intent_labels)
    service.start()
    if "shelves" not in await service.library.names():
        await service.library.ingest("shelves", [DocumentIn(s, t) for s, t in SHELVES])
    kb = await service.library.get("shelves")
    question = "which bin holds part 3 of batch 9 on shelf 149?"
    lexical = kb.lexical.search(question, DEPTH)
    dense = await kb._vectors.search(kb.space, await service.embedder.embed_one(question), DEPTH)
    example = _example(question, lexical, dense, kb, lambda c: c.source == "shelf-149.md")
    await service.aclose()
    return example


def fit(data: list[Example], l2: float = L2, steps: int = 400) -> Any:
    """Weights over FIT (unstandardised), by Adam on the mean listwise log-loss; `PRIORS`
    bounds applied after every step. The `FIXED` signals count in every score as they will in
    the product: their final weights are relative to the dense RRF weight, so their part of a
    score is `dense weight × (signals · fixed weights)` (left out, the other weights were fitted
    as if BM25's rank weighed nothing, and then it weighed 1)."""
    stacked = np.vstack([_fitted(x) for _, _, x in data])
    mu, sd = stacked.mean(0), stacked.std(0) + 1e-9
    fixed = np.array([FIXED.get(name, 0.0) for name in SIGNALS])
    sets = [((_fitted(x) - mu) / sd, y, x @ fixed) for _, y, x in data if y.any()]
    d = FIT.index(SIGNALS.index("dense"))
    floor = np.full(len(FIT), -np.inf)
    for name, bound in PRIORS.items():
        floor[FIT.index(SIGNALS.index(name))] = bound
    b = FIT.index(SIGNALS.index("bm25"))
    w = np.zeros(len(FIT))
    w[d] = 1.0  # a positive dense weight to start from (the fixed part scales with it)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for step in range(1, steps + 1):
        grad = l2 * w / len(sets)
        for x, y, offset in sets:
            s = x @ w + w[d] / sd[d] * offset
            p = np.exp(s - s.max())
            p /= p.sum()
            answering = p * y
            q = answering / answering.sum()
            grad += (p @ x - q @ x) / len(sets)
            grad[d] += (p @ offset - q @ offset) / sd[d] / len(sets)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= 0.1 * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
        w = np.maximum(w * sd, floor) / sd  # the bounds hold for the unstandardised weights
        w[b] = max(w[b], BM25_FLOOR * w[d] / sd[d] * sd[b])
    return w / sd


def full(w: Any) -> Any:
    """Fitted weights (over FIT) as every signal's final weight, in `SIGNALS` order: rescaled so
    the dense RRF weight is 1, with the `FIXED` priors."""
    out = np.array([FIXED.get(name, 0.0) for name in SIGNALS])
    out[FIT] = w / w[FIT.index(SIGNALS.index("dense"))]
    for name, like in TIED.items():
        out[SIGNALS.index(name)] = out[SIGNALS.index(like)]
    return out


def mrr(data: list[Example], w: Any) -> float:
    """Search MRR over the distinct pages, with final weights (`full`)."""
    total = 0.0
    for sources, y, x in data:
        ranked = quality.distinct(sources[i] for i in np.argsort(-(x @ w)))
        pages = {s for s, ok in zip(sources, y, strict=True) if ok}
        total += quality.page_ranks(ranked, pages)[1]
    return total / len(data)


def margins(data: list[Example], w: Any) -> list[float]:
    """Per example: the best expected chunk's score minus the best chunk of another page, with
    final weights (`full`)."""
    out = []
    for sources, y, x in data:
        s = x @ w
        good = max(s[i] for i in range(len(s)) if y[i])
        page = {sources[i] for i in range(len(s)) if y[i]}
        out.append(good - max((s[i] for i in range(len(s)) if sources[i] not in page),
                              default=-1.0))
    return out


def main() -> None:
    data = asyncio.run(examples(quality.CACHE / "pydocs.sqlite", ("dev", "legacy")))
    dev, legacy, own = data["dev"], data["legacy"], data["own"]
    if "--cv" in sys.argv:
        scores = []
        for seed in range(4):
            order = np.random.default_rng(seed).permutation(len(dev))
            for fold in np.array_split(order, 4):
                held = set(fold.tolist())
                train = [dev[i] for i in order if i not in held] + legacy + own * OWN_WEIGHT
                scores.append(mrr([dev[i] for i in fold], full(fit(train))))
        print(f"4-fold cross-validated search MRR on dev: {np.mean(scores):.3f}")
    w = full(fit(dev + legacy + own * OWN_WEIGHT))
    print(f"search MRR: dev {mrr(dev, w):.3f}, legacy {mrr(legacy, w):.3f}, own {mrr(own, w):.3f}")
    own = [*own, asyncio.run(shelves(quality.CACHE / "shelves.sqlite"))]
    own_margins = [float(m) for m in margins(own, w)]
    print("own margins (dense-RRF units):", [round(m, 3) for m in own_margins])
    for name, value in zip(SIGNALS, w, strict=True):
        print(f"    {name}: float = {round(float(value), 3)}")
    if min(own_margins) <= 0:
        sys.exit("an own question's expected source is not first: do not take this fit "
                 "(raise OWN_WEIGHT, or find the signal that is missing)")


if __name__ == "__main__":
    main()
