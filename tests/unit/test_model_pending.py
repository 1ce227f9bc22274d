"""Ready before the embedding model (issue 16): while the host is still making the model's
session the agent answers from keyword search, with citations; once the model is ready it
switches to hybrid search by itself; a model that fails for good leaves keyword search working
and says why; adding documents waits for the model instead of failing or saving them without
vectors. Runs in Pyodide too (a stand-in model, pure-Python vectors)."""

from __future__ import annotations

import asyncio
import json
from array import array
from collections.abc import Mapping
from typing import Any

from tests.support.aio import collect, of, ticks
from tests.support.documents import GUIDE, NOTES
from tests.support.vectors import ListVectors, hashed_embeddings
from wasmagent.ports import Host, LoopClock, MemoryStore, ModelState, Tensor
from wasmagent.service import Service

VOCAB = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"abcdefghijklmnopqrstuvwxyz0123456789.,:#?"])
DOCS = GUIDE
MORE = [NOTES]


class StandInModel:
    """The `Inference` port: MiniLM as hashed character ids, the intent head always sure of
    "question". Counts what it ran, by model."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}

    async def run(self, model: str, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        self.runs[model] = self.runs.get(model, 0) + 1
        if model == "intent":
            return {"probabilities": Tensor("float32", (1, 4), array("f", [1.0, 0, 0, 0]))}
        return {"sentence_embedding": hashed_embeddings(feeds["input_ids"], normalise=True)}


class Setup:
    def __init__(self, model: ModelState, store: MemoryStore) -> None:
        self.model = model
        self.store = store
        self.inference = StandInModel()
        self.vectors = ListVectors()
        self.events: list[dict[str, Any]] = []
        host = Host(name="test", clock=LoopClock(), store=store,
                    inference=self.inference, vectors=self.vectors, vocab=VOCAB, model=model)
        self.service = Service(host, collect(self.events))
        self.service.start()
        assert self.service.agent is not None
        self.agent = self.service.agent

    async def request(self, rid: str, kind: str, **fields: Any) -> list[dict[str, Any]]:
        self.agent.submit({"v": 1, "type": kind, "id": rid, **fields})
        await self.agent.drain()
        return of(self.events, rid)

    async def status(self, rid: str) -> dict[str, Any]:
        found: dict[str, Any] = (await self.request(rid, "status"))[0]["data"]
        return found


async def _ingested_while_ready() -> Setup:
    """A service whose default knowledge base was built with the model (vectors saved), then a
    fresh one over the same store, its model not loaded yet: a reload of the page."""
    store = MemoryStore()
    first = Setup(ModelState(), store)
    events = await first.request("i", "ingest", kb="default", documents=DOCS)
    assert events[-1]["type"] == "done", events
    await first.service.aclose()
    return Setup(ModelState(pending=True), store)


async def test_a_question_while_the_model_loads_gets_a_cited_keyword_answer() -> None:
    setup = await _ingested_while_ready()
    status = await setup.status("s")
    assert status["model"] is False
    assert status["model_state"] == "pending"
    answer = [e for e in await setup.request("a", "ask", text="does it work offline?")
              if e["type"] == "answer"]
    assert answer
    assert "service worker" in answer[0]["text"]
    assert answer[0]["citations"][0]["source"] == "guide/faq.rst"
    assert setup.inference.runs == {}, "nothing waited for or ran the model"
    assert setup.vectors.searches == 0, "keyword search only"
    await setup.service.aclose()


async def test_once_the_model_is_ready_questions_use_hybrid_search() -> None:
    setup = await _ingested_while_ready()
    await setup.request("a", "ask", text="does it work offline?")
    setup.model.settle()
    status = await setup.status("s")
    assert status["model"] is True
    assert status["model_state"] == "ready"
    events = await setup.request("b", "ask", text="does it work offline?")
    answer = next(e for e in events if e["type"] == "answer")
    assert answer["citations"][0]["source"] == "guide/faq.rst"
    assert setup.inference.runs.get("minilm", 0) >= 1
    assert setup.inference.runs.get("intent", 0) == 1
    assert setup.vectors.searches >= 1, "the question's vector was searched"
    await setup.service.aclose()


async def test_a_model_that_fails_leaves_keyword_search_and_says_why() -> None:
    setup = await _ingested_while_ready()
    setup.model.settle("could not compile the model")
    status = await setup.status("s")
    assert status["model"] is False
    assert status["model_state"] == "failed"
    assert status["model_error"] == "could not compile the model"
    events = await setup.request("a", "ask", text="does it work offline?")
    assert [e["type"] for e in events][-2:] == ["answer", "done"]
    answer = next(e for e in events if e["type"] == "answer")
    assert answer["citations"][0]["source"] == "guide/faq.rst"
    embedded = await setup.request("e", "embed", texts=["x"])
    assert embedded[0]["type"] == "error"
    assert embedded[0]["code"] == "not_ready"
    assert "could not compile the model" in embedded[0]["message"]
    assert setup.inference.runs == {}
    await setup.service.aclose()


async def test_adding_documents_waits_for_the_model_and_saves_their_vectors() -> None:
    setup = await _ingested_while_ready()
    setup.agent.submit({"v": 1, "type": "ingest", "id": "i", "kb": "default", "documents": MORE})
    await ticks(50)
    assert not [e for e in of(setup.events, "i") if e["type"] in ("done", "error")]
    assert setup.inference.runs == {}
    setup.model.settle()
    await setup.agent.drain()
    assert of(setup.events, "i")[-1]["type"] == "done", of(setup.events, "i")
    assert json.loads(setup.store.data["kb/default/meta"])["vectors"] is True
    assert setup.inference.runs.get("minilm", 0) >= 1
    kb = await setup.service.library.get("default")
    assert "notes.txt" in {c.source for c in kb.chunks}
    assert len(setup.vectors.spaces[kb.space]) == len(kb.chunks), "one vector per chunk"
    await setup.service.aclose()


async def test_adding_documents_while_the_model_fails_keeps_them_for_keyword_search() -> None:
    setup = await _ingested_while_ready()
    setup.agent.submit({"v": 1, "type": "ingest", "id": "i", "kb": "default", "documents": MORE})
    await ticks(50)
    setup.model.settle("out of memory")
    await setup.agent.drain()
    assert of(setup.events, "i")[-1]["type"] == "done", of(setup.events, "i")
    assert json.loads(setup.store.data["kb/default/meta"])["vectors"] is False
    answer = next(e for e in await setup.request("a", "ask", text="what adds citations?")
              if e["type"] == "answer")
    assert answer["citations"][0]["source"] == "notes.txt"
    await setup.service.aclose()


async def test_model_state_settles_once() -> None:
    model = ModelState(pending=True)
    waiting = asyncio.ensure_future(model.wait())
    await ticks()
    assert not waiting.done()
    assert model.state == "pending"
    model.settle()
    model.settle("too late")
    assert await waiting is True
    assert model.state == "ready"
    assert model.error is None
