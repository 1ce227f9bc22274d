"""The ask pipeline: routing, streaming, error isolation, cancellation and async persistence."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.support.aio import collect, of
from wasmagent import ports
from wasmagent.agent import Agent
from wasmagent.errors import AgentError, ErrorCode
from wasmagent.pipeline import Job, Pipeline, Reply, Route, Router
from wasmagent.pipeline.pipeline import conversation_turns, split_stream
from wasmagent.pipeline.router import rule_route
from wasmagent.ports import Host, LoopClock
from wasmagent.protocol import Ask, Source


class MemoryStore(ports.MemoryStore):
    """The core's in-memory Store; `fail` makes every write raise like a full quota."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail

    async def put(self, key: str, value: bytes) -> None:
        if self.fail:
            raise AgentError(ErrorCode.STORAGE, "quota exceeded")
        await super().put(key, value)

    async def commit(self, puts: Any, deletes: Any = (), expect: Any = None) -> None:
        if self.fail:
            raise AgentError(ErrorCode.STORAGE, "quota exceeded")
        await super().commit(puts, deletes, expect)


def _parse_tool(text: str) -> list[tuple[str, dict[str, Any]]]:
    return [("calculator", {"expression": text[5:]})] if text.startswith("calc ") else []


async def _retrieve(job: Job) -> Reply:
    if "explode" in job.request.text:
        raise ValueError("bug in a worker")
    if "refuse" in job.request.text:
        raise AgentError(ErrorCode.NOT_FOUND, "no such knowledge base")
    if "slow" in job.request.text:
        await asyncio.sleep(30)
    ref = Source("docs/a.md", "A", "intro", 0.9, "The answer is here.")
    return Reply("The answer is here. It is grounded in the docs.", Route.RETRIEVE, (ref,))


async def _tool(job: Job) -> Reply:
    [(_, args)] = job.tool_calls
    return Reply(f"= {args['expression']}", Route.TOOL)


async def _canned(job: Job) -> Reply:
    assert job.canned is not None
    return Reply(job.canned, Route.CANNED)


def _setup(
    store: MemoryStore | None = None, **kw: Any
) -> tuple[Agent, Pipeline, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    agent = Agent(Host(name="test", clock=LoopClock()), collect(events))
    workers = {Route.RETRIEVE: _retrieve, Route.TOOL: _tool, Route.CANNED: _canned}
    pipeline = Pipeline(Router(parse_tool=_parse_tool), workers, store=store, **kw)
    pipeline.start()
    agent.route(Ask, pipeline.ask)
    return agent, pipeline, events


def _ask(agent: Agent, rid: str, text: str) -> None:
    agent.submit(json.dumps({"v": 1, "type": "ask", "id": rid, "text": text}))


async def test_a_question_streams_deltas_citations_then_the_answer() -> None:
    store = MemoryStore()
    agent, pipeline, events = _setup(store)
    _ask(agent, "q1", "where is the answer?")
    await agent.drain()
    mine = of(events, "q1")
    kinds = [e["type"] for e in mine]
    assert kinds[-2:] == ["answer", "done"]
    assert "citation" in kinds
    deltas = "".join(e["text"] for e in mine if e["type"] == "delta")
    answer = next(e for e in mine if e["type"] == "answer")
    assert deltas == answer["text"]
    assert answer["route"] == "retrieve"
    assert answer["citations"][0]["source"] == "docs/a.md"
    assert set(answer["timings_ms"]) >= {"route", "work", "total"}
    for _ in range(100):
        if store.data:
            break
        await asyncio.sleep(0.001)
    (saved,) = store.data.values()
    assert json.loads(saved)["question"] == "where is the answer?"
    await pipeline.aclose()


async def test_the_router_picks_tool_canned_or_retrieval() -> None:
    agent, pipeline, events = _setup()
    _ask(agent, "t", "calc 2+2")
    _ask(agent, "g", "hello!")
    _ask(agent, "r", "how do I open a file?")
    await agent.drain()
    routes = {rid: of(events, rid)[-2]["route"] for rid in ("t", "g", "r")}
    assert routes == {"t": "tool", "g": "canned", "r": "retrieve"}
    await pipeline.aclose()


def test_rules_only_catch_bare_greetings() -> None:
    for text in ["hi", "Hello!", "hey there", "thanks", "thank you so much!", "bye"]:
        assert rule_route(text) is not None, text
    for text in ["hi, how do I sort a list?", "hello world program in python",
                 "thanks to whom was python created", "what is bye in french"]:
        assert rule_route(text) is None, text


async def test_failures_stay_with_their_own_question() -> None:
    agent, pipeline, events = _setup()
    _ask(agent, "bad", "explode please")
    _ask(agent, "missing", "refuse this")
    _ask(agent, "good", "a normal question")
    await agent.drain()
    assert of(events, "bad")[-1]["code"] == "internal"
    assert of(events, "missing")[-1]["code"] == "not_found"
    assert of(events, "good")[-1]["type"] == "done"
    await pipeline.aclose()


async def test_cancel_frees_the_work_and_leaks_no_task() -> None:
    agent, pipeline, events = _setup()
    before = len(asyncio.all_tasks())
    _ask(agent, "slow", "slow question")
    for _ in range(50):
        await asyncio.sleep(0.001)
        if pipeline.pool.in_flight:
            break
    assert pipeline.pool.in_flight == 1
    agent.submit('{"v": 1, "type": "cancel", "id": "c", "target": "slow"}')
    await agent.drain()
    for _ in range(50):
        await asyncio.sleep(0.001)
    assert of(events, "slow")[-1]["code"] == "cancelled"
    assert pipeline.pool.in_flight == 0
    assert pipeline.in_flight == 0
    assert len(asyncio.all_tasks()) <= before
    await pipeline.aclose()


async def test_deadline_ends_a_stuck_question() -> None:
    agent, pipeline, events = _setup(timeout_s=0.05)
    _ask(agent, "slow", "slow question")
    await agent.drain()
    assert of(events, "slow")[-1]["code"] == "deadline_exceeded"
    assert pipeline.pool.in_flight == 0
    await pipeline.aclose()


async def test_a_thousand_concurrent_questions_half_cancelled() -> None:
    agent, pipeline, events = _setup(pool_size=8)
    baseline = len(asyncio.all_tasks())
    for i in range(1000):
        _ask(agent, f"q{i}", "slow one" if i % 2 else "fast one")
    await asyncio.sleep(0.01)
    for i in range(1, 1000, 2):
        agent.submit(json.dumps({"v": 1, "type": "cancel", "id": f"c{i}", "target": f"q{i}"}))
    await agent.drain()
    for _ in range(100):
        if pipeline.pool.in_flight == 0 and pipeline.pool.queued == 0:
            break
        await asyncio.sleep(0.001)
    terminal = {rid: of(events, rid)[-1] for rid in (f"q{i}" for i in range(1000))}
    assert sum(e["type"] == "done" for e in terminal.values()) == 500
    assert sum(e.get("code") == "cancelled" for e in terminal.values()) == 500
    assert pipeline.in_flight == 0
    assert len(asyncio.all_tasks()) <= baseline
    await pipeline.aclose()


async def test_overload_is_refused_with_a_clear_code() -> None:
    agent, pipeline, events = _setup(max_in_flight=2)
    for i in range(4):
        _ask(agent, f"q{i}", "slow one")
    await asyncio.sleep(0.01)
    codes = [of(events, f"q{i}")[-1].get("code") for i in (2, 3)]
    assert codes == ["overloaded", "overloaded"]
    for i in range(2):
        agent.submit(json.dumps({"v": 1, "type": "cancel", "id": f"c{i}", "target": f"q{i}"}))
    await agent.drain()
    await pipeline.aclose()


async def test_a_failing_store_never_breaks_an_answer_and_says_it_was_not_saved() -> None:
    store = MemoryStore(fail=True)
    agent, pipeline, events = _setup(store)
    _ask(agent, "q", "a question")
    await agent.drain()
    answer, terminal = of(events, "q")[-2:]
    assert answer["type"] == "answer"
    assert "grounded in the docs" in answer["text"]
    assert terminal["type"] == "error"
    assert terminal["code"] == "storage_failed"
    assert "not saved" in terminal["message"]
    assert "quota" in terminal["message"]
    assert pipeline.persist_failures == 1
    await pipeline.aclose()


async def test_a_store_that_crashes_does_not_take_the_persistence_stage_down() -> None:
    class Crashing(MemoryStore):
        crashes = 1

        async def commit(self, puts: Any, deletes: Any = (), expect: Any = None) -> None:
            if self.crashes:
                self.crashes -= 1
                raise RuntimeError("disk driver bug")
            await super().commit(puts, deletes, expect)

    store = Crashing()
    agent, pipeline, events = _setup(store)
    _ask(agent, "q1", "a question")
    await agent.drain()
    assert of(events, "q1")[-2]["type"] == "answer"
    assert of(events, "q1")[-1]["code"] == "storage_failed"
    assert "disk driver bug" in of(events, "q1")[-1]["message"]
    _ask(agent, "q2", "another question")  # answered and saved: the stage is alive
    await agent.drain()
    assert of(events, "q2")[-1]["type"] == "done"
    assert len(await store.keys("history/")) == 1
    await pipeline.aclose()


async def test_done_means_the_turn_is_saved_and_conversations_are_indexed() -> None:
    store = MemoryStore()
    agent, pipeline, events = _setup(store)
    for rid in ("q1", "q2"):
        agent.submit(json.dumps({"v": 1, "type": "ask", "id": rid, "text": f"question {rid}",
                                 "conversation": "c/1"}))
        await agent.drain()
        assert of(events, rid)[-1]["type"] == "done"
    _ask(agent, "other", "not in the conversation")
    await agent.drain()
    turns = await conversation_turns(store, "c/1", 10)
    assert [t["question"] for t in turns] == ["question q1", "question q2"]
    assert all(t["conversation"] == "c/1" for t in turns)
    assert len(await store.keys("history/")) == 3
    await pipeline.aclose()


def test_stream_pieces_rejoin_to_the_text() -> None:
    text = "A fairly long answer sentence, with several words, that will be split. " * 5
    pieces = split_stream(text)
    assert len(pieces) > 5
    assert "".join(pieces) == text
    assert split_stream("") == []


class _Sure:
    """An intent head that is sure every question is out of scope (as it is of some how-tos)."""

    async def classify(self, embedding: Any) -> Any:
        from wasmagent.inference.intent import IntentResult

        return IntentResult("out_of_scope", 0.9, {"out_of_scope": 0.9})


class _Embedder:
    model = ports.ModelState()

    async def embed_one(self, text: str, ctx: Any = None) -> list[float]:
        return [0.0]


def _job(text: str, mode: str = "auto") -> Job:
    from wasmagent.runtime.context import Context

    loop = asyncio.get_running_loop()
    return Job(Ask("q", text, mode=mode), Context("q"), lambda e: None, loop.create_future(),
               0.0)


async def test_a_sure_intent_guess_only_stands_in_when_the_documents_do_not_speak_to_it(
) -> None:
    from wasmagent.pipeline.workers import RetrievalWorker

    router = Router(parse_tool=_parse_tool, embedder=_Embedder(),  # type: ignore[arg-type]
                    intent=_Sure())  # type: ignore[arg-type]
    job = _job("how do I make a unique id?")
    await router.route(job)
    assert job.route is Route.RETRIEVE, "retrieval still gets the question"
    assert job.canned is not None
    # No knowledge base at all: nothing sure to say, so the canned reply (marked unsure).
    from wasmagent.knowledge.library import Library

    worker = RetrievalWorker(Library(ports.MemoryStore(), None, None), "default")
    reply = await worker(job)
    assert (reply.route, reply.confident) == (Route.CANNED, False)
    assert reply.text == job.canned
    # A knowledge base that speaks to the question, even without a sure answer, answers it: the
    # head calls how-to questions it has never seen out of scope (issue 20's dev half: 5 of 168).
    from wasmagent.protocol import DocumentIn

    library = Library(ports.MemoryStore(), None, None)
    await library.ingest("default", [DocumentIn("ids.md", "# Unique ids\n\nTo make a unique "
                                                "id, call uuid4() from the uuid module.")])
    cited = await RetrievalWorker(library, "default")(job)
    assert cited.route is Route.RETRIEVE
    assert [c.source for c in cited.citations] == ["ids.md"]
    await library.ingest("other", [DocumentIn("cake.md", "# Cake\n\nBake it for an hour.")])
    job.request = Ask("q", "how do I make a unique id?", kb="other")
    assert (await RetrievalWorker(library, "default")(job)).route is Route.CANNED
    # Asked for the LLM where there is none, smalltalk still gets its reply, not an error.
    job = _job("nice to meet you", mode="llm")
    await router.route(job)
    assert (job.route, job.canned) == (Route.RETRIEVE, reply.text)
