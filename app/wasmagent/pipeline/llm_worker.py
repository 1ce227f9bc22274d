"""The LLM worker: a retrieval-augmented answer streamed token by token from an `Llm`.

It retrieves first (or takes the caller's `passages`), streams the LLM's pieces as `delta`
events the moment they arrive, and cites the passages the answer refers to (`[n]`), or all of
them when it refers to none. When the LLM fails in `auto` mode the user still gets an answer:
what was already streamed stays, a notice says what happened, and the local extractive answer
follows — all as deltas, so the concatenated deltas still equal the answer's text and the
conversation keeps every word that was shown.

Given tools and a model that can call them (`ToolLlm`), the answer comes from the agent loop
(`tool_loop.py`): the model decides which tools to call, step by step, and the steps stream
as `tool_call`/`tool_result` events before the final text. A server's LLM decides for every
question; the browser's small local model only for questions the router judged to need a
tool (the intent head, or closeness to a site owner's tool), as it answers plain questions
better without tools in its prompt. Given `workflows` (a host with a durable store), that
loop runs as a durable job (`durable_loop.py`), which saves the turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ..answer.extractive import compose_answer, snippet
from ..errors import AgentError, ErrorCode
from ..knowledge.kb import Hit
from ..knowledge.library import Library
from ..llm.choice import ChoiceLlm, choose
from ..ports import Clock, Llm, LoopClock, SmallContext, ToolCallRequest, ToolLlm, Turn
from ..protocol import Delta, Event, PassageIn, Source, ToolCalled, ToolReturned
from ..telemetry import Log, fallback_log
from ..tools import ToolRegistry
from ..workflow import Workflows
from .durable_loop import Asked, DurableLoops
from .jobs import Job, Reply, Route
from .pipeline import conversation_turns
from .tool_loop import Step, ToolLoop, tool_sources
from .workers import search, source_refs

LLM_PASSAGES = 5
MAX_TURNS = 6
"""Earlier turns of a conversation the LLM sees: enough for follow-ups, bounded in tokens."""
CITED = re.compile(r"\[(\d{1,2})\]")


class LlmWorker:
    """See the module docstring."""

    def __init__(self, library: Library, default_kb: str, llm: Llm, *,
                 tools: ToolRegistry | None = None, clock: Clock | None = None,
                 workflows: Workflows | None = None, timeout_s: float = 30.0,
                 log: Log = fallback_log) -> None:
        self._log = log
        held = (llm.server, llm.local) if isinstance(llm, ChoiceLlm) else (llm,)
        self._deciders = {m.name: m for m in held if isinstance(m, ToolLlm)}
        first = next(iter(self._deciders.values()), None)
        self._loop = (ToolLoop(first, tools, clock or LoopClock())
                      if tools is not None and first is not None else None)
        self._durable = (DurableLoops(self._loop, workflows, _citations, clock=clock or
                                      LoopClock(), timeout_s=timeout_s, log=log,
                                      models=self._deciders.get)
                         if self._loop is not None and workflows is not None else None)
        self._library = library
        self._default = default_kb
        self.llm = llm

    async def __call__(self, job: Job) -> Reply:
        request = job.request
        hits: list[Hit] = []
        if request.passages is not None:
            passages = list(request.passages)
        else:
            hits = await search(self._library, self._default, job) or []
            passages = [PassageIn(h.chunk.source, h.chunk.heading or h.chunk.title,
                                  h.chunk.anchor, h.chunk.text) for h in hits[:LLM_PASSAGES]]
        pieces: list[str] = []
        llm = choose(self.llm, request.mode) or self.llm
        # The local model's window is short: it sees fewer, shorter passages (same numbers).
        passages = llm.fit(passages) if isinstance(llm, SmallContext) else passages
        local = isinstance(self.llm, ChoiceLlm) and llm is self.llm.local
        detail: dict[str, object] = {"llm": llm.name, "passages": len(passages)}
        scores = [h.dense or h.score for h in hits] if hits else [0.0] * len(passages)
        saved = False
        from_tools: tuple[Source, ...] = ()  # tool results, citable beside the passages
        seen = _StepsSeen(job.emit)  # what tools gave, should the model fail after them
        try:
            turns = await self._turns(job)
            decider = self._decider(llm, job, local)
            if decider is not None and local:
                # The small model reads ~8-25 prompt tokens a second: a tool question gets
                # its tools, not passages it would not use (and so cites none).
                passages, scores = [], []
                detail["passages"] = 0
            if self._loop is not None and decider is not None:
                if self._durable is not None:
                    asked = Asked(request.id, request.text, passages, scores, turns,
                                  request.conversation, job.scope.tenant if job.scope else None,
                                  model=decider.name,
                                  route=(Route.LOCAL_LLM if local else Route.LLM).value)
                    outcome = await self._durable.run(asked, job.ctx, seen, shown=pieces)
                    saved = outcome.saved
                else:
                    outcome = await self._loop.run(request.id, request.text, passages,
                                                   job.ctx, seen, turns=turns, shown=pieces,
                                                   llm=decider)
                job.timings.update(steps=outcome.steps, model=round(outcome.model_ms, 3),
                                   tools=round(outcome.tool_ms, 3))
                from_tools = tool_sources(outcome.calls)
                detail.update(steps=outcome.steps, calls=len(outcome.calls))
            else:
                async for piece in llm.stream(request.text, passages, job.ctx, turns=turns,
                                              conversation=request.conversation):
                    pieces.append(piece)
                    job.emit(Delta(request.id, piece))
        except AgentError as exc:
            if request.mode == "llm" or exc.code in (ErrorCode.CANCELLED, ErrorCode.DEADLINE):
                raise
            return self._fallback(job, hits, pieces, exc, llm.name, local,
                                  tool_sources(seen.steps()))
        text = "".join(pieces)
        # The user is told which model wrote it: a server's LLM and the 135M local one differ.
        route = Route.LOCAL_LLM if local else Route.LLM
        return Reply(text, route, _citations(text, passages, scores) + from_tools,
                     confident=True, detail=detail, streamed=True, saved=saved)

    def _decider(self, llm: Llm, job: Job, local: bool) -> ToolLlm | None:
        """The model that runs the agent loop for this question, if any (module docstring)."""
        decider = self._deciders.get(llm.name)
        if decider is not llm or (local and job.intent != "tool"):
            return None
        return decider

    async def _turns(self, job: Job) -> list[Turn]:
        if job.request.history is not None:
            return [(t.question, t.answer) for t in job.request.history[-MAX_TURNS:]]
        conversation = job.request.conversation
        store = self._library.store if job.scope is None else job.scope.history
        if conversation is None or store is None:
            return []
        saved = await conversation_turns(store, conversation, MAX_TURNS)
        return [(t["question"], t["answer"]) for t in saved]

    def _fallback(self, job: Job, hits: Sequence[Hit], shown: list[str], exc: AgentError,
                  name: str, local: bool, from_tools: tuple[Source, ...]) -> Reply:
        """The model failed mid-answer: what was shown stays, a notice says why, and the answer
        goes on without it: from what its tools already found, else from the documents."""
        self._log("llm_fallback", level="warning", request_id=job.request.id,
                  error=exc.message)
        lead = "\n\n" if shown else ""
        failed = f"The {name} LLM failed ({exc.code.value}: {exc.message})."
        route = Route.LOCAL_FALLBACK if local else Route.FALLBACK
        detail: dict[str, object] = {"llm": name, "error": exc.code.value}
        if from_tools:
            notice = f"{lead}[{failed} What its tools found:]\n\n"
            text = "\n".join(f"- {s.title}: {s.snippet}" for s in from_tools)
            for piece in (notice, text):
                job.emit(Delta(job.request.id, piece))
            return Reply("".join(shown) + notice + text, route, from_tools, True, detail,
                         streamed=True)
        extractive = compose_answer(job.request.text, hits, job.by_meaning)
        notice = f"{lead}[{failed} Answer from the local documents instead:]\n\n"
        for piece in (notice, extractive.text):
            job.emit(Delta(job.request.id, piece))
        return Reply("".join(shown) + notice + extractive.text, route,
                     source_refs(extractive.citations), extractive.confident, detail,
                     streamed=True)


class _StepsSeen:
    """Passes a loop's events on, keeping its tool calls and their results: if the model fails
    after its tools ran, the answer is made of what they found."""

    def __init__(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit
        self._calls: dict[str, ToolCallRequest] = {}
        self._steps: list[Step] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, ToolCalled):
            self._calls[event.call_id] = ToolCallRequest(event.call_id, event.name,
                                                         event.arguments)
        elif isinstance(event, ToolReturned) and event.call_id in self._calls:
            self._steps.append(Step(self._calls[event.call_id], event.ok, event.text, event.ms))
        self._emit(event)

    def steps(self) -> list[Step]:
        return self._steps


def _citations(text: str, passages: Sequence[PassageIn], scores: Sequence[float]
               ) -> tuple[Source, ...]:
    cited = [int(n) - 1 for n in dict.fromkeys(CITED.findall(text))]
    chosen = [i for i in cited if 0 <= i < len(passages)] or list(range(len(passages)))
    return tuple(Source(passages[i].source, passages[i].title, passages[i].anchor,
                        scores[i] if i < len(scores) else 0.0,
                        snippet(passages[i].text)) for i in chosen)
