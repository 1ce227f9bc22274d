"""Refit the ranking weights (`wasmagent.retrieval.rank.Weights`) on the tuning questions.

    .venv/bin/python tests/bench/eval/fit_rank.py [--cv]

Needs the whole-corpus knowledge base the quality bench builds (.build/bench/pydocs.sqlite).
Uses the dev half and the legacy questions only — never the test half (README.md). For each
question it takes the same first-stage candidates a search does (BM25 and dense, 20 each), their
signals (`rank.signals`), and fits a listwise softmax model: maximise the probability the
answering pages' chunks get among the candidates, L2-regularised on standardised signals. The
weights are printed rescaled so the dense RRF weight is 1, ready to paste into `Weights`.
`--cv` first prints four-fold cross-validated search MRR on dev (legacy always in the fit).

Release notes on questions about changes (`changelog_asked`) keep weight 0 as a prior: the
tuning sets have too few such questions to learn it from.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[2] / "app")]

import numpy as np  # noqa: E402
import quality  # noqa: E402

from wasmagent.retrieval.rank import SIGNALS, WEIGHTS, signals  # noqa: E402

DEPTH = 20
L2 = 3.0
PRIOR = ("changelog_asked",)
FIT = [i for i, name in enumerate(SIGNALS) if name not in PRIOR]

Example = tuple[list[str], list[str], Any]  # (candidate sources, answering pages, signals)


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
            found = signals(q["q"], lexical, dense, kb.chunks, kb.lexical.idf, WEIGHTS.rrf_k)
            rows.append(([kb.chunks[d].source for d in found], q["pages"],
                         np.array(list(found.values()), dtype=float)[:, FIT]))
    await service.aclose()
    return out


def fit(data: list[Example], l2: float = L2, steps: int = 300) -> Any:
    """Weights over FIT (unstandardised), by Adam on the mean listwise log-loss."""
    stacked = np.vstack([x for _, _, x in data])
    mu, sd = stacked.mean(0), stacked.std(0) + 1e-9
    sets = [((x - mu) / sd, np.array([s in pages for s in sources], dtype=float))
            for sources, pages, x in data if set(sources) & set(pages)]
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
    return w / sd


def mrr(data: list[Example], w: Any) -> float:
    total = 0.0
    for sources, pages, x in data:
        ranked = quality.distinct(sources[i] for i in np.argsort(-(x @ w)))
        total += quality.page_ranks(ranked, set(pages))[1]
    return total / len(data)


def main() -> None:
    data = asyncio.run(examples(quality.CACHE / "pydocs.sqlite", ("dev", "legacy")))
    dev, legacy = data["dev"], data["legacy"]
    if "--cv" in sys.argv:
        scores = []
        for seed in range(4):
            order = np.random.default_rng(seed).permutation(len(dev))
            for fold in np.array_split(order, 4):
                held = set(fold.tolist())
                train = [dev[i] for i in order if i not in held] + legacy
                scores.append(mrr([dev[i] for i in fold], fit(train)))
        print(f"4-fold cross-validated search MRR on dev: {np.mean(scores):.3f}")
    w = fit(dev + legacy)
    scale = w[FIT.index(SIGNALS.index("dense"))]
    fitted = dict(zip((SIGNALS[i] for i in FIT), w / scale, strict=True))
    for name in SIGNALS:
        print(f"    {name}: float = {round(float(fitted.get(name, 0.0)), 3)}")


if __name__ == "__main__":
    main()
