"""The native command line's agent commands: `embed`, `ingest` and `ask`.

They drive the same `Service` the browser runs, on the native host (onnxruntime, SQLite,
numpy). `ask` goes through the wire protocol exactly as a browser or server client would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AgentError
from .protocol import DocumentIn

if TYPE_CHECKING:
    from .service import Service

DEFAULT_KB = "default"

SUFFIXES = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown",
            ".rst": "rst", ".txt": "text", ".text": "text"}
DOCS_PER_BATCH = 50


def _service(store: str | Path, events: list[dict[str, Any]] | None = None) -> Service:
    from .hosts.native import native_host
    from .service import Service

    host = native_host(store)
    sink = (lambda raw: events.append(json.loads(raw))) if events is not None else print
    return Service(host, sink, intent_labels=host.intent_labels)


def _visible(path: Path, base: Path) -> bool:
    # Hidden folders (.git) and build/asset folders (Sphinx's _sources, _static) are not
    # documents; _sources would duplicate every page as reST text.
    return not any(part.startswith((".", "_")) for part in path.relative_to(base).parts[:-1])


def iter_documents(paths: Sequence[Path]) -> Iterator[DocumentIn]:
    """Every supported file under `paths`, with `source` relative to the path given."""
    for root in paths:
        base = root.parent if root.is_file() else root
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and _visible(p, root))
        for path in files:
            kind = SUFFIXES.get(path.suffix.lower())
            if kind is None:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            yield DocumentIn(str(path.relative_to(base)), text, kind)


async def embed(texts: Sequence[str]) -> int:
    service = _service(":memory:")
    try:
        if service.embedder is None:
            print("the embedding model is not available", file=sys.stderr)
            return 1
        vectors = await service.embedder.embed(texts)
        json.dump([{"text": t, "embedding": [round(x, 6) for x in v]}
                   for t, v in zip(texts, vectors, strict=True)], sys.stdout)
        print()
        return 0
    finally:
        await service.aclose()


async def ingest(paths: Sequence[Path], kb_file: Path, kb: str = DEFAULT_KB) -> int:
    service = _service(kb_file)
    service.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    total = {"documents": 0, "chunks_added": 0, "duplicates": 0, "skipped": 0}
    try:
        batch: list[DocumentIn] = []
        for doc in iter_documents(paths):
            batch.append(doc)
            if len(batch) == DOCS_PER_BATCH:
                await _ingest_batch(service, kb, batch, total)
                batch = []
        if batch:
            await _ingest_batch(service, kb, batch, total)
    except AgentError as exc:
        print(f"error: {exc.message} ({exc.code.value})", file=sys.stderr)
        return 1
    finally:
        await service.aclose()
    seconds = loop.time() - started
    rate = total["chunks_added"] / seconds if seconds else 0.0
    print(json.dumps({**total, "kb": kb, "file": str(kb_file), "seconds": round(seconds, 2),
                      "chunks_per_s": round(rate, 1)}))
    return 0


async def _ingest_batch(service: Service, kb: str, batch: list[DocumentIn],
                        total: dict[str, int]) -> None:
    report = await service.library.ingest(kb, batch)
    total["documents"] += report.documents
    total["chunks_added"] += report.chunks_added
    total["duplicates"] += report.duplicates
    total["skipped"] += len(report.skipped)
    for skipped in report.skipped:
        print(f"skipped {skipped['source']}: {skipped['reason']}", file=sys.stderr)
    print(f"{total['documents']} documents, {total['chunks_added']} chunks", file=sys.stderr)


async def export(kb_file: Path, kb: str, out: Path) -> int:
    """Write knowledge base `kb` of a KB file as the dump a browser installs from
    `kb/<name>.kv` (the widget's `data-kb`, or the app's shipped default)."""
    from .hosts.sql import SqliteStore
    from .knowledge.dump import dump_kb

    store = SqliteStore(kb_file)
    try:
        data = await dump_kb(store, kb)
    except AgentError as exc:
        print(f"error: {exc.message} ({exc.code.value})", file=sys.stderr)
        return 1
    finally:
        store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(json.dumps({"kb": kb, "file": str(out), "bytes": len(data)}))
    return 0


async def ask(question: str, kb_file: Path, *, kb: str | None = None, as_json: bool = False,
              top_k: int = 5) -> int:
    events: list[dict[str, Any]] = []
    service = _service(kb_file, events)
    agent = service.start()
    try:
        message: dict[str, Any] = {"v": 1, "type": "ask", "id": "cli", "text": question,
                                   "top_k": top_k}
        if kb:
            message["kb"] = kb
        agent.submit(message)
        await agent.drain()
    finally:
        await service.aclose()
    return _print_answer(events, as_json)


def _print_answer(events: list[dict[str, Any]], as_json: bool) -> int:
    final = events[-1]
    if final["type"] == "error":
        print(f"error: {final['message']} ({final['code']})", file=sys.stderr)
        return 1
    answer = next(e for e in events if e["type"] == "answer")
    if as_json:
        json.dump({"answer": answer["text"], "citations": answer["citations"],
                   "route": answer["route"], "confident": answer["confident"],
                   "timings_ms": answer["timings_ms"]}, sys.stdout, ensure_ascii=False)
        print()
        return 0
    print(answer["text"])
    for n, c in enumerate(answer["citations"], 1):
        anchor = f"#{c['anchor']}" if c["anchor"] else ""
        print(f"  [{n}] {c['source']}{anchor} — {c['title']} (score {c['score']:.3f})")
    return 0
