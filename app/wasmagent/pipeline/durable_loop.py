"""The agent loop as a durable job: a crash or a reload resumes it without redoing its steps.

On a host with a durable `Store`, `DurableLoops.run` asks the model's first turn as any answer
does; most answers call no tool and end there, with no journal (a job would cost four store
commits per answer, on a server that answers hundreds a second). A first turn that asks for
tools makes the rest of the tool loop (`tool_loop.py`) a workflow job of kind `answer`
(`workflow/`), titled with the question, with that turn as its first step:

- Every model turn (its text and tool calls) and every tool call's result is a journaled
  step. A resumed run replays them: completed calls never run again; a call of a tool
  declared `idempotent=False` that started but recorded no result is never run again either,
  and the model and the `tool_result` say it was interrupted with an unknown outcome. Other
  calls without a recorded result run again.
- Live, the request's client sees the run as without a journal: `delta`, `tool_call` and
  `tool_result` events as they happen, then the `answer`. The job's last step writes the
  turn's history record (the conversation's next turn) in the same commit as its journal
  record, so the turn is saved exactly once, whichever run finishes it; the pipeline does not
  save it again (`Reply.saved`). `done` still means the turn is saved.
- A run outlives its process, not its request: the request's end before the answer (a
  `cancel`, its deadline, its client closing the connection) cancels the job, as it ends any
  answer. A run that reached its request (answered, or failed to it) or was cancelled with
  it is dropped from the journal as it ends: `jobs.list` keeps the runs nobody received.
- A run whose process died (a page reload, a killed server) is resumed by the next process
  sharing the store once the dead owner's lease lapses (`Workflows.resume`, which
  `Service.start` keeps scanning for), with nobody to stream to: its answer lands in the
  history (`history.list`, the conversation's turns) and in the job's `result` (`question`,
  `answer`, `route`, `citations`, `conversation`, `request`, `steps`, `finished`, `resumed`,
  and `calls`: each call's
  `name`, `arguments`, `ok` and result text, an interrupted one's included), which
  `jobs.watch` follows and `jobs.list` shows (the app shows the answer under its question
  once it lands: `resumeAnswers` in web/shared/chat.js); each tool call and result shows in
  the job's `progress` meanwhile.
  A resumed run has `timeout_s` to finish; if the model fails it, the job fails with that
  error and no turn is saved (a live run instead falls back to the local answer,
  `llm_worker.py`).
- Live, a model's failure reaches the request at once, as without a journal (the request
  falls back or reports it; only the store's own hiccups are retried). A resumed run asks a
  model turn that failed before showing any text again, with the engine's backoff (it may
  start before the model's link is up); then the job fails with the model's error.
- Honest limits: a model turn that the process died in the middle of is asked again (its
  text may differ from what the user saw stream); results are recorded in call order, so a
  call that finished while an earlier one of its turn still ran is run again (or, if it must
  not run twice, reported interrupted) after a crash; a job whose start the store refuses
  (quota) runs as a plain, non-durable loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import AgentError, ErrorCode
from ..ports import Clock, ToolLlm, Turn
from ..protocol import Event, PassageIn, Source, ToolCalled, ToolReturned
from ..runtime.context import Context
from ..telemetry import Log, fallback_log
from ..tenancy import PrefixStaging, Staging, tenant_prefix
from ..workflow import JobStopped, Run, Tx, Workflows
from .pipeline import _history_puts
from .tool_loop import LoopOutcome, ToolLoop, tool_sources

KIND = "answer"
STORE_TROUBLE = (ErrorCode.STORAGE, ErrorCode.CONFLICT)
Cite = Callable[[str, Sequence[PassageIn], Sequence[float]], Sequence[Source]]


@dataclass(slots=True)
class Asked:
    """One question for the loop: what a resumed run needs to redo it (the job's input)."""

    request_id: str
    question: str
    passages: Sequence[PassageIn]
    scores: Sequence[float] = ()
    turns: Sequence[Turn] = ()
    conversation: str | None = None
    tenant: str | None = None
    first: Mapping[str, Any] | None = None
    """The model's first turn, taken before the run became a job (`ToolLoop.open_turn`)."""
    model: str | None = None
    """The name of the model that decides, when not the loop's own (a resumed run asks the
    same one if the host has it)."""
    route: str = "llm"
    """The answer's route in the history (`local_llm` when the browser's model decides)."""

    def to_input(self, follower: str) -> dict[str, Any]:
        return {"request": self.request_id, "question": self.question,
                "passages": [asdict(p) for p in self.passages], "scores": list(self.scores),
                "turns": [list(t) for t in self.turns], "conversation": self.conversation,
                "follower": follower, "first": self.first, "model": self.model,
                "route": self.route}

    @classmethod
    def from_input(cls, data: dict[str, Any], tenant: str | None) -> Asked:
        return cls(data["request"], data["question"],
                   [PassageIn(**p) for p in data["passages"]], data["scores"],
                   [(q, a) for q, a in data["turns"]], data["conversation"], tenant,
                   data.get("first"), data.get("model"), data.get("route", "llm"))


@dataclass(slots=True)
class _Follower:
    """The live request following a run in this process: where its events go."""

    emit: Callable[[Event], None]
    shown: list[str]
    remaining: Callable[[], float | None] = lambda: None
    """Seconds left before the request's deadline (None: no deadline)."""
    done: asyncio.Future[LoopOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class _RunJournal:
    """A workflow `Run` as the loop's `Journal` (steps without staged writes). In a `live`
    run only the store's own hiccups are retried: a model's or a tool's failure reaches the
    waiting request at once (its fallback, its typed error), as it does without a journal."""

    def __init__(self, run: Run, *, live: bool) -> None:
        self._run = run
        self._live = live

    @property
    def replaying(self) -> bool:
        return self._run.replaying

    async def step(self, name: str, fn: Callable[[], Awaitable[Any]], *,
                   retry: bool | Callable[[AgentError], bool] = True) -> Any:
        async def body(tx: Tx) -> Any:
            return await fn()

        def allowed(exc: AgentError) -> bool:
            if self._live and exc.code not in STORE_TROUBLE:
                return False
            return retry(exc) if callable(retry) else retry

        return await self._run.step(name, body, retry=allowed)


class DurableLoops:
    """Tool loops run as `answer` jobs of `workflows`; see the module docstring."""

    def __init__(self, loop: ToolLoop, workflows: Workflows, cite: Cite, *, clock: Clock,
                 timeout_s: float = 30.0, log: Log = fallback_log,
                 models: Callable[[str], ToolLlm | None] = lambda name: None) -> None:
        self._loop = loop
        self._models = models
        self._workflows = workflows
        self._cite = cite
        self._clock = clock
        self._timeout_s = timeout_s
        self._log = log
        self._followers: dict[str, _Follower] = {}
        workflows.register(KIND, self._job)

    async def run(self, asked: Asked, ctx: Context, emit: Callable[[Event], None], *,
                  shown: list[str]) -> LoopOutcome:
        """Answer `asked` as a durable job, streaming to `emit` and `shown` as `ToolLoop.run`
        does; returns once the turn is saved. Raises the run's `AgentError` when it fails, and
        the request's own when it ends first (the job is then cancelled)."""
        first, first_ms = await self._loop.open_turn(
            asked.request_id, asked.question, asked.passages, ctx, emit, turns=asked.turns,
            shown=shown, llm=self._model(asked))
        if not first["calls"]:
            return LoopOutcome("".join(shown), 1, model_ms=first_ms)
        asked = replace(asked, first=first)
        outcome = await self._durable(asked, ctx, emit, shown=shown)
        outcome.model_ms += first_ms
        return outcome

    async def _durable(self, asked: Asked, ctx: Context, emit: Callable[[Event], None], *,
                       shown: list[str]) -> LoopOutcome:
        follower = _Follower(emit, shown, ctx.remaining)
        follower.done.add_done_callback(_retrieved)  # a cancelled request no longer reads it
        token = uuid.uuid4().hex
        self._followers[token] = follower
        try:
            try:
                # Not bound to `ctx`: a start cut short after its commit would leave a job
                # nobody follows; a request already over cancels the job just below.
                job_id = await self._workflows.start(
                    KIND, asked.to_input(token), title=_title(asked.question),
                    tenant=asked.tenant)
            except AgentError as exc:
                if exc.code is not ErrorCode.STORAGE:
                    raise
                self._log("answer_not_durable", level="warning", request_id=asked.request_id,
                          error=exc.message)
                return await self._loop.run(asked.request_id, asked.question, asked.passages,
                                            ctx, emit, turns=asked.turns, shown=shown,
                                            first=asked.first, first_shown=True,
                                            llm=self._model(asked))
            try:
                outcome = await ctx.run(follower.done)
            except BaseException:
                # (The request's end cancels `done` itself: only the job settles it otherwise.)
                answered = follower.done.done() and not follower.done.cancelled()
                if not answered and not self._workflows.closing:
                    # The request ended first: nobody wants this answer any more. (Shutting
                    # down is not that: the run is left to resume.)
                    await asyncio.shield(self._workflows.cancel(job_id, forget=True))
                elif answered:
                    await self._workflows.ended(job_id)
                raise
            # Once the request is done, so is its job (gone from `jobs.list`).
            await self._workflows.ended(job_id)
            return outcome
        finally:
            self._followers.pop(token, None)

    async def _job(self, run: Run, data: dict[str, Any]) -> dict[str, Any]:
        asked = Asked.from_input(data, run.record.tenant)
        follower = self._followers.get(data["follower"])
        try:
            outcome = await self._answer(run, asked, follower)
        except BaseException as exc:
            if follower is not None and not follower.done.done():
                follower.done.set_exception(_as_agent_error(exc))
                run.forget_when_finished = True  # its request reports the failure
            raise
        if follower is not None and not follower.done.done():
            follower.done.set_result(outcome)
            # Delivered (and saved in the history): keeping the job would only crowd out the
            # ones a user looks for in `jobs.list`.
            run.forget_when_finished = True
        cited = [*self._cite(outcome.text, asked.passages, asked.scores),
                 *tool_sources(outcome.calls)]
        return {"request": asked.request_id, "question": asked.question, "answer": outcome.text,
                "route": asked.route, "citations": [asdict(c) for c in cited],
                "conversation": asked.conversation, "steps": outcome.steps,
                "calls": [{"name": c.call.name, "arguments": c.call.arguments, "ok": c.ok,
                           "text": _short(c.text)} for c in outcome.calls],
                "finished": outcome.finished, "resumed": run.record.runs > 1}

    async def _answer(self, run: Run, asked: Asked, follower: _Follower | None) -> LoopOutcome:
        if follower is not None:
            # The request's own deadline and cancellation govern a live run (they cancel the
            # job). Its context ends at the same moment, so that a model that sees its deadline
            # coming (the browser's local one stops a second early) can fail in time for the
            # request's fallback instead of being cut off by the deadline.
            ctx = Context(asked.request_id, timeout=follower.remaining(), clock=self._clock)
            emit, shown = follower.emit, follower.shown
        else:
            ctx = Context(asked.request_id, timeout=self._timeout_s, clock=self._clock)
            emit, shown = _ignore, []

        step = 0

        def emit_and_note(event: Event) -> None:
            # A resumed run has nobody to stream to: its progress is what `jobs.watch` shows.
            nonlocal step
            emit(event)
            if isinstance(event, ToolCalled):
                step = event.step
                run.progress(step, self._loop.max_steps, f"calling {event.name}")
            elif isinstance(event, ToolReturned):
                said = "done" if event.ok else _short(event.text)
                run.progress(step, self._loop.max_steps, f"{event.name}: {said}")

        started = self._clock.monotonic()
        outcome = await self._loop.run(asked.request_id, asked.question, asked.passages, ctx,
                                       emit_and_note, turns=asked.turns, shown=shown,
                                       journal=_RunJournal(run, live=follower is not None),
                                       first=asked.first, first_shown=follower is not None,
                                       llm=self._model(asked))
        total = (self._clock.monotonic() - started) * 1000

        async def save(tx: Tx) -> dict[str, Any]:
            record = self._record(asked, outcome, total)
            staging: Staging = tx
            if asked.tenant is not None:
                staging = PrefixStaging(tx, tenant_prefix(asked.tenant))
            for key, value in _history_puts([record]).items():
                staging.put(key, value)
            return {"at": record["at"]}

        await run.step("save the turn", save)
        outcome.saved = True
        return outcome

    def _model(self, asked: Asked) -> ToolLlm | None:
        # A resumed run whose model this host lacks (the local one not loaded yet) is asked
        # by the loop's own model: the steps already taken stand either way.
        return self._models(asked.model) if asked.model is not None else None

    def _record(self, asked: Asked, outcome: LoopOutcome, total_ms: float) -> dict[str, Any]:
        """The turn's history record, as the pipeline writes every other one."""
        cited = [*self._cite(outcome.text, asked.passages, asked.scores),
                 *tool_sources(outcome.calls)]
        return {"id": asked.request_id, "question": asked.question, "answer": outcome.text,
                "route": asked.route, "citations": [asdict(replace(c, score=round(c.score, 4)))
                                              for c in cited],
                "timings_ms": {"steps": outcome.steps, "model": round(outcome.model_ms, 3),
                               "tools": round(outcome.tool_ms, 3), "total": round(total_ms, 3)},
                "at": self._clock.wall(), "conversation": asked.conversation}


def _title(question: str) -> str:
    short = " ".join(question.split())
    return f"answer: {short[:77] + '...' if len(short) > 80 else short}"


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _as_agent_error(exc: BaseException) -> AgentError:
    if isinstance(exc, AgentError):
        return exc
    if isinstance(exc, (JobStopped, asyncio.CancelledError)):
        return AgentError(ErrorCode.CANCELLED, "the answer's run was cancelled or stopped")
    return AgentError(ErrorCode.INTERNAL, f"the answer's run failed: {type(exc).__name__}")


def _retrieved(done: asyncio.Future[LoopOutcome]) -> None:
    if not done.cancelled():
        done.exception()


def _ignore(event: Event) -> None:
    return None


__all__ = ["KIND", "Asked", "DurableLoops"]
