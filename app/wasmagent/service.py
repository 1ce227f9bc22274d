"""Assemble the agent from a host's ports: the one place both hosts build the same core.

`build_agent(host, sink)` wires tokenizer, embedder (micro-batched), intent head, knowledge
library, tools, router, pipeline and telemetry, and registers a handler for every request kind.
A host without a model (`host.inference is None`) still gets a working agent: lexical search,
tools and canned replies, with `status` saying the model is missing.

Tenants (`tenancy.py`): `connect(sink, tenant=NAME)` gives an input edge whose every handler
acts in that tenant's namespace: its own knowledge bases, history, conversations and durable
jobs; nothing of another tenant's is visible to it, by listing or by name (`not_found`), and
`data.clear` clears only its own. Knowledge bases named in `shared` are the operator's
(the un-prefixed namespace), readable by the tenant and never changed by it (`forbidden`).
`tenant=None` is the single tenant of a browser or of a server without tokens: the store's
un-prefixed keys, exactly as before tenancy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict
from functools import partial
from typing import Any, NoReturn

from .agent import USER_CANCEL, Admit, Agent, Sink
from .errors import AgentError, ErrorCode
from .inference.embedder import EMBEDDING_DIM, Embedder
from .inference.intent import IntentClassifier
from .knowledge.dump import load_dump
from .knowledge.ingest import ingest
from .knowledge.library import Library
from .llm import Llm
from .pipeline import Pipeline, Route, Router
from .pipeline.llm_worker import LlmWorker
from .pipeline.pipeline import Worker, conversation_turns
from .pipeline.workers import CannedWorker, RetrievalWorker, ToolWorker
from .ports import Host, MemoryStore, Store
from .protocol import (
    Ask,
    DataClear,
    DocumentIn,
    Embed,
    Event,
    HistoryList,
    Ingest,
    JobsCancel,
    JobsGet,
    JobsList,
    JobsWatch,
    KbDelete,
    KbList,
    KbPassage,
    Progress,
    Result,
    ToolsLoad,
)
from .runtime.batcher import Priority
from .runtime.context import Context
from .runtime.watchdog import Stall, Watchdog
from .telemetry import Telemetry
from .tenancy import PrefixStore, Scope, tenant_prefix
from .text.tokenizer import WordPieceTokenizer
from .tools import default_tools, parse_tool_request
from .tools.owner import SiteTools, ToolCall
from .workflow import JobRecord, JobStatus, Run, Workflows

DEFAULT_KB = "default"
WATCH_EVERY_S = 2.0
STALL_GRACE_S = 10.0
"""A stage is stuck once it has had work and no progress for the request deadline plus this:
no single request may legitimately hold it longer."""
INTENT_LABELS = ("question", "tool", "smalltalk", "out_of_scope")


class Service:
    """The assembled agent and the parts a host or test may want to reach."""

    def __init__(self, host: Host, sink: Sink, *, intent_labels: tuple[str, ...] | None = None,
                 telemetry: Telemetry | None = None, llm: Llm | None = None,
                 pool_size: int = 8, max_in_flight: int = 1024,
                 timeout_s: float = 30.0, job_lease_s: float = 10.0,
                 stall_after_s: float | None = None) -> None:
        self.host = host
        # Without a durable store, jobs and knowledge still work for the life of the process.
        self.store: Store = host.store if host.store is not None else MemoryStore()
        self.telemetry = telemetry or Telemetry(clock=host.clock)
        self.tokenizer = WordPieceTokenizer.from_vocab_text(host.vocab) if host.vocab else None
        self.embedder: Embedder | None = None
        intent = None
        if host.inference is not None and self.tokenizer is not None:
            self.embedder = Embedder(host.inference, self.tokenizer, clock=host.clock)
            intent = IntentClassifier(host.inference, intent_labels or INTENT_LABELS)
        self.library = Library(self.store, host.vectors, self.embedder, clock=host.clock)
        self._libraries: dict[str, Library] = {}
        """Each tenant's knowledge bases, made on first use (`library_of`)."""
        self.workflows = Workflows(self.store, host.clock, lease_s=job_lease_s)
        self.workflows.register("ingest", self._ingest_job)
        self.tools = default_tools(clock=host.clock)
        self.llm = llm
        self.site_tools = SiteTools(self.tools)
        router = Router(parse_tool=self._parse_tool, embedder=self.embedder, intent=intent,
                        llm=llm)
        workers: dict[Route, Worker] = {
            Route.RETRIEVE: RetrievalWorker(self.library, DEFAULT_KB),
            Route.TOOL: ToolWorker(self.tools),
            Route.CANNED: CannedWorker(),
        }
        if llm is not None:
            workers[Route.LLM] = LlmWorker(self.library, DEFAULT_KB, llm)
        self.pipeline = Pipeline(router, workers, store=host.store, clock=host.clock,
                                 observe=self._observe, pool_size=pool_size,
                                 max_in_flight=max_in_flight, timeout_s=timeout_s)
        self.watchdog = Watchdog(host.clock, on_change=self._on_stall,
                                 stall_after_s=stall_after_s or timeout_s + STALL_GRACE_S)
        self.pipeline.watch(self.watchdog)
        if self.embedder is not None:
            batcher = self.embedder.batcher
            self.watchdog.watch("embed", backlog=lambda: batcher.pending + batcher.running,
                                progress=lambda: batcher.finished_batches)
        self._watching: asyncio.Task[None] | None = None
        self.agent = self.connect(sink)

    def connect(self, sink: Sink, admit: Admit | None = None, *, tenant: str | None = None,
                shared: Iterable[str] = ()) -> Agent:
        """A new input edge onto this same core, whose events go to `sink` (one per client
        connection on the server; the browser has just one), acting for `tenant` with the
        `shared` knowledge bases readable (see the module docstring). Raises `ValueError`
        for a tenant name that cannot be one (`tenancy.check_tenant`)."""
        scope = self.scope(tenant, shared)
        status = self.status_extra if tenant is None else self._tenant_status
        agent = Agent(self.host, sink, status_extra=status, admit=admit)
        agent.route(Ask, partial(self.pipeline.ask, scope=scope))
        agent.route(Ingest, partial(self._ingest, scope))
        agent.route(Embed, self._embed)
        agent.route(KbList, partial(self._kb_list, scope))
        agent.route(KbDelete, partial(self._kb_delete, scope))
        agent.route(KbPassage, partial(self._kb_passage, scope))
        agent.route(HistoryList, partial(self._history, scope))
        agent.route(DataClear, partial(self._clear, scope))
        agent.route(JobsList, partial(self._jobs_list, scope))
        agent.route(JobsGet, partial(self._jobs_get, scope))
        agent.route(JobsCancel, partial(self._jobs_cancel, scope))
        agent.route(JobsWatch, partial(self._jobs_watch, scope))
        return agent

    def library_of(self, tenant: str | None) -> Library:
        """`tenant`'s knowledge bases (the operator's for None), over its own key prefix."""
        if tenant is None:
            return self.library
        library = self._libraries.get(tenant)
        if library is None:
            store = PrefixStore(self.store, tenant_prefix(tenant))
            library = Library(store, self.host.vectors, self.embedder, clock=self.host.clock)
            self._libraries[tenant] = library
        return library

    def scope(self, tenant: str | None, shared: Iterable[str] = ()) -> Scope:
        """What an edge of `tenant` reaches; `shared` matters only for a tenant (the
        operator's knowledge bases are all its own)."""
        library = self.library_of(tenant)
        history = None if self.host.store is None else library.store
        if tenant is None:
            return Scope(None, library, history)
        return Scope(tenant, library, history, frozenset(shared), self.library)

    def start(self) -> Agent:
        """Start the pipeline, and resume journaled jobs (now, then whenever a lease lapses:
        another process or tab that held one may have died)."""
        self.pipeline.start()
        self.workflows.scan_every(self.workflows.lease_s)
        self._watching = asyncio.get_running_loop().create_task(
            self.watchdog.run(WATCH_EVERY_S), name="watchdog")
        return self.agent

    async def aclose(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            await asyncio.gather(self._watching, return_exceptions=True)
        await self.workflows.aclose()
        await self.pipeline.aclose()
        for library in (self.library, *self._libraries.values()):
            await library.aclose()
        if self.embedder is not None:
            await self.embedder.aclose()

    def _observe(self, stage: str, ms: float, request_id: str) -> None:
        self.telemetry.observe(stage, ms, request_id=request_id)

    def _on_stall(self, stall: Stall, stalled: bool) -> None:
        if stalled:
            self.telemetry.count("stage_stalls", stage=stall.stage)
            self.telemetry.log("stage_stalled", level="error", **stall.to_dict())
        else:
            self.telemetry.log("stage_recovered", stage=stall.stage, backlog=stall.backlog)

    def health(self) -> dict[str, Any]:
        """`ok` unless a stage is stuck with work waiting; the stuck stages, named."""
        stalls = self.watchdog.check()
        return {"ok": not stalls, "stalled": [stall.to_dict() for stall in stalls]}

    def _tenant_status(self) -> dict[str, Any]:
        """`status` for a tenant: without the metrics and recent log lines, which name other
        clients and their requests."""
        extra = self.status_extra()
        del extra["metrics"], extra["log"]
        return extra

    def status_extra(self) -> dict[str, Any]:
        batcher = self.embedder.batcher if self.embedder else None
        return {
            "model": self.embedder is not None,
            "health": self.health(),
            "pipeline": {"in_flight": self.pipeline.in_flight,
                         "pool_in_flight": self.pipeline.pool.in_flight,
                         "pool_queued": self.pipeline.pool.queued,
                         "persist_failures": self.pipeline.persist_failures},
            "batcher": None if batcher is None else {
                "batches": batcher.batches_run, "items": batcher.items_run,
                "mean_batch_size": round(batcher.mean_batch_size, 2),
                "pending": batcher.pending},
            "llm": None if self.llm is None else {"name": self.llm.name,
                                                  "available": self.llm.available(),
                                                  **self.llm.details()},
            "tools": [t.name for t in self.tools],
            "metrics": self.telemetry.snapshot(),
            "log": self.telemetry.recent(),
        }

    async def _ingest_job(self, run: Run, job: dict[str, Any]) -> dict[str, Any]:
        documents = [DocumentIn(**d) for d in job["documents"]]
        report = await ingest(self.library_of(run.record.tenant), job["kb"], documents,
                              step=run.step, progress=run.progress)
        return report.to_dict()

    async def _ingest(self, scope: Scope, request: Ingest, emit: Callable[[Event], None]
                      ) -> None:
        _writable(scope, request.kb)
        job_input = {"kb": request.kb, "documents": [asdict(d) for d in request.documents]}
        title = f"add {len(request.documents)} document(s) to {request.kb}"
        with self.telemetry.timer("ingest", request_id=request.id):
            try:
                job_id = await self.workflows.start("ingest", job_input, title=title,
                                                    tenant=scope.tenant)
            except AgentError as exc:
                if exc.code is not ErrorCode.STORAGE:
                    raise
                await self._ingest_unsaved(scope, request, emit)
            try:
                record = await self._follow(job_id, request.id, emit)
            except asyncio.CancelledError as exc:
                if USER_CANCEL in exc.args:  # not when the client merely went away
                    await asyncio.shield(self.workflows.cancel(job_id))
                raise
            except AgentError as exc:
                if exc.code is not ErrorCode.STORAGE:
                    raise
                await self._ingest_unsaved(scope, request, emit)
        emit(Result(request.id, {**(record.result or {}), "job": job_id}))

    async def _ingest_unsaved(self, scope: Scope, request: Ingest,
                              emit: Callable[[Event], None]) -> NoReturn:
        """The store refused the job (full quota): index in memory for this session, then
        report the storage failure."""

        def progress(done: int, total: int, message: str) -> None:
            emit(Progress(request.id, "ingest", done, total, message))

        error = await scope.library.ingest_unsaved(request.kb, request.documents,
                                                   progress=progress)
        raise error or AgentError(ErrorCode.STORAGE, "the documents could not be saved")

    async def _follow(self, job_id: str, request_id: str, emit: Callable[[Event], None]
                      ) -> JobRecord:
        """Forward a job's progress as `progress` events; its final record, or its error."""
        async for record in self.workflows.watch(job_id):
            p = record.progress
            if p:
                emit(Progress(request_id, record.kind, p.get("done"), p.get("total"),
                              p.get("message")))
        if record.status is JobStatus.DONE:
            return record
        if record.status is JobStatus.CANCELLED:
            raise AgentError(ErrorCode.CANCELLED, f"job {job_id} was cancelled")
        error = record.last_error or {}
        code = ErrorCode(error.get("code", ErrorCode.INTERNAL.value))
        raise AgentError(code, error.get("message", f"job {job_id} failed"))

    async def _job(self, scope: Scope, job_id: str) -> JobRecord:
        """A job of this scope's tenant; another tenant's is `not_found`, as a missing one."""
        record = await self.workflows.get(job_id)
        if record.tenant != scope.tenant:
            raise AgentError(ErrorCode.NOT_FOUND, f"there is no job {job_id!r}")
        return record

    async def _jobs_list(self, scope: Scope, request: JobsList, emit: Callable[[Event], None]
                         ) -> None:
        jobs = await self.workflows.recent(request.limit, tenant=scope.tenant)
        emit(Result(request.id, {"jobs": [job.public() for job in jobs]}))

    async def _jobs_get(self, scope: Scope, request: JobsGet, emit: Callable[[Event], None]
                        ) -> None:
        emit(Result(request.id, (await self._job(scope, request.job)).public()))

    async def _jobs_cancel(self, scope: Scope, request: JobsCancel,
                           emit: Callable[[Event], None]) -> None:
        await self._job(scope, request.job)  # (a job's tenant never changes)
        emit(Result(request.id, (await self.workflows.cancel(request.job)).public()))

    async def _jobs_watch(self, scope: Scope, request: JobsWatch, emit: Callable[[Event], None]
                          ) -> None:
        await self._job(scope, request.job)
        record = await self._follow(request.job, request.id, emit)
        emit(Result(request.id, record.public()))

    async def _embed(self, request: Embed, emit: Callable[[Event], None]) -> None:
        if self.embedder is None:
            raise AgentError(ErrorCode.NOT_READY, "the embedding model is not loaded")
        ctx = Context(request.id, clock=self.host.clock)
        # Bulk work: any client's question goes first (it waits at most for the batch already
        # running), so one client embedding thousands of texts cannot starve the others' asks.
        vectors = await self.embedder.embed(request.texts, ctx=ctx, priority=Priority.BACKGROUND)
        emit(Result(request.id, {"dim": EMBEDDING_DIM,
                                 "vectors": [[round(x, 6) for x in v] for v in vectors]}))

    async def _kb_list(self, scope: Scope, request: KbList, emit: Callable[[Event], None]
                       ) -> None:
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

    async def _kb_delete(self, scope: Scope, request: KbDelete, emit: Callable[[Event], None]
                         ) -> None:
        _writable(scope, request.kb)
        if not await scope.library.delete(request.kb):
            message = f"there is no knowledge base named {request.kb!r}"
            raise AgentError(ErrorCode.NOT_FOUND, message)
        emit(Result(request.id, {"deleted": request.kb}))

    async def _kb_passage(self, scope: Scope, request: KbPassage, emit: Callable[[Event], None]
                          ) -> None:
        chunks = await scope.library_for(request.kb).passage(request.kb, request.source,
                                                             request.anchor)
        if not chunks:
            raise AgentError(ErrorCode.NOT_FOUND, f"no passage {request.source}#{request.anchor}")
        emit(Result(request.id, {"source": request.source, "anchor": request.anchor,
                                 "title": chunks[0].title, "heading": chunks[0].heading,
                                 "texts": [c.text for c in chunks]}))

    async def _history(self, scope: Scope, request: HistoryList, emit: Callable[[Event], None]
                       ) -> None:
        store = _need(scope.history)
        if request.conversation is not None:
            turns = await conversation_turns(store, request.conversation, request.limit)
            emit(Result(request.id, {"items": turns}))
            return
        keys = (await store.keys("history/"))[-request.limit:]
        records = []
        for key in keys:
            raw = await store.get(key)
            if raw is not None:
                records.append(json.loads(raw))
        emit(Result(request.id, {"items": records}))

    async def _clear(self, scope: Scope, request: DataClear, emit: Callable[[Event], None]
                     ) -> None:
        """This scope's knowledge bases and history; shared knowledge bases stay."""
        store = _need(scope.history)
        kbs = await scope.library.clear()
        history = await store.keys("history/")
        await store.commit({}, [*history, *await store.keys("conv/")])
        emit(Result(request.id, {"knowledge_bases": kbs, "history": len(history)}))

    def _parse_tool(self, text: str) -> ToolCall | None:
        # The site owner's rules are more specific to their site than the built-in ones.
        return self.site_tools.match(text) or parse_tool_request(text)

    async def tools_load(self, request: ToolsLoad, emit: Callable[[Event], None]) -> None:
        loaded = await self.site_tools.load(request.code, request.source)
        emit(Result(request.id, {"source": loaded.source,
                                 "tools": [t.name for t in loaded.tools],
                                 "routes": len(loaded.rules)}))

    def _need_store(self) -> Store:
        return _need(self.host.store)

    async def seed(self, name: str, dump: bytes) -> bool:
        """Install a shipped knowledge base unless one of that name already exists."""
        store = self._need_store()
        if await store.get(f"kb/{name}/meta") is not None:
            return False
        await load_dump(store, dump, only=f"kb/{name}/")
        return True


def _need(store: Store | None) -> Store:
    if store is None:
        raise AgentError(ErrorCode.STORAGE, "this host has no storage")
    return store


def _writable(scope: Scope, kb: str) -> None:
    """Refuse a change to a knowledge base the operator shares read-only."""
    if scope.is_shared(kb):
        raise AgentError(ErrorCode.FORBIDDEN, f"the knowledge base {kb!r} is shared by the "
                         "server's operator: it can be read, not changed")


def build_agent(host: Host, sink: Sink, *, llm: Llm | None = None,
                job_lease_s: float = 10.0) -> Service:
    """The full agent on `host`'s ports, with its pipeline started (needs a running loop)."""
    service = Service(host, sink, intent_labels=host.intent_labels, llm=llm,
                      job_lease_s=job_lease_s)
    service.start()
    return service
