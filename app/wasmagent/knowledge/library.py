"""The named knowledge bases of one agent: create by ingesting, load lazily, list, delete.

Ingestion contract (`Library.ingest`):
- documents are extracted and chunked in Python (pure functions), embedded in batches at
  background priority (questions asked meanwhile go first), added to the knowledge base, then
  committed to the store as one segment per batch of chunks;
- `progress(done, total, message)` is called after each document and each embedded batch;
- the context cancels it between steps; what was committed before stays, and is consistent;
- a document that cannot be read is skipped and reported in the result, never fatal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import AgentError, ErrorCode
from ..inference.embedder import Embedder
from ..ports import Store, VectorSearch
from ..protocol import DocumentIn
from ..retrieval.chunking import Chunk, ChunkDeduper, chunk_document
from ..retrieval.extract import Kind, detect_kind, extract_sections
from ..runtime.batcher import Priority
from ..runtime.context import Context
from .kb import KnowledgeBase

Progress = Callable[[int, int, str], None]
EMBED_GROUP = 64


@dataclass(slots=True)
class IngestReport:
    """What an ingestion did, for the caller's `result` event and logs."""

    kb: str
    documents: int = 0
    chunks_added: int = 0
    duplicates: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kb": self.kb, "documents": self.documents, "chunks_added": self.chunks_added,
                "duplicates": self.duplicates, "skipped": self.skipped}


class Library:
    """Knowledge bases by name, persisted through a `Store`."""

    def __init__(self, store: Store | None, vectors: VectorSearch | None,
                 embedder: Embedder | None) -> None:
        self.store = store
        self.vectors = vectors
        self.embedder = embedder
        self._open: dict[str, KnowledgeBase] = {}
        self._dedupers: dict[str, ChunkDeduper] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._warming: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        for task in list(self._warming):
            task.cancel()
        await asyncio.gather(*self._warming, return_exceptions=True)

    async def names(self) -> list[str]:
        found = set(self._open)
        if self.store is not None:
            found |= {k.split("/")[1] for k in await self.store.keys("kb/") if k.endswith("/meta")}
        return sorted(found)

    async def get(self, name: str) -> KnowledgeBase:
        """The knowledge base `name`; raises `not_found` if it does not exist."""
        kb = await self._load(name)
        if kb is None:
            raise AgentError(ErrorCode.NOT_FOUND, f"there is no knowledge base named {name!r}")
        return kb

    async def _load(self, name: str) -> KnowledgeBase | None:
        if name not in self._open and self.store is not None:
            kb = await KnowledgeBase.load(self.store, name, self.vectors)
            if kb is not None:
                self._open[name] = kb
                self._warm(kb)
        return self._open.get(name)

    def _warm(self, kb: KnowledgeBase) -> None:
        """Precompute the BM25 impact lists in the background, a slice at a time, so the first
        questions after a load do not pay for them (it matters in Pyodide's slow Python)."""

        async def run() -> None:
            for _ in kb.lexical.warm():
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(run())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def delete(self, name: str) -> bool:
        kb = await self._load(name)
        if kb is None:
            return False
        async with self._lock(name):
            if self.store is not None:
                await kb.delete(self.store)
            elif self.vectors is not None:
                await self.vectors.drop(kb.space)
            self._open.pop(name, None)
            self._dedupers.pop(name, None)
        return True

    async def clear(self) -> int:
        """Delete every knowledge base; returns how many there were."""
        names = await self.names()
        for name in names:
            await self.delete(name)
        return len(names)

    async def passage(self, name: str, source: str, anchor: str) -> list[Chunk]:
        """Every chunk of `source` under heading `anchor`, in document order."""
        kb = await self.get(name)
        return [c for c in kb.chunks if c.source == source and c.anchor == anchor]

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _deduper(self, kb: KnowledgeBase) -> ChunkDeduper:
        if kb.name not in self._dedupers:
            deduper = ChunkDeduper()
            for chunk in kb.chunks:
                deduper.seen(chunk)
            self._dedupers[kb.name] = deduper
        return self._dedupers[kb.name]

    async def ingest(self, name: str, documents: Sequence[DocumentIn], *,
                     ctx: Context | None = None, progress: Progress | None = None
                     ) -> IngestReport:
        """Add documents to `name` (created if missing); see the module docstring."""
        report = IngestReport(name)
        notify = progress or (lambda done, total, message: None)
        async with self._lock(name):
            kb = await self._load(name) or KnowledgeBase(name, self.vectors)
            self._open[name] = kb
            deduper = await self._deduper(kb)
            pending: list[Chunk] = []
            for n, doc in enumerate(documents, 1):
                if ctx is not None:
                    ctx.raise_if_done()
                fresh = self._chunk(doc, deduper, report)
                pending.extend(fresh)
                notify(n, len(documents), f"read {doc.source}")
                while len(pending) >= EMBED_GROUP:
                    group, pending = pending[:EMBED_GROUP], pending[EMBED_GROUP:]
                    await self._add(kb, group, ctx, report)
                    notify(n, len(documents), f"indexed {report.chunks_added} passages")
                await asyncio.sleep(0)  # let questions through between documents
            if pending:
                await self._add(kb, pending, ctx, report)
                notify(len(documents), len(documents), f"indexed {report.chunks_added} passages")
            if self.store is not None:
                await kb.save_lexical(self.store)
            report.documents = len(documents)
        return report

    def _chunk(self, doc: DocumentIn, deduper: ChunkDeduper, report: IngestReport) -> list[Chunk]:
        try:
            kind: Kind = doc.kind or detect_kind(doc.source, doc.text)  # type: ignore[assignment]
            parsed = extract_sections(doc.text, kind, source=doc.source)
            chunks = chunk_document(parsed, source=doc.source)
        except Exception as exc:  # a malformed document must not stop the batch
            report.skipped.append({"source": doc.source, "reason": f"{type(exc).__name__}: {exc}"})
            return []
        fresh = [c for c in chunks if not deduper.seen(c)]
        report.duplicates += len(chunks) - len(fresh)
        return fresh

    async def _add(self, kb: KnowledgeBase, chunks: list[Chunk], ctx: Context | None,
                   report: IngestReport) -> None:
        vectors = None
        if self.embedder is not None:
            rows = await self.embedder.embed([c.search_text for c in chunks],
                                             priority=Priority.BACKGROUND, ctx=ctx)
            vectors = rows[0][:0]
            for row in rows:
                vectors.extend(row)
        await kb.add(chunks, vectors)
        if self.store is not None:
            await kb.commit(self.store, chunks, vectors)
        report.chunks_added += len(chunks)
