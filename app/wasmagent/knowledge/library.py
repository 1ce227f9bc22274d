"""The named knowledge bases of one agent: create by ingesting, load lazily, list, delete.

The store is the truth and other writers may share it (server processes on one database,
browser tabs on one IndexedDB): an open knowledge base checks the stored meta at most every
`refresh_s` seconds before answering and catches up with segments others committed.
Ingestion itself is `knowledge/ingest.py`; this module supplies its steps (`add_batch`,
`stage_index`), which stage writes and apply them to memory only once they are committed.
A library over a `PrefixStore` (a tenant's) stages its writes prefixed: every step commits to
the wrapped store (a durable job's, with its journal; or `direct_step`'s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..errors import AgentError, ErrorCode
from ..inference.embedder import Embedder
from ..ports import Clock, LoopClock, MemoryStore, Store, VectorSearch
from ..protocol import DocumentIn
from ..retrieval.chunking import Chunk, ChunkDeduper, chunk_document
from ..retrieval.extract import Kind, detect_kind, extract_sections
from ..runtime.batcher import Priority
from ..runtime.context import Context
from ..tenancy import PrefixStaging, PrefixStore
from ..workflow import Tx
from .ingest import EMBED_GROUP, IngestReport, Progress, direct_step, ingest
from .kb import KnowledgeBase, Staging

__all__ = ["IngestReport", "Library"]


class Library:
    """Knowledge bases by name, persisted through a `Store`."""

    def __init__(self, store: Store | None, vectors: VectorSearch | None,
                 embedder: Embedder | None, *, clock: Clock | None = None,
                 refresh_s: float = 1.0) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self._steps_store: Store = self.store
        """Where ingestion steps commit: the store under the prefix, if there is one."""
        self._prefix = ""
        if isinstance(self.store, PrefixStore):
            self._steps_store, self._prefix = self.store.inner, self.store.prefix
        self.vectors = vectors
        self.embedder = embedder
        self._clock = clock or LoopClock()
        self._refresh_s = refresh_s
        self._open: dict[str, KnowledgeBase] = {}
        self._checked: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._warming: set[asyncio.Task[None]] = set()
        self._chunked: tuple[DocumentIn, list[Chunk], str | None] | None = None
        self._unsaved: set[str] = set()
        """Knowledge bases the store refused (quota): kept in memory for this session."""

    async def aclose(self) -> None:
        for task in list(self._warming):
            task.cancel()
        await asyncio.gather(*self._warming, return_exceptions=True)

    async def names(self) -> list[str]:
        found = {k.split("/")[1] for k in await self.store.keys("kb/") if k.endswith("/meta")}
        return sorted(found)

    async def get(self, name: str) -> KnowledgeBase:
        """The knowledge base `name`; raises `not_found` if it does not exist."""
        kb = await self.fresh(name)
        if kb is None:
            raise AgentError(ErrorCode.NOT_FOUND, f"there is no knowledge base named {name!r}")
        return kb

    async def fresh(self, name: str, *, now: bool = False) -> KnowledgeBase | None:
        """The knowledge base as stored (checked at most every `refresh_s`, or `now`)."""
        kb = self._open.get(name)
        due = self._checked.get(name, float("-inf")) + self._refresh_s
        if kb is not None and (name in self._unsaved or (not now
                               and self._clock.monotonic() < due)):
            return kb
        async with self._lock(name):
            raw = await self.store.get(f"kb/{name}/meta")
            self._checked[name] = self._clock.monotonic()
            kb = self._open.get(name)
            if kb is not None and raw == kb.stored_meta:
                return kb
            if kb is not None and raw is not None and await kb.catch_up(self.store, raw):
                return kb
            return await self._reload(name, kb)

    async def _reload(self, name: str, stale: KnowledgeBase | None) -> KnowledgeBase | None:
        self._open.pop(name, None)
        if stale is not None and self.vectors is not None:
            await self.vectors.drop(stale.space)
        kb = await KnowledgeBase.load(self.store, name, self.vectors)
        if kb is not None:
            self._open[name] = kb
            self._warm(kb)
        return kb

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
        kb = await self.fresh(name, now=True)
        if kb is None:
            return False
        async with self._lock(name):
            await kb.delete(self.store)
            self._open.pop(name, None)
            self._unsaved.discard(name)
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

    # -- ingestion ---------------------------------------------------------------------------

    async def ingest(self, name: str, documents: Sequence[DocumentIn], *,
                     ctx: Context | None = None, progress: Progress | None = None
                     ) -> IngestReport:
        """Add documents without a journal (CLI, benchmarks); the `ingest` job is durable."""
        work = ingest(self, name, documents, step=direct_step(self._steps_store),
                      progress=progress)
        return await (work if ctx is None else ctx.run(work))

    async def ingest_unsaved(self, name: str, documents: Sequence[DocumentIn], *,
                             progress: Progress | None = None) -> AgentError | None:
        """Add documents even if the store refuses them (a full quota): what cannot be saved
        is kept in memory for this session. Returns the storage error, if there was one."""
        failure: list[AgentError] = []

        def refused(exc: AgentError) -> None:
            self._unsaved.add(name)
            failure.append(exc)

        step = direct_step(self._steps_store, refused=refused, saving=name not in self._unsaved)
        await ingest(self, name, documents, step=step, progress=progress)
        return failure[0] if failure else None

    async def add_batch(self, name: str, documents: Sequence[DocumentIn],
                        cursor: tuple[int, int], tx: Tx) -> dict[str, Any]:
        """One ingestion step: the next new chunks from `cursor`, embedded and staged."""
        kb = await self.fresh(name, now=True) or KnowledgeBase(name, self.vectors)
        doc, offset = cursor
        fresh: list[Chunk] = []
        seen: set[str] = set()
        duplicates = 0
        skipped: list[dict[str, str]] = []
        while doc < len(documents) and len(fresh) < EMBED_GROUP:
            chunks, error = self._chunks(documents[doc])
            if error is not None and offset == 0:
                skipped.append({"source": documents[doc].source, "reason": error})
            take = chunks[offset:offset + EMBED_GROUP - len(fresh)]
            for chunk in take:
                key = ChunkDeduper.key(chunk.text)
                if key in seen or kb.known(chunk.text):
                    duplicates += 1
                else:
                    seen.add(key)
                    fresh.append(chunk)
            offset += len(take)
            if offset >= len(chunks):
                doc, offset = doc + 1, 0
        if fresh:
            await self._stage(kb, fresh, tx)
        return {"next": [doc, offset], "added": len(fresh), "duplicates": duplicates,
                "skipped": skipped}

    async def _stage(self, kb: KnowledgeBase, chunks: list[Chunk], tx: Tx) -> None:
        vectors = None
        if self.embedder is not None:
            rows = await self.embedder.embed([c.search_text for c in chunks],
                                             priority=Priority.BACKGROUND)
            vectors = rows[0][:0]
            for row in rows:
                vectors.extend(row)
        meta = kb.stage_segment(self._staging(tx), chunks, vectors)

        async def apply() -> None:
            current = self._open.setdefault(kb.name, kb)
            if current is kb:  # else it was loaded after this commit and already holds it
                await kb.apply_segment(meta, chunks, vectors)

        tx.on_commit(apply)

    async def stage_index(self, name: str, tx: Tx) -> None:
        """The last ingestion step: save the BM25 index once, not per batch."""
        kb = await self.fresh(name, now=True)
        meta = None if kb is None else kb.stage_lexical(self._staging(tx))
        if kb is None or meta is None:
            return

        async def apply() -> None:
            kb.apply_lexical(meta)

        tx.on_commit(apply)

    def _staging(self, tx: Tx) -> Staging:
        return PrefixStaging(tx, self._prefix) if self._prefix else tx

    def _chunks(self, doc: DocumentIn) -> tuple[list[Chunk], str | None]:
        """A document's chunks (kept for the next step: a long one spans several)."""
        if self._chunked is not None and self._chunked[0] is doc:
            return self._chunked[1], self._chunked[2]
        try:
            kind: Kind = doc.kind or detect_kind(doc.source, doc.text)  # type: ignore[assignment]
            parsed = extract_sections(doc.text, kind, source=doc.source)
            found, error = chunk_document(parsed, source=doc.source), None
        except Exception as exc:  # a malformed document must not stop the batch
            found, error = [], f"{type(exc).__name__}: {exc}"
        self._chunked = (doc, found, error)
        return found, error
