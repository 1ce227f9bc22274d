"""The composition root: the one place every host (browser, CLI, server) builds the same core.

`Service(host)` wires tokenizer, embedder (micro-batched), intent head, knowledge library,
durable jobs, tools, router, pipeline, watchdog and telemetry from the host's ports;
`connect(sink)` makes an input edge (`Agent`) whose requests are routed to the pipeline (`ask`)
and to the handlers of each request family (`handlers/`); `start()` starts the stages.
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
from collections.abc import Iterable
from functools import partial
from typing import Any

from . import keyspace
from .agent import Agent
from .errors import AgentError, ErrorCode
from .handlers import history, knowledge
from .handlers.jobs import Jobs
from .handlers.knowledge import DEFAULT_KB, Embedding
from .handlers.llm import LlmRelay
from .handlers.tools import ToolLoading
from .inference.embedder import Embedder
from .inference.intent import IntentClassifier
from .knowledge.library import Library
from .pipeline import Pipeline, Route, Router
from .pipeline.pipeline import Worker
from .pipeline.tool_match import ToolMatch
from .pipeline.workers import CannedWorker, RetrievalWorker, ToolWorker
from .ports import Admit, Host, Llm, MemoryStore, Sink, Store, ToolLlm
from .protocol import (
    Ask,
    DataClear,
    Embed,
    HistoryList,
    Ingest,
    JobsCancel,
    JobsGet,
    JobsList,
    JobsWatch,
    KbDelete,
    KbList,
    KbPassage,
    LlmChat,
)
from .runtime.watchdog import Stall, Watchdog
from .telemetry import Telemetry
from .tenancy import PrefixStore, Scope, tenant_prefix
from .text.tokenizer import WordPieceTokenizer
from .tools import default_tools, parse_tool_request, parse_tool_requests
from .tools.owner import SiteTools, ToolCall
from .workflow import Workflows

WATCH_EVERY_S = 2.0
STALL_GRACE_S = 10.0
"""A stage is stuck once it has had work and no progress for the request deadline plus this:
no single request may legitimately hold it longer."""
INTENT_LABELS = ("question", "tool", "smalltalk", "out_of_scope")


class Service:
    """The assembled agent and the parts a host or test may want to reach."""

    def __init__(self, host: Host, sink: Sink | None = None, *,
                 intent_labels: tuple[str, ...] | None = None,
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
            self.embedder = Embedder(host.inference, self.tokenizer, clock=host.clock,
                                     model=host.model)
            intent = IntentClassifier(host.inference,
                                      intent_labels or host.intent_labels or INTENT_LABELS)
        self.library = Library(self.store, host.vectors, self.embedder, clock=host.clock)
        self._libraries: dict[str, Library] = {}
        """Each tenant's knowledge bases, made on first use (`library_of`)."""
        self.workflows = Workflows(self.store, host.clock, lease_s=job_lease_s,
                                   log=self.telemetry.log)
        self.jobs = Jobs(self.workflows, self.telemetry, self.library_of)
        self.tools = default_tools(clock=host.clock)
        self.llm = llm
        self.site_tools = SiteTools(self.tools)
        self.tools_load = ToolLoading(self.site_tools).load
        self._embedding = Embedding(self.embedder, host.clock)
        # A model that can call tools is offered to clients that run the loop themselves (the
        # browser, with its own tools); a model reached through a link is not relayed again.
        self._relay = (LlmRelay(llm, host.clock, timeout_s) if isinstance(llm, ToolLlm)
                       and not _is_remote(llm) else None)
        router = Router(parse_tool=self._parse_tool, embedder=self.embedder, intent=intent,
                        llm=llm, log=self.telemetry.log,
                        tool_match=ToolMatch(self.embedder, self.site_tools.tools)
                        if self.embedder is not None else None)
        workers: dict[Route, Worker] = {
            Route.RETRIEVE: RetrievalWorker(self.library, DEFAULT_KB),
            Route.TOOL: ToolWorker(self.tools),
            Route.CANNED: CannedWorker(),
        }
        if llm is not None:
            from .pipeline.llm_worker import LlmWorker

            # With a durable store the agent loop is a journaled job: it resumes after a
            # crash or a reload (`pipeline/durable_loop.py`); without one it runs as it is.
            workers[Route.LLM] = LlmWorker(
                self.library, DEFAULT_KB, llm, tools=self.tools, clock=host.clock,
                workflows=self.workflows if host.store is not None else None,
                timeout_s=timeout_s, log=self.telemetry.log)
        self.pipeline = Pipeline(router, workers, store=host.store, clock=host.clock,
                                 observe=self._observe, pool_size=pool_size,
                                 max_in_flight=max_in_flight, timeout_s=timeout_s,
                                 log=self.telemetry.log)
        self.watchdog = Watchdog(host.clock, on_change=self._on_stall,
                                 stall_after_s=stall_after_s or timeout_s + STALL_GRACE_S)
        self.pipeline.watch(self.watchdog)
        if self.embedder is not None:
            batcher = self.embedder.batcher
            self.watchdog.watch("embed", backlog=lambda: batcher.pending + batcher.running,
                                progress=lambda: batcher.finished_batches)
        self._watching: asyncio.Task[None] | None = None
        self.agent: Agent | None = None if sink is None else self.connect(sink)
        """The input edge of a host with one client (the browser, the CLI); the server makes
        one per connection with `connect`."""

    def connect(self, sink: Sink, admit: Admit | None = None, *, tenant: str | None = None,
                shared: Iterable[str] = ()) -> Agent:
        """A new input edge onto this same core, whose events go to `sink` (one per client
        connection on the server; the browser has just one), acting for `tenant` with the
        `shared` knowledge bases readable (see the module docstring). Raises `ValueError`
        for a tenant name that cannot be one (`tenancy.check_tenant`)."""
        scope = self.scope(tenant, shared)
        status = self.status_extra if tenant is None else self._tenant_status
        agent = Agent(self.host, sink, status_extra=status, admit=admit, log=self.telemetry.log)
        agent.route(Ask, partial(self.pipeline.ask, scope=scope))
        agent.route(Embed, self._embedding.embed)
        agent.route(KbList, partial(knowledge.kb_list, scope))
        agent.route(KbDelete, partial(knowledge.kb_delete, scope))
        agent.route(KbPassage, partial(knowledge.kb_passage, scope))
        agent.route(Ingest, partial(self.jobs.ingest, scope))
        agent.route(JobsList, partial(self.jobs.list, scope))
        agent.route(JobsGet, partial(self.jobs.get, scope))
        agent.route(JobsCancel, partial(self.jobs.cancel, scope))
        agent.route(JobsWatch, partial(self.jobs.watch, scope))
        agent.route(HistoryList, partial(history.history_list, scope))
        agent.route(DataClear, partial(history.data_clear, scope))
        agent.route(LlmChat, self._relay.chat if self._relay is not None else _no_llm)
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

    def start(self) -> Agent | None:
        """Start the pipeline, and resume journaled jobs (now, then whenever a lease lapses:
        another process or tab that held one may have died); returns `agent`."""
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
        model = None if self.embedder is None else self.embedder.model
        return {
            # True once questions are embedded (hybrid search); `model_state` says why not.
            "model": model is not None and model.ready,
            "model_state": "failed" if model is None else model.state,
            **({"model_error": model.error} if model is not None and model.error else {}),
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
            "tools_not_idempotent": self.tools.not_idempotent(),
            "metrics": self.telemetry.snapshot(),
            "log": self.telemetry.recent(),
        }

    def _parse_tool(self, text: str) -> list[ToolCall]:
        # The site owner's rules are more specific to their site than the built-in ones.
        return parse_tool_requests(
            text, lambda part: self.site_tools.match(part) or parse_tool_request(part))

    async def seed(self, name: str, dump: bytes) -> bool:
        """Install a shipped knowledge base unless one of that name already exists."""
        from .knowledge.dump import load_dump

        store = history.need_store(self.host.store)
        if await store.get(keyspace.kb_meta(name)) is not None:
            return False
        await load_dump(store, dump, only=keyspace.kb_prefix(name))
        return True


def _is_remote(llm: Llm) -> bool:
    # Imported here: a host without an LLM (a one-shot `ask`) never loads the LLM client code.
    from .llm.remote import RemoteLlm

    return isinstance(llm, RemoteLlm)


async def _no_llm(request: LlmChat, emit: object) -> None:
    raise AgentError(ErrorCode.NOT_READY, "no LLM that can call tools is configured here")
