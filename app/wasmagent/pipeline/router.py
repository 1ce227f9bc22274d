"""The router stage: decide whether a question goes to retrieval, a tool, or a canned reply.

Rules run first because they are exact and free: a recognised tool request ("what is 17*23",
"what day is it") goes to the tool; a bare greeting or thanks gets a canned reply. Otherwise the
question is embedded once (the retrieval worker reuses that vector) and the intent head decides
between retrieval and a canned reply (smalltalk, out of scope, a tool request no rule parsed);
a question close in meaning to one of the site owner's tools counts as a tool request
(`tool_match.py`) when a model that can call tools is there to decide.
While the embedding model is still loading (or after it failed for good) questions are not
embedded: retrieval answers from keyword search alone, and no intent head runs; a failure to
embed one question does the same (logged), never an error for the asker.
Retrieval is the default whenever the intent head is unsure or unavailable, because an honest
"I don't know" from the knowledge base is better than a canned brush-off; and even when the head
is sure, a knowledge base that speaks to the question (`ComposedAnswer.on_topic`: sure, or
pages holding half its words at a cosine ≥ 0.4) wins over its canned reply.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import AgentError, ErrorCode
from ..llm.choice import choose
from ..ports import ToolLlm
from ..telemetry import Log, fallback_log
from .jobs import Job, Route
from .tool_match import NEAR, ToolMatch

if TYPE_CHECKING:
    from ..inference.embedder import Embedder
    from ..inference.intent import IntentClassifier
    from ..ports import Llm


ToolParser = Callable[[str], "list[tuple[str, dict[str, Any]]]"]
"""Every tool call a question asks for by the rules, in order; none: `[]`."""

GREETING = re.compile(
    r"^\s*(hi|hello|hey|hallo|good (morning|afternoon|evening)|howdy|yo)\b[\s!.,]*(there)?[\s!.]*$",
    re.IGNORECASE)
THANKS = re.compile(r"^\s*(thanks|thank you|thx|cheers|great|perfect|ok(ay)?)\b[\s\w!.,]{0,20}$",
                    re.IGNORECASE)
BYE = re.compile(r"^\s*(bye|goodbye|see you|good night)\b[\s!.]*$", re.IGNORECASE)

CANNED = {
    "greeting": "Hello! Ask me anything about the documents in this knowledge base, or give me "
                "a calculation or a date question.",
    "thanks": "You're welcome. Ask me anything else about the documents.",
    "bye": "Goodbye! Your knowledge bases stay saved in this browser.",
    "smalltalk": "I'm wasmagent, an assistant that runs entirely in your browser and answers "
                 "from the documents in its knowledge base, with citations.",
    "out_of_scope": "That is outside what I can do here: I answer questions from the documents "
                    "in this knowledge base (with citations), do arithmetic and answer date and "
                    "time questions.",
    "tool": "I can calculate (for example \"what is 17 * 23\" or \"sqrt(2)\") and answer date "
            "questions (\"what day is it\", \"how many days until 2026-12-25\").",
}

# The intent head must be this sure before it overrides retrieval.
INTENT_THRESHOLD = {"smalltalk": 0.7, "out_of_scope": 0.75, "tool": 0.8}


def rule_route(text: str) -> str | None:
    """The canned reply key a rule assigns to `text`, or None."""
    if GREETING.match(text):
        return "greeting"
    if BYE.match(text):
        return "bye"
    if THANKS.match(text) and len(text) < 40:
        return "thanks"
    return None


class Router:
    """Fills in a job's route (and its query embedding, which retrieval reuses)."""

    def __init__(self, *, parse_tool: ToolParser, embedder: Embedder | None = None,
                 intent: IntentClassifier | None = None, llm: Llm | None = None,
                 tool_match: ToolMatch | None = None, log: Log = fallback_log) -> None:
        self._log = log
        self._tool_match = tool_match
        self._parse_tool = parse_tool
        self._embedder = embedder
        self._intent = intent
        self.llm = llm

    async def route(self, job: Job) -> None:
        await self._route(job)
        # (A question the intent head answers with a canned reply when the documents cannot
        # was already checked for a model that would answer it: `_by_intent`.)
        if job.route is Route.RETRIEVE and job.canned is None:
            self._maybe_llm(job)

    def _maybe_llm(self, job: Job) -> None:
        """Questions for the knowledge base go to the LLM when the caller allows it and one is
        there; in `llm` mode a missing LLM is an error, otherwise it is just skipped (which
        model, if any, is `choose`'s rule)."""
        mode = job.request.mode
        if self.llm is None and mode == "llm":
            raise AgentError(ErrorCode.NOT_READY, "no LLM upstream is configured here")
        if choose(self.llm, mode) is not None:
            job.route = Route.LLM

    async def _route(self, job: Job) -> None:
        text = job.request.text
        if job.request.mode == "llm" and job.request.passages is not None:
            # The caller retrieved and routed already (the browser asking its server).
            job.route = Route.RETRIEVE
            return
        calls = self._parse_tool(text)
        if calls:
            job.route, job.tool_calls = Route.TOOL, tuple(calls)
            return
        rule = rule_route(text)
        if rule is not None:
            job.route, job.canned = Route.CANNED, CANNED[rule]
            return
        if self._embedder is not None and self._embedder.model.ready:
            job.embedding = await self._embed(job, self._embedder, text)
        job.route = Route.RETRIEVE
        if self._intent is not None and job.embedding is not None:
            await self._by_intent(job, self._intent, job.embedding)

    async def _embed(self, job: Job, embedder: Embedder, text: str) -> Any:
        """The question's vector, or None (keyword search only) when the model fails."""
        try:
            return await embedder.embed_one(text, ctx=job.ctx)
        except AgentError as exc:
            if job.ctx.done:
                raise
            self._log("embedding_unavailable", level="warning", error=exc.message)
            return None

    async def _near_owner_tool(self, job: Job, embedding: Any) -> bool:
        if self._tool_match is None:
            return False
        try:
            return await self._tool_match.closeness(embedding, job.ctx) >= NEAR
        except AgentError as exc:
            if job.ctx.done:
                raise
            self._log("tool_match_unavailable", level="warning", error=exc.message)
            return False

    async def _by_intent(self, job: Job, intent: IntentClassifier, embedding: Any) -> None:
        """What the intent head makes of a question no rule caught (it stays with retrieval
        unless the head is sure)."""
        try:
            result = await intent.classify(embedding)
        except AgentError as exc:
            # The intent head is an optimisation of routing, not a requirement: without it
            # every question goes to retrieval, which still answers honestly.
            self._log("intent_unavailable", level="warning", error=exc.message)
            return
        job.intent = result.label
        chosen = choose(self.llm, job.request.mode)
        if isinstance(chosen, ToolLlm) and chosen.available():
            if result.label != "tool" and await self._near_owner_tool(job, embedding):
                job.intent = "tool"
            if job.intent == "tool":
                # A tool question no rule could parse: a model that can call tools decides
                # which (the canned "here is what I can compute" reply is for hosts without).
                return
        threshold = INTENT_THRESHOLD.get(result.label)
        if threshold is None or result.confidence < threshold:
            return
        job.canned = CANNED[result.label]
        if chosen is not None:
            job.route = Route.CANNED
        # Otherwise the canned reply is retrieval's fallback: the intent head is sure of
        # documentation questions it has never seen far too often (how-to questions as out of
        # scope at 0.85), so the knowledge base answers when it speaks to the question, even
        # unsure, and the canned reply comes only when it does not (RetrievalWorker).
