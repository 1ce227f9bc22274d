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
from array import array
from collections.abc import Sequence
from functools import partial
from typing import Any

from .. import keyspace
from ..errors import AgentError, ErrorCode
from ..inference.embedder import Embedder, Vector
from ..ports import Clock, LoopClock, MemoryStore, Staging, Store, VectorSearch
from ..protocol import DocumentIn
from ..retrieval.chunking import Chunk, ChunkDeduper, chunk_document
from ..retrieval.extract import Kind, detect_kind, extract_sections
from ..runtime.batcher import Priority
from ..runtime.context import Context
from ..tenancy import PrefixStaging, PrefixStore
from ..workflow import Tx
from .ingest import EMBED_GROUP, IngestReport, Progress, direct_step, ingest
from .kb import KnowledgeBase

__all__ = ["IngestReport", "Library"]

CHUNKED_DOCS = 2 * EMBED_GROUP
"""Parsed documents kept: at least the two groups of chunks a step and its look-ahead span."""


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
        self._chunked: dict[int, tuple[DocumentIn, list[Chunk], str | None]] = {}
        self._ahead: dict[str, tuple[list[str], asyncio.Task[list[Vector]]]] = {}
        """Per knowledge base, the next step's texts, already being embedded (`add_batch`)."""
        self._unsaved: set[str] = set()
        """Knowledge bases the store refused (quota): kept in memory for this session."""

    async def aclose(self) -> None:
        for name in list(self._ahead):
            await self.drop_lookahead(name)
        for task in list(self._warming):
            task.cancel()
        await asyncio.gather(*self._warming, return_exceptions=True)

    async def names(self) -> list[str]:
        found = {name for k in await self.store.keys(keyspace.KB)
                 if (name := keyspace.kb_name(k)) is not None}
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
            raw = await self.store.get(keyspace.kb_meta(name))
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
            if kb.outdated and name not in self._unsaved:
                await self._upgrade(kb)
            self._warm(kb)
        return kb

    async def _upgrade(self, kb: KnowledgeBase) -> None:
        """Save a knowledge base loaded from an earlier layout in the current one, so that it
        opens fast from now on. Best effort: another writer that got there first (`conflict`)
        or a full store leave it as it was, readable the slow way."""
        tx = Tx()
        meta = kb.stage_upgrade(tx)
        try:
            await self.store.commit(tx.puts, tx.deletes, tx.expect)
        except AgentError as exc:
            if exc.code not in (ErrorCode.CONFLICT, ErrorCode.STORAGE):
                raise
            return
        kb.apply_lexical(meta)
        kb.outdated = False

    def _warm(self, kb: KnowledgeBase) -> None:
        """Precompute the BM25 impact lists in the background, a slice at a time, so the first
        questions after a load do not pay for them (it matters in Pyodide's slow Python). An
        index loaded packed needs none: a query reads just its own terms' postings, from the
        packed arrays. (Warming a packed index's common terms was tried: its slices interleave
        with every await of the questions asked meanwhile, and in Chromium the first question
        after a load took 1.5 s instead of 0.6.)"""
        if kb.lazily_loaded:
            return

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
                     ctx: Context | None = None, progress: Progress | None = None,
                     index: bool = True) -> IngestReport:
        """Add documents without a journal (CLI, benchmarks); the `ingest` job is durable.
        Without `index` the BM25 index is not saved at the end (a caller adding documents in
        many calls saves it once with `save_index`; until then opening re-indexes the rest)."""
        work = ingest(self, name, documents, step=direct_step(self._steps_store),
                      progress=progress, index=index, clock=self._clock)
        return await (work if ctx is None else ctx.run(work))

    async def save_index(self, name: str) -> None:
        """Save the BM25 index of `name` if it is behind its segments (one commit)."""
        await direct_step(self._steps_store)("index", partial(self.stage_index, name))

    async def ingest_unsaved(self, name: str, documents: Sequence[DocumentIn], *,
                             progress: Progress | None = None) -> AgentError | None:
        """Add documents even if the store refuses them (a full quota): what cannot be saved
        is kept in memory for this session. Returns the storage error, if there was one."""
        failure: list[AgentError] = []

        def refused(exc: AgentError) -> None:
            self._unsaved.add(name)
            failure.append(exc)

        step = direct_step(self._steps_store, refused=refused, saving=name not in self._unsaved)
        await ingest(self, name, documents, step=step, progress=progress, clock=self._clock)
        return failure[0] if failure else None

    async def add_batch(self, name: str, documents: Sequence[DocumentIn],
                        cursor: tuple[int, int], tx: Tx) -> dict[str, Any]:
        """One ingestion step: the next new chunks from `cursor`, embedded and staged.

        Before waiting for its own vectors, the step hands the following step's texts to the
        embedder too (`_look_ahead`): the model then works through this step's commit and the
        next step's document parsing instead of idling, and its batches fill up."""
        kb = await self.fresh(name, now=True) or KnowledgeBase(name, self.vectors)
        fresh, following, result = self._take(kb, documents, cursor)
        if fresh:
            ahead = self._look_ahead(kb, documents, following)
            await self._stage(kb, fresh, tx, ahead)
        return result

    def _take(self, kb: KnowledgeBase, documents: Sequence[DocumentIn],
              cursor: tuple[int, int], *, peek: bool = False
              ) -> tuple[list[Chunk], tuple[int, int], dict[str, Any]]:
        """The next group of new chunks from `cursor`, the cursor after it and the step's
        result. With `peek`, documents that cannot be read are not reported."""
        doc, offset = cursor
        fresh: list[Chunk] = []
        seen: set[str] = set()
        duplicates = 0
        skipped: list[dict[str, str]] = []
        while doc < len(documents) and len(fresh) < EMBED_GROUP:
            chunks, error = self._chunks(documents[doc])
            if error is not None and offset == 0 and not peek:
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
        return fresh, (doc, offset), {"next": [doc, offset], "added": len(fresh),
                                      "duplicates": duplicates, "skipped": skipped}

    def _look_ahead(self, kb: KnowledgeBase, documents: Sequence[DocumentIn],
                    cursor: tuple[int, int]) -> tuple[list[str], asyncio.Task[list[Vector]]] | None:
        """Start embedding the step after this one; returns what was started for this one."""
        ahead = self._ahead.pop(kb.name, None)
        if (self.embedder is None or self.embedder.model.state == "failed"
                or cursor[0] >= len(documents)):
            return ahead
        texts = [c.search_text for c in self._take(kb, documents, cursor, peek=True)[0]]
        if texts:
            work = self.embedder.embed(texts, priority=Priority.BACKGROUND)
            self._ahead[kb.name] = texts, asyncio.get_running_loop().create_task(work)
        return ahead

    async def drop_lookahead(self, name: str) -> None:
        """Cancel embedding work started for a step that will not run (ingestion ended)."""
        self._chunked.clear()
        ahead = self._ahead.pop(name, None)
        if ahead is not None and not ahead[1].done():
            ahead[1].cancel()
            await asyncio.gather(ahead[1], return_exceptions=True)
        elif ahead is not None and not ahead[1].cancelled():
            ahead[1].exception()  # retrieved, so an error of unused work is not logged as lost

    async def _embed(self, texts: list[str],
                     ahead: tuple[list[str], asyncio.Task[list[Vector]]] | None) -> list[Vector]:
        """Vectors for `texts`, taken from the work started ahead where it covers them."""
        assert self.embedder is not None
        known: dict[str, Vector] = {}
        if ahead is not None:
            try:
                known = dict(zip(ahead[0], await ahead[1], strict=True))
            except AgentError:
                known = {}  # embedded again below, where a real failure surfaces in order
        missing = [t for t in texts if t not in known]
        if missing:
            known.update(zip(missing, await self.embedder.embed(
                missing, priority=Priority.BACKGROUND), strict=True))
        return [known[t] for t in texts]

    async def _stage(self, kb: KnowledgeBase, chunks: list[Chunk], tx: Tx,
                     ahead: tuple[list[str], asyncio.Task[list[Vector]]] | None = None) -> None:
        vectors = None
        # A model still loading is waited for: chunks saved without vectors would leave the
        # knowledge base keyword-only for good. One that failed for good leaves it so.
        if self.embedder is not None and await self.embedder.usable():
            rows = await self._embed([c.search_text for c in chunks], ahead)
            vectors = array("f")
            for row in rows:
                vectors.extend(row)
        elif ahead is not None:
            await asyncio.gather(ahead[1], return_exceptions=True)  # its not_ready, retrieved
        meta = kb.stage_segment(self._staging(tx), chunks, vectors)

        async def apply() -> None:
            current = self._open.setdefault(kb.name, kb)
            if current is kb:  # else it was loaded after this commit and already holds it
                await kb.apply_segment(meta, chunks, vectors)

        tx.on_commit(apply)

    def consumed(self, documents: Sequence[DocumentIn], cursor: tuple[int, int]) -> int:
        """Characters of `documents` before `cursor` (a document's chunks count evenly)."""
        doc, offset = cursor
        done = sum(len(d.text) for d in documents[:doc])
        if offset and doc < len(documents):
            chunks = self._chunks(documents[doc])[0]
            done += len(documents[doc].text) * offset // max(1, len(chunks))
        return done

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
        """A document's chunks, kept for the next steps: a long document spans several, and
        looking ahead parses the documents the next step will take."""
        cached = self._chunked.get(id(doc))
        if cached is not None and cached[0] is doc:
            return cached[1], cached[2]
        try:
            kind: Kind = doc.kind or detect_kind(doc.source, doc.text)  # type: ignore[assignment]
            parsed = extract_sections(doc.text, kind, source=doc.source)
            found, error = chunk_document(parsed, source=doc.source), None
        except Exception as exc:  # a malformed document must not stop the batch
            found, error = [], f"{type(exc).__name__}: {exc}"
        if len(self._chunked) >= CHUNKED_DOCS:
            del self._chunked[next(iter(self._chunked))]
        self._chunked[id(doc)] = (doc, found, error)
        return found, error
