"""The durable agent loop: model turns and tool results journaled; a crash at any commit
resumes the run without redoing completed calls, and never runs a non-idempotent call twice.

A "crash" is what a SIGKILL or a page reload leaves (as in `test_workflow.py`): the store as it
was at the last commit, none of the process's memory. Each test drops every in-memory object
and builds a new engine (a new owner) on the same store. Plain test functions, no fixtures:
the same file runs in Pyodide.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from tests.support.clock import ManualClock
from tests.support.models import ChatModel
from wasmagent.errors import AgentError, ErrorCode
from wasmagent.llm.resilience import RetryPolicy
from wasmagent.pipeline.durable_loop import KIND, Asked, DurableLoops
from wasmagent.pipeline.tool_loop import INTERRUPTED, ToolLoop
from wasmagent.ports import Host, MemoryStore, ToolCallRequest
from wasmagent.protocol import PassageIn, ToolsLoad
from wasmagent.runtime.context import Context
from wasmagent.service import Service
from wasmagent.tools import ToolRegistry
from wasmagent.workflow import JobRecord, JobStatus, Workflows

PASSAGES = [PassageIn("shop/orders.md", "Orders", "", "Orders ship within two days.")]


class Crash(BaseException):
    """The process died here (not an Exception: nothing in the core may catch it)."""


class CrashingStore(MemoryStore):
    """Dies on the `crash_at`-th commit, before or after applying it; keeps what each commit
    put (`written`)."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0
        self.crash_at: int | None = None
        self.after_write = False
        self.written: list[dict[str, bytes]] = []

    def job_id(self) -> str:
        """The id of the first job started on this store."""
        meta = next(k for puts in self.written for k in puts if k.endswith("/meta"))
        return meta.removeprefix("wf/job/").removesuffix("/meta")

    def steps(self) -> list[str]:
        """The names of the journal steps ever committed, in order."""
        return [json.loads(v)["name"] for puts in self.written for k, v in puts.items()
                if "/step/" in k]

    async def commit(self, puts: Any, deletes: Any = (), expect: Any = None) -> None:
        self.written.append(dict(puts))
        self.commits += 1
        if self.commits == self.crash_at and not self.after_write:
            raise Crash
        await super().commit(puts, deletes, expect)
        if self.commits == self.crash_at:
            raise Crash


class Shop:
    """The tools, with what they did: `stock` is idempotent (a lookup), `charge` is not."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {"stock": 0, "charge": 0}
        self.gate: asyncio.Event | None = None
        self.charging = asyncio.Event()
        self.tools = ToolRegistry()

        @self.tools.tool
        def stock(item: str) -> str:
            """How many of an item are in stock."""
            self.runs["stock"] += 1
            return f"{item}: 3 in stock"

        @self.tools.tool(idempotent=False)
        async def charge(cents: int) -> str:
            """Charge the customer's card."""
            self.runs["charge"] += 1
            self.charging.set()
            if self.gate is not None:
                await self.gate.wait()
            return f"charged {cents} cents"


class Clerk(ChatModel):
    """A model with no memory of its own, as a resumed run meets it: it asks for both tools
    until it has their results, then answers with what they said."""

    name = "clerk"

    def __init__(self) -> None:
        self.turns = 0
        self.told: list[str] = []

    async def chat(self, messages: Sequence[Mapping[str, Any]],
                   tools: Sequence[Mapping[str, Any]], ctx: Context
                   ) -> AsyncIterator[str | ToolCallRequest]:
        self.turns += 1
        results = [str(m["content"]) for m in messages if m["role"] == "tool"]
        await asyncio.sleep(0)
        if not results:
            yield "Checking. "
            yield ToolCallRequest("s1", "stock", json.dumps({"item": "kettle"}))
            yield ToolCallRequest("c1", "charge", json.dumps({"cents": 4200}))
            return
        self.told = results
        yield "Done: " + " | ".join(results)


class Engine(Workflows):
    """Keeps the task of every run it starts, so a test can see how the crashed one ended."""

    def __init__(self, store: MemoryStore, clock: ManualClock) -> None:
        super().__init__(store, clock, lease_s=5.0,
                         retry=RetryPolicy(attempts=3, base_s=0.001, cap_s=0.001))
        self.tasks: list[asyncio.Task[None]] = []
        self.spawned = asyncio.Event()

    def _spawn(self, run: Any) -> None:
        super()._spawn(run)
        self.tasks.append(self._local[run.id].task)
        self.spawned.set()

    async def crashed(self) -> None:
        """Wait for the first run to die of its crash (awaited before it ends: Pyodide's loop
        reports a task that ends in a BaseException nobody was waiting for)."""
        await self.spawned.wait()
        with pytest.raises(Crash):
            await self.tasks[0]


def _engine(store: MemoryStore, clock: ManualClock) -> Engine:
    return Engine(store, clock)


def _loops(engine: Workflows, model: Clerk, shop: Shop, clock: ManualClock) -> DurableLoops:
    return DurableLoops(ToolLoop(model, shop.tools, clock), engine, lambda *a: (), clock=clock,
                        timeout_s=60.0)


def _asked(conversation: str | None = "conv-1") -> Asked:
    return Asked("r1", "Is the kettle in stock? Then buy it.", PASSAGES, [0.5], [],
                 conversation)


async def _finished(engine: Workflows, job_id: str) -> JobRecord:
    async with asyncio.timeout(60):  # a safety net: the runs here take milliseconds
        async for record in engine.watch(job_id, poll_s=0.01):
            last = record
        return last


async def _history(store: MemoryStore) -> list[dict[str, Any]]:
    return [json.loads(store.data[k]) for k in await store.keys("history/")]


async def test_a_live_run_streams_its_steps_journals_them_and_saves_the_turn_once() -> None:
    store, clock, shop, model = CrashingStore(), ManualClock(), Shop(), Clerk()
    engine = _engine(store, clock)
    events: list[dict[str, Any]] = []
    shown: list[str] = []
    outcome = await _loops(engine, model, shop, clock).run(
        _asked(), Context("r1"), lambda e: events.append(e.to_wire()), shown=shown)
    assert outcome.finished
    assert outcome.text == "".join(shown) == "".join(
        e["text"] for e in events if e["type"] == "delta")
    assert outcome.text.startswith("Checking. Done: kettle: 3 in stock | charged 4200 cents")
    assert [e["type"] for e in events].count("tool_result") == 2
    assert shop.runs == {"stock": 1, "charge": 1}
    assert json.loads(store.written[0][f"wf/job/{store.job_id()}/meta"])["kind"] == KIND
    assert store.steps() == [
        "turn 1", "start c1", "call s1", "call c1", "turn 2", "save the turn"]
    # delivered and saved: the job left the journal before its request returned
    assert await store.keys("wf/") == []
    assert await engine.recent() == []
    [turn] = await _history(store)
    assert turn["answer"] == outcome.text
    assert turn["conversation"] == "conv-1"
    assert await store.keys("conv/conv-1/") != []
    assert store.commits == 8  # the commits the crash test below dies at, one by one
    await engine.aclose()


class Talker(Clerk):
    """Answers at once, calling no tool: what most questions get."""

    async def chat(self, messages: Sequence[Mapping[str, Any]],
                   tools: Sequence[Mapping[str, Any]], ctx: Context
                   ) -> AsyncIterator[str | ToolCallRequest]:
        self.turns += 1
        yield "Orders ship within two days [1]."


async def test_an_answer_that_calls_no_tool_costs_the_store_nothing() -> None:
    # A job per answer would be 4 store commits on every answer, tools or not.
    store, clock, shop = CrashingStore(), ManualClock(), Shop()
    engine = _engine(store, clock)
    shown: list[str] = []
    outcome = await _loops(engine, Talker(), shop, clock).run(
        _asked(), Context("r1"), lambda e: None, shown=shown)
    assert outcome.text == "Orders ship within two days [1]." == "".join(shown)
    assert outcome.steps == 1
    assert not outcome.saved, "the pipeline saves this turn, as any other answer"
    assert store.commits == 0
    await engine.aclose()


async def test_a_crash_at_any_commit_resumes_without_repeating_a_completed_or_unsafe_call(
        ) -> None:
    # Commit 1 starts the job; 2 records turn 1; 3 that charge started (before both calls of
    # the turn run, together); 4 the stock result; 5 charge's; 6 turn 2; 7 the saved turn;
    # 8 the job's end. The process dies just before a commit (nothing of it lands) or just
    # after (durable, but nobody learned it).
    for after_write in (False, True):
        for crash_at in range(2, 9):
            await _crash_and_resume(crash_at, after_write)


async def _crash_and_resume(crash_at: int, after_write: bool) -> None:
    where = f"crash at commit {crash_at}, {'after' if after_write else 'before'} writing"
    store, clock, shop = CrashingStore(), ManualClock(), Shop()
    store.crash_at, store.after_write = crash_at, after_write
    first = _engine(store, clock)
    loops = _loops(first, Clerk(), shop, clock)
    live = asyncio.ensure_future(loops.run(_asked(), Context("r1"), lambda e: None, shown=[]))
    answered, crashed = await asyncio.gather(live, first.crashed(), return_exceptions=True)
    assert crashed is None, where
    if crash_at < 8:  # the request following the run learns that it failed
        assert isinstance(answered, AgentError), where
        assert answered.code is ErrorCode.INTERNAL, where
    else:  # answered and saved: only the job's end was not recorded
        assert not isinstance(answered, BaseException), where
    job_id = store.job_id()
    await first.aclose()  # what a dead process leaves: no memory, the lease still held
    before = dict(shop.runs)

    store.crash_at = None
    clock.now += 10  # past the dead owner's lease
    second = _engine(store, clock)
    model = Clerk()
    _loops(second, model, shop, clock)
    if crash_at == 8 and after_write:
        # its request had the answer, and the job left the journal: nothing to resume
        assert await second.resume() == [], where
        assert await store.keys("wf/") == [], where
        assert not isinstance(answered, BaseException)
        answer = answered.text
        calls = [{"name": c.call.name, "ok": c.ok, "text": c.text} for c in answered.calls]
    else:
        assert await second.resume() == [job_id], where
        record = await _finished(second, job_id)
        assert record.status is JobStatus.DONE, where
        assert record.result is not None
        assert record.result["resumed"], where
        answer, calls = record.result["answer"], record.result["calls"]

    # the non-idempotent call ran at most once, whatever happened
    assert shop.runs["charge"] <= 1, where
    # a call whose result was recorded never ran again
    stock_recorded = crash_at > 4 or (crash_at == 4 and after_write)
    if stock_recorded:
        assert shop.runs["stock"] == 1, where
    assert shop.runs["stock"] <= 2, where
    # a charge that started in the dead run and left no result is reported, not redone
    interrupted = ((crash_at == 3 and after_write) or crash_at == 4
                   or (crash_at == 5 and not after_write))
    charge = next(c for c in calls if c["name"] == "charge")
    assert charge["ok"] is not interrupted, where
    if interrupted:
        assert shop.runs["charge"] == before["charge"], where
        assert charge["text"].startswith("interrupted: charge was started"), where
        assert "interrupted: charge" in answer, where
        assert any(t.startswith("interrupted: charge") for t in model.told), where
    else:
        assert shop.runs["charge"] == 1, where
        assert "charged 4200 cents" in answer, where
    # the model is not asked again for a turn it had already answered
    if crash_at > 2 or after_write:
        assert model.turns <= 1, where
    # the final answer is in the job and, exactly once, in the conversation
    assert answer.startswith("Checking. Done: kettle: 3 in stock | "), where
    turns = await _history(store)
    assert [t["answer"] for t in turns] == [answer], where
    assert await store.keys("wf/open/") == [], where
    await second.aclose()


async def _dies_live(store: CrashingStore, clock: ManualClock, shop: Shop, commit: int, *,
                     after_write: bool = False) -> None:
    """A live run whose process dies at `commit` (its request gets the error), then the dead
    owner's lease lapses: what the next process finds."""
    store.crash_at, store.after_write = commit, after_write
    first = _engine(store, clock)
    live = asyncio.ensure_future(_loops(first, Clerk(), shop, clock).run(
        _asked(), Context("r1"), lambda e: None, shown=[]))
    answered, crashed = await asyncio.gather(live, first.crashed(), return_exceptions=True)
    assert isinstance(answered, AgentError)
    assert crashed is None
    await first.aclose()
    store.crash_at = None
    clock.now += 10


async def test_an_interrupted_non_idempotent_call_is_told_to_the_model_as_interrupted() -> None:
    store, clock, shop = CrashingStore(), ManualClock(), Shop()
    await _dies_live(store, clock, shop, 5)  # charge ran, then death recording its result
    second = _engine(store, clock)
    model = Clerk()
    _loops(second, model, shop, clock)
    [job_id] = await second.resume()
    record = await _finished(second, job_id)
    assert shop.runs["charge"] == 1
    assert model.told[1] == INTERRUPTED.format(name="charge")
    assert record.result is not None
    assert record.result["resumed"]
    assert record.progress["message"].startswith("charge: interrupted: charge was started")
    await second.aclose()


async def test_a_resumed_run_walks_the_journal_even_if_the_tool_is_not_registered_yet(
        ) -> None:
    # A page reload resumes runs before the site owner's tools file is loaded again.
    store, clock, shop = CrashingStore(), ManualClock(), Shop()
    await _dies_live(store, clock, shop, 3, after_write=True)  # charge started, then death
    second = _engine(store, clock)
    bare = Shop()
    bare.tools.remove("charge")
    _loops(second, Clerk(), bare, clock)
    [job_id] = await second.resume()
    record = await _finished(second, job_id)
    assert record.status is JobStatus.DONE
    assert record.result is not None
    assert [c["ok"] for c in record.result["calls"]] == [True, False]
    assert record.result["calls"][1]["text"] == INTERRUPTED.format(name="charge")
    assert shop.runs["charge"] == bare.runs["charge"] == 0
    await second.aclose()


async def test_cancelling_the_request_cancels_the_run_and_nothing_resumes_it() -> None:
    store, clock, shop = MemoryStore(), ManualClock(), Shop()
    shop.gate = asyncio.Event()  # charge never returns
    engine = _engine(store, clock)
    ctx = Context("r1")
    live = asyncio.ensure_future(_loops(engine, Clerk(), shop, clock).run(
        _asked(), ctx, lambda e: None, shown=[]))
    await asyncio.wait_for(shop.charging.wait(), 60)
    ctx.cancel("the user pressed stop")
    with pytest.raises(AgentError) as info:
        await live
    assert info.value.code is ErrorCode.CANCELLED
    assert await store.keys("wf/") == []  # cancelled with its request, and forgotten
    await engine.aclose()
    clock.now += 10
    again = _engine(store, clock)
    _loops(again, Clerk(), shop, clock)
    assert await again.resume() == []
    assert shop.runs == {"stock": 1, "charge": 1}
    assert await _history(store) == []
    await again.aclose()


class Flaky(Clerk):
    """Fails its first turn: before saying anything, or (`midway`) after some text."""

    def __init__(self, *, midway: bool = False) -> None:
        super().__init__()
        self.midway = midway

    async def chat(self, messages: Sequence[Mapping[str, Any]],
                   tools: Sequence[Mapping[str, Any]], ctx: Context
                   ) -> AsyncIterator[str | ToolCallRequest]:
        if self.turns == 0:
            self.turns += 1
            if self.midway:
                yield "Let me "
            raise AgentError(ErrorCode.UPSTREAM_UNAVAILABLE, "the link is not up yet")
        async for part in super().chat(messages, tools, ctx):
            yield part


async def test_a_live_run_reports_a_model_failure_at_once_a_resumed_one_retries() -> None:
    store, clock, shop = CrashingStore(), ManualClock(), Shop()
    engine = _engine(store, clock)
    for midway in (False, True):
        model, shown = Flaky(midway=midway), []
        with pytest.raises(AgentError) as failed:
            await _loops(engine, model, shop, clock).run(
                _asked(), Context("r1"), lambda e: None, shown=shown)
        # as without a journal: the request's fallback or typed error, without delay
        assert failed.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
        assert model.turns == 1
        assert shown == (["Let me "] if midway else [])
        assert await store.keys("wf/") == []  # its request reported it: nothing to keep
    await engine.aclose()

    # a run resumed before the model's link is up: asked again, with backoff
    store, clock = CrashingStore(), ManualClock()
    await _dies_live(store, clock, shop, 2)  # recording turn 1 (the job's input holds it)
    second = _engine(store, clock)
    model = Flaky()
    _loops(second, model, shop, clock)
    [job_id] = await second.resume()
    record = await _finished(second, job_id)
    assert record.status is JobStatus.DONE
    assert record.attempts == 2  # the resumption, and the failed turn
    assert model.turns == 2  # not the first turn again: only the second, failing once
    await second.aclose()


def _wire(events: list[dict[str, Any]]) -> Any:
    return lambda event: events.append(event.to_wire())


ASK = {"v": 1, "type": "ask", "id": "a", "text": "Is the kettle in stock? Then buy it.",
       "mode": "llm", "conversation": "conv-1",
       "passages": [{"source": "shop/orders.md", "title": "Orders", "anchor": "",
                     "text": "Orders ship within two days."}]}


async def test_through_the_service_a_reloaded_run_lands_in_history_and_in_its_job() -> None:
    store, clock, shop = CrashingStore(), ManualClock(), Shop()
    events: list[dict[str, Any]] = []
    first = Service(Host("test", clock, store=store), _wire(events), llm=Clerk())
    for tool in shop.tools:
        first.tools.add(tool)
    agent = first.start()
    assert agent is not None
    assert first.status_extra()["tools_not_idempotent"] == ["charge"]
    store.crash_at = store.commits + 6  # the model's last turn: both calls are recorded
    agent.submit(ASK)
    await asyncio.wait_for(shop.charging.wait(), 60)  # the run is under way
    [job_id] = first.workflows.running()
    [ended] = await asyncio.gather(first.workflows._local[job_id].task,
                                   return_exceptions=True)
    assert isinstance(ended, Crash)
    await agent.drain()
    assert [e["type"] for e in events if e["id"] == "a"][-1] == "error"
    assert await store.keys("wf/open/") == [f"wf/open/{job_id}"]
    await first.aclose()  # the page reloads

    store.crash_at = None
    clock.now += 60
    events.clear()
    second = Service(Host("test", clock, store=store), _wire(events), llm=Clerk())
    for tool in shop.tools:
        second.tools.add(tool)
    # what `start` does first (and then whenever a lease lapses): nobody is asking any more
    assert await second.workflows.resume() == [job_id]
    agent = second.start()
    assert agent is not None
    agent.submit({"v": 1, "type": "jobs.watch", "id": "w", "job": job_id})
    await agent.drain()
    watched = [e for e in events if e["id"] == "w"]
    result = watched[-2]["data"]
    assert result["status"] == "done"
    assert result["kind"] == "answer"
    assert result["result"]["resumed"]
    answer = result["result"]["answer"]
    assert answer == "Checking. Done: kettle: 3 in stock | charged 4200 cents"
    assert shop.runs == {"stock": 1, "charge": 1}
    agent.submit({"v": 1, "type": "history.list", "id": "h", "conversation": "conv-1"})
    await agent.drain()
    [turn] = next(e for e in events if e["id"] == "h")["data"]["items"]
    assert turn["answer"] == answer
    assert turn["route"] == "llm"
    assert turn["citations"][0]["source"] == "shop/orders.md"

    # a live question on the same service: streamed, answered, saved once
    agent.submit({**ASK, "id": "b"})
    await agent.drain()
    kinds = [e["type"] for e in events if e["id"] == "b"]
    assert kinds[-2:] == ["answer", "done"]
    assert kinds.count("tool_result") == 2
    agent.submit({"v": 1, "type": "history.list", "id": "h2", "conversation": "conv-1"})
    await agent.drain()
    items = next(e for e in events if e["id"] == "h2")["data"]["items"]
    assert [t["id"] for t in items] == ["a", "b"]
    await second.aclose()


async def test_without_a_durable_store_the_loop_is_not_journaled() -> None:
    clock, shop = ManualClock(), Shop()
    events: list[dict[str, Any]] = []
    service = Service(Host("test", clock), _wire(events), llm=Clerk())
    for tool in shop.tools:
        service.tools.add(tool)
    agent = service.start()
    assert agent is not None
    agent.submit({k: v for k, v in ASK.items() if k != "conversation"})
    await agent.drain()
    assert [e["type"] for e in events if e["id"] == "a"][-2:] == ["answer", "done"]
    assert await service.workflows.recent() == []
    await service.aclose()


def test_idempotent_is_declared_at_registration() -> None:
    shop = Shop()
    assert shop.tools.not_idempotent() == ["charge"]
    assert [t.idempotent for t in shop.tools] == [True, False]
    assert all("idempotent" not in d for d in shop.tools.describe())  # not for the model
    with pytest.raises(TypeError):
        shop.tools.tool(lambda: None, name="odd", idempotent="no")  # type: ignore[arg-type]


async def test_a_site_owner_declares_a_tool_not_idempotent_and_tools_load_lists_it() -> None:
    events: list[dict[str, Any]] = []
    service = Service(Host("test", ManualClock()), _wire(events))
    agent = service.start()
    assert agent is not None
    agent.route(ToolsLoad, service.tools_load)  # as the browser host does
    code = ("from wasmagent.tools.owner import tool\n\n"
            "@tool(idempotent=False)\n"
            "def place_order(sku: str) -> str:\n"
            "    '''Order one item.'''\n"
            "    return 'ordered ' + sku\n")
    agent.submit({"v": 1, "type": "tools.load", "id": "t", "source": "/tools.py", "code": code})
    await agent.drain()
    loaded = next(e for e in events if e["id"] == "t")["data"]
    assert loaded["not_idempotent"] == ["place_order"]
    placed = service.tools.get("place_order")
    assert placed is not None
    assert not placed.idempotent
    await service.aclose()


async def test_a_tenants_resumed_run_saves_its_turn_in_that_tenants_history() -> None:
    store, clock, shop = CrashingStore(), ManualClock(), Shop()
    events: list[dict[str, Any]] = []
    first = Service(Host("test", clock, store=store), llm=Clerk())
    for tool in shop.tools:
        first.tools.add(tool)
    first.start()
    acme = first.connect(_wire(events), tenant="acme")
    store.crash_at = store.commits + 7  # dies saving the turn
    acme.submit(ASK)
    await asyncio.wait_for(shop.charging.wait(), 60)
    [job_id] = first.workflows.running()
    [ended] = await asyncio.gather(first.workflows._local[job_id].task,
                                   return_exceptions=True)
    assert isinstance(ended, Crash)
    await acme.drain()
    await first.aclose()

    store.crash_at = None
    clock.now += 60
    second = Service(Host("test", clock, store=store), llm=Clerk())
    for tool in shop.tools:
        second.tools.add(tool)
    assert await second.workflows.resume() == [job_id]
    second.start()
    acme = second.connect(_wire(events), tenant="acme")
    acme.submit({"v": 1, "type": "jobs.watch", "id": "w", "job": job_id})
    await acme.drain()
    assert [e for e in events if e["id"] == "w"][-2]["data"]["status"] == "done"
    acme.submit({"v": 1, "type": "history.list", "id": "h", "conversation": "conv-1"})
    other = second.connect(_wire(events), tenant="other")
    other.submit({"v": 1, "type": "history.list", "id": "o", "conversation": "conv-1"})
    await acme.drain()
    await other.drain()
    [turn] = next(e for e in events if e["id"] == "h")["data"]["items"]
    assert turn["answer"].endswith("charged 4200 cents")
    assert next(e for e in events if e["id"] == "o")["data"]["items"] == []
    assert await store.keys("history/") == []  # not in the operator's namespace
    await second.aclose()


class Timed(Clerk):
    """Notes the deadline each turn sees: a model that knows it (the browser's local one stops
    a second early) can fail in time for the request's fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.left: list[float | None] = []

    async def chat(self, messages: Sequence[Mapping[str, Any]],
                   tools: Sequence[Mapping[str, Any]], ctx: Context
                   ) -> AsyncIterator[str | ToolCallRequest]:
        self.left.append(ctx.remaining())
        async for part in super().chat(messages, tools, ctx):
            yield part


async def test_a_live_runs_model_sees_the_requests_deadline() -> None:
    store, clock, shop, model = MemoryStore(), ManualClock(), Shop(), Timed()
    engine = _engine(store, clock)
    outcome = await _loops(engine, model, shop, clock).run(
        _asked(), Context("r1", timeout=30.0, clock=clock), lambda e: None, shown=[])
    assert outcome.finished
    assert len(model.left) == 2
    assert all(left is not None and 29.0 < left <= 30.0 for left in model.left), model.left
    await engine.aclose()
