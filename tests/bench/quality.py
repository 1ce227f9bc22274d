"""Answer quality on a real corpus: Debian's python3.11-doc HTML (~530 pages, ~17k chunks).

Questions: `eval/dev.jsonl` and `eval/test.jsonl` (334 questions in users' words, split in two
halves; tune on dev only — see eval/README.md) and the older 44 of `eval_pydocs.jsonl`
(reported as `legacy`). Every question is asked through the agent's protocol, natively, on the
whole corpus, and scored on what the user sees:

- cited recall: an answering page is among the answer's cited sources;
- MRR: 1 / rank of the first answering page among the distinct cited pages (0 if none);
- confident-but-wrong: the answer says `confident: true` while no cited page answers;
- precision of confident answers: the share of confident answers that cite an answering page;
- retrieval recall@5 / MRR: the same page ranks over the search's top 5 hits, for diagnosis.

The baseline is plain dense retrieval as commonly done, computed in the same run: the same
MiniLM over 200-word windows of each page's text, no headings, no BM25, its top 5 pages taken
as the "cited" sources (it has no notion of confidence).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = Path("/usr/share/doc/python3.11/html")
CACHE = ROOT / ".build" / "bench"
KB = "pydocs"
SPLITS = ("dev", "test", "legacy")


def load(split: str) -> list[dict[str, Any]]:
    path = HERE / "eval_pydocs.jsonl" if split == "legacy" else HERE / "eval" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def questions() -> list[dict[str, Any]]:
    """The legacy 44 (the e2e latency bench asks these)."""
    return load("legacy")


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(CORPUS).parts))


def distinct(sources: Iterable[str]) -> list[str]:
    out: list[str] = []
    for source in sources:
        if source not in out:
            out.append(source)
    return out


def page_ranks(sources: list[str], pages: set[str], depth: int = 5) -> tuple[bool, float]:
    """(an answering page within the first `depth` distinct pages, 1 / rank of the first)."""
    for rank, source in enumerate(distinct(sources), 1):
        if source in pages:
            return rank <= depth, 1.0 / rank
    return False, 0.0


def summarize(rows: list[tuple[bool, float]]) -> dict[str, float]:
    return {"recall_at_5": round(sum(r for r, _ in rows) / len(rows), 3),
            "mrr": round(sum(m for _, m in rows) / len(rows), 3), "questions": len(rows)}


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures for one split from rows {cited: [sources], confident, pages, hits: [sources]}."""
    n = len(rows)
    hits = [page_ranks(r["cited"], set(r["pages"]), depth=len(r["cited"]) or 1) for r in rows]
    right = [ok for ok, _ in hits]
    confident = [r["confident"] for r in rows]
    n_conf = sum(confident)
    wrong_conf = sum(1 for ok, c in zip(right, confident, strict=True) if c and not ok)
    retrieval = summarize([page_ranks(r["hits"], set(r["pages"])) for r in rows])
    return {"questions": n, "cited_recall": round(sum(right) / n, 3),
            "mrr": round(sum(m for _, m in hits) / n, 3),
            "confident_rate": round(n_conf / n, 3),
            "confident_precision": round((n_conf - wrong_conf) / n_conf, 3) if n_conf else None,
            "confident_but_wrong": round(wrong_conf / n, 3),
            "mean_cited_pages": round(sum(len(distinct(r["cited"])) for r in rows) / n, 2),
            "not_retrieval": sum(1 for r in rows if r.get("route", "retrieve") != "retrieve"),
            "retrieval_recall_at_5": retrieval["recall_at_5"], "retrieval_mrr": retrieval["mrr"],
            "by_kind": {kind: [sum(ok for ok, r in zip(right, rows, strict=True)
                                   if r.get("kind") == kind),
                               sum(1 for r in rows if r.get("kind") == kind)]
                        for kind in sorted({r.get("kind", "") for r in rows}) if kind}}


async def ask_all(db: Path, splits: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every question of `splits` asked through the agent (native host), with its answer."""
    from wasmagent.hosts.native import native_host
    from wasmagent.service import Service

    events: list[dict[str, Any]] = []
    host = native_host(db)
    service = Service(host, lambda event: events.append(event.to_wire()),
                      intent_labels=host.intent_labels)
    agent = service.start()
    kb = await service.library.get(KB)
    embedder = service.embedder
    out: dict[str, list[dict[str, Any]]] = {}
    for split in splits:
        rows = out[split] = []
        for n, q in enumerate(load(split)):
            events.clear()
            agent.submit({"v": 1, "type": "ask", "id": f"{split}-{n}", "text": q["q"], "kb": KB})
            await agent.drain()
            answer = next(e for e in reversed(events) if e["type"] == "answer")
            vector = await embedder.embed_one(q["q"]) if embedder is not None else None
            hits = await kb.search(q["q"], vector, 5)
            rows.append({"q": q["q"], "kind": q.get("kind", ""), "pages": q["pages"],
                         "text": answer["text"], "confident": bool(answer.get("confident")),
                         "route": answer.get("route"),
                         "cited": [c["source"] for c in answer.get("citations", [])],
                         "hits": [h.chunk.source for h in hits]})
    await service.aclose()
    return out


def windows(text: str, size: int = 200) -> list[str]:
    words = text.split()
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)] or [""]


async def _window_matrix(embedder: Any, cache: Path, *, skip: bool) -> Any:
    """(vectors, sources) of 200-word windows of every page's text, cached; None if skipped."""
    import numpy as np

    from wasmagent.hosts.cli_commands import iter_documents
    from wasmagent.retrieval.extract import extract_sections
    from wasmagent.runtime.batcher import Priority

    path = cache / "baseline-windows.npz"
    if not path.exists():
        if skip:
            return None
        sources: list[str] = []
        texts: list[str] = []
        for doc in iter_documents([CORPUS]):
            parsed = extract_sections(doc.text, "html", source=doc.source)
            body = " ".join(s.text for s in parsed.sections)
            for window in windows(body):
                sources.append(doc.source)
                texts.append(window)
        vectors = await embedder.embed(texts, priority=Priority.BACKGROUND)
        matrix = np.array([list(v) for v in vectors], dtype=np.float32)
        np.savez(path, matrix=matrix, sources=np.array(sources))
    data = np.load(path)
    return data["matrix"], [str(s) for s in data["sources"]]


async def _baseline_pages(embedder: Any, matrix: Any, sources: list[str], question: str
                          ) -> list[str]:
    import numpy as np

    query = np.array(list(await embedder.embed_one(question)), dtype=np.float32)
    return distinct(sources[i] for i in np.argsort(-(matrix @ query))[:60])[:5]


async def window_baseline(embedder: Any, cache: Path, *, skip: bool) -> dict[str, float] | None:
    """Plain dense retrieval over 200-word windows on the legacy questions (the e2e section)."""
    found = await _window_matrix(embedder, cache, skip=skip)
    if found is None:
        return None
    rows = [page_ranks(await _baseline_pages(embedder, *found, q["q"]), set(q["pages"]))
            for q in questions()]
    return summarize(rows)


async def baseline_splits(embedder: Any, cache: Path, splits: Iterable[str], *, skip: bool
                          ) -> dict[str, dict[str, Any]] | None:
    """The same baseline on every split, scored like the agent's answers (top 5 pages cited)."""
    found = await _window_matrix(embedder, cache, skip=skip)
    if found is None:
        return None
    result: dict[str, dict[str, Any]] = {}
    for split in splits:
        rows = []
        for q in load(split):
            pages = await _baseline_pages(embedder, *found, q["q"])
            rows.append({"pages": q["pages"], "cited": pages, "hits": pages, "confident": False})
        figures = score(rows)
        result[split] = {k: figures[k] for k in ("questions", "cited_recall", "mrr")}
    return result


async def _baseline(db: Path, splits: tuple[str, ...], quick: bool) -> dict[str, Any] | None:
    from wasmagent.hosts.native import native_host
    from wasmagent.inference.embedder import Embedder
    from wasmagent.text.tokenizer import WordPieceTokenizer

    host = native_host(db)
    assert host.inference is not None
    assert host.vocab is not None
    embedder = Embedder(host.inference, WordPieceTokenizer.from_vocab_text(host.vocab))
    try:
        return await baseline_splits(embedder, CACHE, splits, skip=quick)
    finally:
        await embedder.aclose()


async def evaluate(db: Path, splits: tuple[str, ...] = SPLITS, *, quick: bool = False
                   ) -> dict[str, Any]:
    started = time.perf_counter()
    answered = await ask_all(db, splits)
    result: dict[str, Any] = {"splits": {s: score(rows) for s, rows in answered.items()}}
    if "dev" in answered:  # the misses worth reading while tuning; never the test half's
        result["dev_misses"] = [
            {k: r[k] for k in ("q", "kind", "pages", "cited", "confident", "text")}
            for r in answered["dev"] if not set(r["cited"]) & set(r["pages"])]
    baseline = await _baseline(db, splits, quick)
    if baseline is not None:
        result["baseline_dense_200_word_windows"] = baseline
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def run(ctx: Any) -> dict[str, Any]:
    """The bench section. It needs the whole corpus ingested (the e2e section's full-mode
    knowledge base): a quick run reuses it when cached and is skipped otherwise."""
    import e2e

    e2e.ensure_corpus()
    db = e2e.kb_cache(False)
    if not db.exists():
        if ctx.quick:
            return {"skipped": "no whole-corpus knowledge base cached; run a full bench once"}
        CACHE.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, build_native_kb(db)).result()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, evaluate(db, quick=ctx.quick)).result()


async def build_native_kb(db: Path, limit: int | None = None) -> dict[str, Any]:
    """Ingest the corpus into a SQLite KB with the native host (cached between runs)."""
    from wasmagent.hosts.cli_commands import iter_documents
    from wasmagent.hosts.native import native_host
    from wasmagent.inference.embedder import Embedder
    from wasmagent.knowledge.library import Library
    from wasmagent.text.tokenizer import WordPieceTokenizer

    host = native_host(db)
    assert host.inference is not None
    assert host.vocab is not None
    embedder = Embedder(host.inference, WordPieceTokenizer.from_vocab_text(host.vocab))
    library = Library(host.store, host.vectors, embedder)
    started = time.perf_counter()
    docs = list(iter_documents([CORPUS]))
    if limit is not None:
        docs = docs[:: max(1, len(docs) // limit)][:limit]
    chunks = 0
    for i in range(0, len(docs), 50):
        report = await library.ingest(KB, docs[i:i + 50])  # type: ignore[arg-type]
        chunks += report.chunks_added
    seconds = time.perf_counter() - started
    await embedder.aclose()
    return {"documents": len(docs), "chunks": chunks, "seconds": round(seconds, 1),
            "chunks_per_s": round(chunks / seconds, 1)}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


GAP = (
    "Where the remaining gap comes from (the dev-half misses and second-place answers read one "
    "by one on 2026-11-30; the test half is never read):", "",
    "- **Vocabulary the model does not bridge** (most of the questions that cite no answering "
    "page): the answering sentence shares no word with the everyday phrasing, and MiniLM does "
    "not place them close either (the answers sat on the time, collections, math and built-in "
    "functions pages and in the tutorial's introduction).",
    "- **A page whose name shares a word with the question ranks first** (about a dozen "
    "answers whose answering page is second or third): a module named after a word of the "
    "question (zipimport, binascii, numbers, webbrowser, pyexpat) beats the page that explains "
    "the task; a negated name (\"without X\") ranks X's page first.",
    "- **The quoted page is not the best-ranked one**: the search puts the answering page "
    "first, but the sentence that holds most of the question's words is on the second hit, "
    "and the quoted page is cited first. Weighing the hit's rank more gains a little on dev but "
    "brings back the issue's own failure shape (an option that sorts keys quoted for a question "
    "about key functions; tests/unit/test_extractive.py).",
    "- **The answer is one section of a long general page** (built-in types, built-in "
    "functions) for short keyword queries: a short page about one of the words wins.",
    "- **Other languages**: the glossary maps the question's words to English for BM25, but "
    "the English-only embedder cannot rank them.", "",
    "What would close it: a cross-encoder reranker or a stronger embedder (none is available as "
    "ready ONNX from the registries, see issue 20), or a short index-time description of each "
    "page's purpose (a re-ingest). Tuning further on the dev half alone now mostly fits the dev "
    "half: dev gained more than test from the last refit.", "",
)
"""Hand-written: the kinds of failure, by cause, so the figures above say what would move them."""


def render(section: dict[str, Any]) -> list[str]:
    lines = ["## Answer quality on questions nobody tuned for (issue 20)", ""]
    if "skipped" in section:
        return [*lines, f"Skipped: {section['skipped']}.", ""]
    splits = section["splits"]
    base = section.get("baseline_dense_200_word_windows", {})
    lines += [
        "Questions in users' words over the whole python3.11-doc corpus, asked through the "
        "agent natively; scored on the answer's cited sources (what the user sees). "
        "`dev` was used for tuning, `test` never (tests/bench/eval/README.md); `legacy` is the "
        "older set written alongside the code. Baseline: plain dense MiniLM over 200-word "
        "windows, its top 5 pages as the cited sources, computed in this run.", "",
        "| | " + " | ".join(f"{s} ({splits[s]['questions']})" for s in splits) + " | goal (test) |",
        "|---|" + "---|" * (len(splits) + 1)]
    goals = {"cited_recall": "≥ 0.95", "mrr": "≥ 0.85", "confident_but_wrong": "≤ 0.05",
             "confident_precision": "≥ 0.90"}
    for key, label in (("cited_recall", "cited-source recall"), ("mrr", "MRR (cited pages)"),
                       ("confident_but_wrong", "confident but wrong"),
                       ("confident_precision", "confident answers right"),
                       ("confident_rate", "answers marked confident"),
                       ("mean_cited_pages", "distinct pages cited per answer"),
                       ("not_retrieval", "questions the router sent elsewhere (canned/tool)"),
                       ("retrieval_recall_at_5", "search recall@5 (top 5 hits)"),
                       ("retrieval_mrr", "search MRR")):
        cells = [f"{splits[s][key]:.2f}" if key == "mean_cited_pages"
                 else str(splits[s][key]) if key == "not_retrieval" else _pct(splits[s][key])
                 for s in splits]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goals.get(key, '')} |")
    for key, label in (("cited_recall", "baseline: recall@5 pages"), ("mrr", "baseline: MRR")):
        cells = [_pct(base[s][key]) if s in base else "–" for s in splits]
        lines.append(f"| {label} | " + " | ".join(cells) + " | |")
    lines.append("")
    kinds = sorted({k for s in splits.values() for k in s.get("by_kind", {})})
    if kinds:
        lines += ["Cited-source recall by kind of question (answered / asked):", "",
                  "| kind | " + " | ".join(s for s in splits if splits[s].get("by_kind")) + " |",
                  "|---|" + "---|" * sum(1 for s in splits.values() if s.get("by_kind"))]
        for kind in kinds:
            cells = [f"{v[0]}/{v[1]}" if (v := splits[s]["by_kind"].get(kind)) else "–"
                     for s in splits if splits[s].get("by_kind")]
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines.append("")
    misses = section.get("dev_misses", [])
    if misses:
        # (The questions themselves stay in bench-results.json: this file is part of the app's
        # own knowledge base, and quoting them here would make it the page that "answers"
        # them. Test-half misses are not listed at all, so nobody tunes to them.)
        lines += [f"Where it still fails — dev-half examples ({len(misses)} dev questions cite "
                  "no answering page; the questions are in bench-results.json):", ""]
        # Retrieval's own misses first; the router's canned replies have their own row above.
        for miss in sorted(misses, key=lambda m: not m["cited"])[:8]:
            cited = (", ".join(f"`{c}`" for c in miss["cited"][:3])
                     or "nothing (the router gave a canned reply)")
            kind = f"a {miss['kind']} question" if miss.get("kind") else "a question"
            lines.append(f"- {kind} answered by `{miss['pages'][0]}`; cited {cited}"
                         f"{' (marked confident)' if miss['confident'] else ''}")
        lines.append("")
    test = splits.get("test")
    if test and (test["cited_recall"] < 0.95 or test["mrr"] < 0.85):
        lines += list(GAP)
    if test:
        met = (test["cited_recall"] >= 0.95 and test["mrr"] >= 0.85
               and test["confident_but_wrong"] <= 0.05
               and (test["confident_precision"] or 0.0) >= 0.90)
        lines += [f"Goals on the test half: {'met' if met else 'not met'}.", ""]
    return lines
