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
printed, and a fit with a margin ≤ 0 exits with an error — do not take it. They are a check,
not training data (`OWN_WEIGHT` 0): the learned weights never saw them and pass them (smallest
margin 0.10 in dense-RRF units, where rank 1 is 0.09). The hand-set `report` prior was added
after re-rendered benchmark figures made BENCHMARKS.md outrank the model card (with the
ranking before this fit too). `PRIORS` bound some weights: a guide page is never pushed down
for being a guide (fitted freely, the Python docs' long HOWTO essays taught the model to, and a
user's short setup guide then lost to README.md in the app's own knowledge base).

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
FIXED = {"changelog_asked": 0.0, "report": WEIGHTS.report, "lexical": WEIGHTS.lexical}
"""Signals kept at a prior weight (in final units): too few tuning examples (release notes asked
about changes) or none (the Python docs have no page of measurements) to learn them from."""
PRIORS = {"guide": 0.0, "guide_howto": 0.0, "tutorial": 0.0}
"""Signals whose weight may not fall below these bounds."""
FIT = [i for i, name in enumerate(SIGNALS) if name not in FIXED]

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


def fit(data: list[Example], l2: float = L2, steps: int = 400) -> Any:
    """Weights over FIT (unstandardised), by Adam on the mean listwise log-loss; `PRIORS`
    bounds applied after every step."""
    stacked = np.vstack([x[:, FIT] for _, _, x in data])
    mu, sd = stacked.mean(0), stacked.std(0) + 1e-9
    sets = [((x[:, FIT] - mu) / sd, y) for _, y, x in data if y.any()]
    floor = np.full(len(FIT), -np.inf)
    for name, bound in PRIORS.items():
        floor[FIT.index(SIGNALS.index(name))] = bound
    w = np.zeros(len(FIT))
    m, v = np.zeros_like(w), np.zeros_like(w)
    for step in range(1, steps + 1):
        grad = l2 * w / len(sets)
        for x, y in sets:
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            answering = p * y
            grad += (p @ x - (answering / answering.sum()) @ x) / len(sets)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= 0.1 * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
        w = np.maximum(w * sd, floor) / sd  # the bounds hold for the unstandardised weights
    return w / sd


def full(w: Any) -> Any:
    """Fitted weights (over FIT) as every signal's final weight, in `SIGNALS` order: rescaled so
    the dense RRF weight is 1, with the `FIXED` priors."""
    out = np.array([FIXED.get(name, 0.0) for name in SIGNALS])
    out[FIT] = w / w[FIT.index(SIGNALS.index("dense"))]
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
    own_margins = [float(m) for m in margins(own, w)]
    print("own margins (dense-RRF units):", [round(m, 3) for m in own_margins])
    for name, value in zip(SIGNALS, w, strict=True):
        print(f"    {name}: float = {round(float(value), 3)}")
    if min(own_margins) <= 0:
        sys.exit("an own question's expected source is not first: do not take this fit "
                 "(raise OWN_WEIGHT, or find the signal that is missing)")


if __name__ == "__main__":
    main()
