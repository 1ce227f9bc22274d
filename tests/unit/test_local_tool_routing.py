"""Which questions the browser's small local model answers with tools, and which plainly.

A server's model is offered tools for every question; the 135M local one only for questions
the router judged to need a tool: the intent head's "tool", or a question close in meaning to
one of the site owner's tools (which the intent head has never seen). Plain test functions:
the same file runs in Pyodide.
"""

from __future__ import annotations

import asyncio
import json
from array import array
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tests.unit.test_json_tools import Decoder, JsonModel
from wasmagent.inference.intent import IntentResult
from wasmagent.knowledge.library import Library
from wasmagent.llm.choice import ChoiceLlm
from wasmagent.pipeline.jobs import Job, Route
from wasmagent.pipeline.llm_worker import LlmWorker
from wasmagent.pipeline.router import Router
from wasmagent.pipeline.tool_match import ToolMatch
from wasmagent.ports import MemoryStore, ModelState
from wasmagent.protocol import Ask, Event, PassageIn
from wasmagent.runtime.context import Context
from wasmagent.tools import ToolRegistry, default_tools

PASSAGES = [PassageIn(f"p{n}.md", f"P{n}", "", "x" * 1000) for n in range(1, 6)]


class Local(JsonModel):
    """The local model's shape: a short window (`fit`), a plain `stream`, a JSON `chat`."""

    name = "local"

    def __init__(self, decoder: Decoder) -> None:
        super().__init__(decoder)
        self.streamed: list[Sequence[PassageIn]] = []

    def fit(self, passages: Sequence[PassageIn]) -> list[PassageIn]:
        return list(passages[:2])

    async def stream(self, question: str, passages: Sequence[PassageIn], ctx: Context, *,
                     turns: Any = (), conversation: str | None = None
                     ) -> AsyncIterator[str]:
        self.streamed.append(passages)
        yield "A plain answer [1]."


def job(text: str, intent: str | None, *, passages: Sequence[PassageIn] | None = None,
        events: list[dict[str, Any]] | None = None) -> Job:
    def emit(event: Event) -> None:
        if events is not None:
            events.append(event.to_wire())

    found = Job(Ask("q", text, mode="local", passages=passages), Context("q"), emit,
                asyncio.get_running_loop().create_future(), 0.0)
    found.intent = intent
    return found


def worker(local: Local) -> LlmWorker:
    return LlmWorker(Library(MemoryStore(), None, None), "default", ChoiceLlm(None, local),
                     tools=default_tools())


async def test_a_tool_question_runs_the_loop_on_the_local_model_with_its_tools_only(
) -> None:
    local = Local(Decoder(
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}}]},
        "17 × 23 = 391."))
    events: list[dict[str, Any]] = []
    reply = await worker(local)(job("what is seventeen times twenty-three?", "tool",
                                    passages=PASSAGES, events=events))
    assert reply.route is Route.LOCAL_LLM
    assert reply.text == "17 × 23 = 391."
    assert [e["name"] for e in events if e["type"] == "tool_result"] == ["calculator"]
    prompt = local.decoder.seen[0][0][-1]["content"]
    assert "[1]" not in prompt, "its tools, not passages it would not use"
    [cited] = reply.citations  # the tool's result, citable as a passage is
    assert (cited.source, cited.title, cited.snippet) == (
        "tool:calculator", "calculator(17 * 23)", "17 * 23 = 391")
    assert local.streamed == []


async def test_a_plain_question_gets_a_plain_local_answer_without_tools() -> None:
    local = Local(Decoder())
    reply = await worker(local)(job("how do I read a file?", "question", passages=PASSAGES))
    assert reply.text == "A plain answer [1]."
    assert local.decoder.seen == [], "no JSON turn, no tools in the prompt"
    assert len(local.streamed[0]) == 2


class OutOfScope:
    """The intent head as it judges questions for a site's own tools: out of scope, surely."""

    async def classify(self, embedding: Any) -> IntentResult:
        return IntentResult("out_of_scope", 0.88, {"out_of_scope": 0.88})


class Axes:
    """An embedder double: a text's vector is the unit axis named by its first word."""

    AXES = ("shipping", "orders", "how")
    model = ModelState()

    async def embed(self, texts: Sequence[str], ctx: Any = None) -> list[array[float]]:
        return [self._axis(t) for t in texts]

    async def embed_one(self, text: str, ctx: Any = None) -> array[float]:
        return self._axis(text)

    def _axis(self, text: str) -> array[float]:
        word = text.split()[0].lower().strip(":")
        return array("f", [1.0 if word == a else 0.0 for a in self.AXES])


def owner_tools() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def shipping(country: str) -> str:
        """The shipping cost and delivery time to a country."""
        return json.dumps({"country": country, "days": 3})

    return registry


def router(local: Local, registry: ToolRegistry) -> Router:
    embedder = Axes()
    return Router(parse_tool=lambda text: [], embedder=embedder,  # type: ignore[arg-type]
                  intent=OutOfScope(),  # type: ignore[arg-type]
                  llm=ChoiceLlm(None, local),
                  tool_match=ToolMatch(embedder, lambda: list(registry)))  # type: ignore[arg-type]


async def test_a_question_for_an_owner_tool_goes_to_the_model_not_to_a_canned_refusal(
) -> None:
    routed = job("shipping to Norway, how much?", None)
    await router(Local(Decoder()), owner_tools()).route(routed)
    assert (routed.route, routed.intent, routed.canned) == (Route.LLM, "tool", None)


async def test_other_questions_keep_the_intent_heads_judgement() -> None:
    routed = job("how do I read a file?", None)
    await router(Local(Decoder()), owner_tools()).route(routed)
    assert routed.intent == "out_of_scope"
    assert routed.route is Route.CANNED, "with a model chosen, a sure guess stays canned"
    empty = job("shipping to Norway, how much?", None)
    await router(Local(Decoder()), ToolRegistry()).route(empty)
    assert empty.intent == "out_of_scope", "no owner tools, nothing to be close to"
