"""Retrieval quality on a real corpus: Debian's python3.11-doc HTML (~530 pages, ~17k chunks).

For each question in eval_pydocs.jsonl (written by us: a question a user would ask and the
page(s) that answer it), we rank chunks and look at the pages of the top results:
recall@5 (an answering page among the top 5 distinct pages) and MRR (1 / rank of the first
answering page). The baseline is plain dense retrieval as commonly done: the same MiniLM over
200-word windows of each page's text, no headings, no BM25.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = Path("/usr/share/doc/python3.11/html")
CACHE = ROOT / ".build" / "bench"


def questions() -> list[dict[str, Any]]:
    lines = (HERE / "eval_pydocs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(CORPUS).parts))


def page_ranks(sources: list[str], pages: set[str]) -> tuple[bool, float]:
    """(answer page within the first 5 distinct pages, reciprocal rank of the first one)."""
    distinct: list[str] = []
    for source in sources:
        if source not in distinct:
            distinct.append(source)
    for rank, source in enumerate(distinct, 1):
        if source in pages:
            return rank <= 5, 1.0 / rank
    return False, 0.0


def summarize(rows: list[tuple[bool, float]]) -> dict[str, float]:
    return {"recall_at_5": round(sum(r for r, _ in rows) / len(rows), 3),
            "mrr": round(sum(m for _, m in rows) / len(rows), 3), "questions": len(rows)}


async def build_native_kb(db: Path, limit: int | None = None) -> dict[str, Any]:
    """Ingest the corpus into a SQLite KB with the native host (cached between runs)."""
    from wasmagent.cli_commands import iter_documents
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
        report = await library.ingest("pydocs", docs[i:i + 50])  # type: ignore[arg-type]
        chunks += report.chunks_added
    seconds = time.perf_counter() - started
    await embedder.aclose()
    return {"documents": len(docs), "chunks": chunks, "seconds": round(seconds, 1),
            "chunks_per_s": round(chunks / seconds, 1)}


def windows(text: str, size: int = 200) -> list[str]:
    words = text.split()
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)] or [""]


async def window_baseline(embedder: Any, cache: Path, *, skip: bool) -> dict[str, float] | None:
    """Plain dense retrieval over 200-word windows of each page's text (cached vectors)."""
    import numpy as np

    from wasmagent.cli_commands import iter_documents
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
    matrix, sources_arr = data["matrix"], data["sources"]
    rows = []
    for q in questions():
        query = np.array(list(await embedder.embed_one(q["q"])), dtype=np.float32)
        top = np.argsort(-(matrix @ query))[:40]
        rows.append(page_ranks([str(sources_arr[i]) for i in top], set(q["pages"])))
    return summarize(rows)
