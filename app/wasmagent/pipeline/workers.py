"""The worker stage's jobs: answer from a knowledge base, run a tool, or give a canned reply."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ..answer.extractive import compose_answer
from ..errors import AgentError, ErrorCode
from ..knowledge.kb import Hit
from ..knowledge.library import Library
from ..protocol import Source
from ..tools import ToolRegistry
from .jobs import Job, Reply, Route

NO_KNOWLEDGE = ("There are no documents in this knowledge base yet. Add some with "
                "\"Add documents\", then ask again.")


async def search(library: Library, default_kb: str, job: Job) -> list[Hit] | None:
    """The asked knowledge base's best hits for the job's question; None when the question
    names no knowledge base and the default one does not exist yet (nothing ingested).
    The knowledge base is looked up in the job's scope (its client's, or a shared one), or in
    `library` for a job without a scope."""
    name = job.request.kb or default_kb
    if job.scope is not None:
        library = job.scope.library_for(name)
    try:
        kb = await library.get(name)
    except AgentError as exc:
        if exc.code is ErrorCode.NOT_FOUND and job.request.kb is None:
            return None
        raise
    job.by_meaning = kb.searches_by_meaning(job.embedding)
    return await kb.search(job.request.text, job.embedding, job.request.top_k)


def source_refs(citations: Iterable[Source]) -> tuple[Source, ...]:
    return tuple(citations)


class RetrievalWorker:
    """Hybrid search over the asked knowledge base, then an extractive, cited answer."""

    def __init__(self, library: Library, default_kb: str) -> None:
        self._library = library
        self._default = default_kb

    async def __call__(self, job: Job) -> Reply:
        hits = await search(self._library, self._default, job)
        answer = None if hits is None else compose_answer(job.request.text, hits, job.by_meaning)
        if job.canned is not None and (answer is None or not answer.on_topic):
            # The intent head's canned reply, kept for when the documents do not speak to the
            # question (its guess is wrong about documentation questions it has never seen).
            return Reply(job.canned, Route.CANNED, confident=False,
                         detail={"intent": job.intent or "rule"})
        if hits is None or answer is None:
            return Reply(NO_KNOWLEDGE, Route.RETRIEVE, confident=False)
        return Reply(answer.text, Route.RETRIEVE, source_refs(answer.citations),
                     answer.confident, {"kb": job.request.kb or self._default, "hits": len(hits)})


class ToolWorker:
    """Runs the tool calls the router recognised (several at once for a question made of
    several requests), one line of answer each, in the question's order."""

    def __init__(self, tools: ToolRegistry) -> None:
        self._tools = tools

    async def __call__(self, job: Job) -> Reply:
        assert job.tool_calls, "the router sets tool_calls for the tool route"
        done = await asyncio.gather(*(self._tools.call(name, args)
                                      for name, args in job.tool_calls), return_exceptions=True)
        for failed in done:
            if isinstance(failed, BaseException):
                raise failed  # the first failure, as a single call's would be
        results = [r for r in done if not isinstance(r, BaseException)]
        (name, args), *more = job.tool_calls
        detail: dict[str, object] = {"tool": name, "arguments": args}
        if more:
            detail["calls"] = [{"tool": n, "arguments": a} for n, a in job.tool_calls]
        return Reply("\n".join(r.text for r in results), Route.TOOL, detail=detail)


class CannedWorker:
    """Replies the router already chose (greetings, out-of-scope notices)."""

    async def __call__(self, job: Job) -> Reply:
        assert job.canned is not None, "the router sets canned for the canned route"
        # A rule (a greeting) is sure; the intent head's guess is not: documentation questions
        # score as out of scope up to 0.90 while real ones start at 0.68 (tests/bench/eval).
        return Reply(job.canned, Route.CANNED, confident=job.intent is None,
                     detail={"intent": job.intent or "rule"})
