"""`kb.list`, `kb.delete`, `kb.passage` and `embed`: the knowledge bases and the model itself."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import AgentError, ErrorCode
from ..inference.embedder import EMBEDDING_DIM, Embedder
from ..ports import Clock
from ..protocol import Embed, Event, KbDelete, KbList, KbPassage, Result
from ..runtime.batcher import Priority
from ..runtime.context import Context
from ..tenancy import Scope

DEFAULT_KB = "default"
Emit = Callable[[Event], None]


def writable(scope: Scope, kb: str) -> None:
    """Refuse a change to a knowledge base the operator shares read-only."""
    if scope.is_shared(kb):
        raise AgentError(ErrorCode.FORBIDDEN, f"the knowledge base {kb!r} is shared by the "
                         "server's operator: it can be read, not changed")


async def kb_list(scope: Scope, request: KbList, emit: Emit) -> None:
    """The scope's knowledge bases, then the shared ones that exist (`shared: true`)."""
    details = []
    for name in await scope.library.names():
        if scope.is_shared(name):
            continue  # for a tenant, that name means the shared one
        kb = await scope.library.get(name)
        details.append({"name": name, "chunks": len(kb), "sources": len(kb.sources)})
    for name in sorted(scope.shared if scope.shared_library is not None else ()):
        found = await scope.library_for(name).fresh(name)
        if found is not None:
            details.append({"name": name, "chunks": len(found),
                            "sources": len(found.sources), "shared": True})
    emit(Result(request.id, {"kbs": details, "default": DEFAULT_KB}))


async def kb_delete(scope: Scope, request: KbDelete, emit: Emit) -> None:
    writable(scope, request.kb)
    if not await scope.library.delete(request.kb):
        raise AgentError(ErrorCode.NOT_FOUND, f"there is no knowledge base named {request.kb!r}")
    emit(Result(request.id, {"deleted": request.kb}))


async def kb_passage(scope: Scope, request: KbPassage, emit: Emit) -> None:
    chunks = await scope.library_for(request.kb).passage(request.kb, request.source,
                                                         request.anchor)
    if not chunks:
        raise AgentError(ErrorCode.NOT_FOUND, f"no passage {request.source}#{request.anchor}")
    emit(Result(request.id, {"source": request.source, "anchor": request.anchor,
                             "title": chunks[0].title, "heading": chunks[0].heading,
                             "texts": [c.text for c in chunks]}))


class Embedding:
    """`embed`: the sentence model's vectors for the caller's texts."""

    def __init__(self, embedder: Embedder | None, clock: Clock) -> None:
        self._embedder = embedder
        self._clock = clock

    async def embed(self, request: Embed, emit: Emit) -> None:
        if self._embedder is None:
            raise AgentError(ErrorCode.NOT_READY, "the embedding model is not loaded")
        ctx = Context(request.id, clock=self._clock)
        # Bulk work: any client's question goes first (it waits at most for the batch already
        # running), so one client embedding thousands of texts cannot starve the others' asks.
        vectors = await self._embedder.embed(request.texts, ctx=ctx,
                                             priority=Priority.BACKGROUND)
        emit(Result(request.id, {"dim": EMBEDDING_DIM,
                                 "vectors": [[round(x, 6) for x in v] for v in vectors]}))
