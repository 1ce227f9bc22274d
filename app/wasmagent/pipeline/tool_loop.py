"""The agent loop: a model that decides which tools to call, until it can answer.

question + passages -> model -> tool calls -> run them -> results back to the model -> ... ->
final answer. Pure over ports: the model is a `ToolLlm`, the tools a `ToolRegistry`, time a
`Clock`; events go out through `emit`.

- Each step streams the model's text as `delta` events; the tool calls it asks for are shown
  as `tool_call` events and run at the same time, each under the request's context (its
  deadline and cancellation), their arguments checked by the registry before anything runs.
- A failing call (unknown tool, arguments that are not JSON or do not fit the schema, a tool
  that raises) goes back to the model as that call's result, saying what was wrong: the model
  may correct itself; the request does not fail.
- The loop ends when the model answers without calling a tool, or after `max_steps` model
  turns: then the answer says so and lists what the tools established.
- Given a `Journal` (`durable_loop.py` passes one backed by a workflow run), every model turn
  (its text and tool calls) and every call's result is a journaled step: a run resumed after
  a crash replays them (the replayed text is shown again, as deltas) instead of asking the
  model or running the tools again. The calls of one turn still run at the same time; the
  journal being a sequence, their results are recorded in call order, each once it and the
  ones before it are known. A call of a tool declared `idempotent=False` first records that
  it started; a resumed run that finds that record without the call's result never runs it
  again: the model (and the user, through `tool_result`, ok false) are told it was
  interrupted and its outcome is unknown. Other calls without a recorded result simply run
  again.
- A run can start from a turn already taken (`open_turn`, then `run(first=...)`): most answers
  call no tool, and those need no journal at all; a durable run begins only once the model
  asks for a tool, with that first turn as its first step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import AgentError, ErrorCode
from ..llm.wire import build_messages
from ..ports import Clock, ToolCallRequest, ToolLlm, Turn
from ..protocol import Delta, Event, PassageIn, Source, ToolCalled, ToolReturned
from ..runtime.context import Context
from ..tools import ToolRegistry

MAX_STEPS = 6
TOOL_PROMPT = (
    " You can call the tools you are given when a question needs them (arithmetic, dates, "
    "the site's own tools); use their results, and say what you computed.")


INTERRUPTED = ("interrupted: {name} was started by a run that stopped before its result was "
               "recorded. It was not run again, because it must not run twice, and whether it "
               "took effect is unknown: do not assume it did; tell the user.")


class Journal(Protocol):
    """Where a durable loop records its steps (`durable_loop.py` adapts a workflow `Run`)."""

    @property
    def replaying(self) -> bool:
        """Whether the next `step` comes from the journal rather than running."""
        ...

    async def step(self, name: str, fn: Callable[[], Awaitable[Any]], *,
                   retry: bool | Callable[[AgentError], bool] = True) -> Any:
        """Replay the next step if it is recorded, else run `fn` and record its (JSON)
        result; `retry` False (or a function of the error saying False) never runs `fn`
        again."""
        ...


@dataclass(slots=True)
class Step:
    """One tool call of the loop and its outcome."""

    call: ToolCallRequest
    ok: bool
    text: str
    ms: float


@dataclass(slots=True)
class LoopOutcome:
    text: str
    """The final answer as the user saw it (every streamed delta, in order)."""
    steps: int
    """Model turns taken."""
    calls: list[Step] = field(default_factory=list)
    model_ms: float = 0.0
    tool_ms: float = 0.0
    finished: bool = True
    """False when the step limit ended the loop."""
    saved: bool = False
    """True when the run itself saved the turn in the history (a durable run does)."""


class ToolLoop:
    """Runs the loop for one request; see the module docstring."""

    def __init__(self, llm: ToolLlm, tools: ToolRegistry, clock: Clock, *,
                 max_steps: int = MAX_STEPS) -> None:
        self._llm = llm
        self._tools = tools
        self._clock = clock
        self._max_steps = max_steps

    @property
    def max_steps(self) -> int:
        return self._max_steps

    async def open_turn(self, request_id: str, question: str, passages: Sequence[PassageIn],
                        ctx: Context, emit: Callable[[Event], None], *,
                        turns: Sequence[Turn] = (), shown: list[str], llm: ToolLlm | None = None
                        ) -> tuple[dict[str, Any], float]:
        """The loop's first model turn, streamed as `run` streams it, outside any journal:
        the turn as a journal records it (`{"text", "calls"}`) and the model's ms. A turn
        with calls continues as `run(first=turn, first_shown=True)`. `llm`: the model that
        decides, if not the loop's own (a host may hold a server model and a local one)."""
        started = self._clock.monotonic()
        text, calls = await self._turn(llm or self._llm, _messages(question, passages, turns),
                                       self._tools.describe(), ctx, request_id, emit, shown)
        return self._recorded(text, calls), (self._clock.monotonic() - started) * 1000

    async def run(self, request_id: str, question: str, passages: Sequence[PassageIn],
                  ctx: Context, emit: Callable[[Event], None], *, turns: Sequence[Turn] = (),
                  shown: list[str] | None = None, journal: Journal | None = None,
                  first: Mapping[str, Any] | None = None, first_shown: bool = False,
                  llm: ToolLlm | None = None) -> LoopOutcome:
        """`shown` collects every delta as it is emitted: a caller that handles a failure
        mid-loop still knows what the user has already read. With a `journal`, the loop is
        durable (see the module docstring). `first`: the first turn, already taken
        (`open_turn`), its text already in `shown` and streamed if `first_shown`."""
        messages = _messages(question, passages, turns)
        specs = self._tools.describe()
        model = llm or self._llm
        outcome = LoopOutcome("", 0)
        shown = [] if shown is None else shown
        while outcome.steps < self._max_steps:
            outcome.steps += 1
            started = self._clock.monotonic()
            given = first if outcome.steps == 1 else None
            once: list[bool] = []
            if journal is not None:
                text, calls, once = await self._journaled_turn(
                    journal, outcome.steps, model, messages, specs, ctx, request_id, emit,
                    shown, given=given, given_shown=first_shown)
            elif given is not None:
                text, calls, once = _from_record(given)
                if not first_shown:
                    _show(text, shown, emit, request_id)
            else:
                text, calls = await self._turn(model, messages, specs, ctx, request_id, emit,
                                               shown)
            outcome.model_ms += (self._clock.monotonic() - started) * 1000
            if not calls:
                outcome.text = "".join(shown)
                return outcome
            messages.append(_assistant(text, calls))
            for call in calls:
                emit(ToolCalled(request_id, call.id, call.name, call.arguments, outcome.steps))
            started = self._clock.monotonic()
            if journal is None:
                steps = await asyncio.gather(*(self._call(call, ctx) for call in calls))
            else:
                steps = await self._journaled_calls(journal, calls, once, ctx)
            outcome.tool_ms += (self._clock.monotonic() - started) * 1000
            for step in steps:
                outcome.calls.append(step)
                emit(ToolReturned(request_id, step.call.id, step.call.name, step.ok, step.text,
                                  round(step.ms, 3)))
                messages.append({"role": "tool", "tool_call_id": step.call.id,
                                 "content": step.text})
        outcome.finished = False
        ending = _unfinished(outcome, bool(shown))
        shown.append(ending)
        emit(Delta(request_id, ending))
        outcome.text = "".join(shown)
        return outcome

    async def _turn(self, llm: ToolLlm, messages: Sequence[Mapping[str, Any]],
                    specs: Sequence[Any], ctx: Context, request_id: str,
                    emit: Callable[[Event], None], shown: list[str]
                    ) -> tuple[str, list[ToolCallRequest]]:
        text: list[str] = []
        calls: list[ToolCallRequest] = []
        async for part in llm.chat(messages, specs, ctx):
            if isinstance(part, ToolCallRequest):
                calls.append(part)
            else:
                text.append(part)
                shown.append(part)
                emit(Delta(request_id, part))
        return "".join(text), calls

    async def _journaled_turn(self, journal: Journal, n: int, llm: ToolLlm,
                              messages: Sequence[Mapping[str, Any]], specs: Sequence[Any],
                              ctx: Context, request_id: str, emit: Callable[[Event], None],
                              shown: list[str], *, given: Mapping[str, Any] | None = None,
                              given_shown: bool = False
                              ) -> tuple[str, list[ToolCallRequest], list[bool]]:
        """The turn's text and calls, each call with whether it must never run twice."""
        replayed = journal.replaying
        mark = len(shown)

        async def turn() -> Mapping[str, Any]:
            if given is not None:
                return given
            text, calls = await self._turn(llm, messages, specs, ctx, request_id, emit,
                                           shown)
            return self._recorded(text, calls)

        # A turn that failed before showing anything may be asked again (a resumed run may
        # start before the model's link is up); once its text has streamed it is not: a
        # failed turn then ends the loop, as it does without a journal.
        done = await journal.step(f"turn {n}", turn, retry=lambda exc: len(shown) == mark)
        text, calls, once = _from_record(done)
        # The answer must still read as the user would have seen it.
        if replayed or (given is not None and not given_shown):
            _show(text, shown, emit, request_id)
        return text, calls, once

    def _recorded(self, text: str, calls: Sequence[ToolCallRequest]) -> dict[str, Any]:
        # Whether each call may run twice is recorded with it: a resumed run must walk the
        # same steps even if the tools were registered differently by then.
        return {"text": text, "calls": [[c.id, c.name, c.arguments, self._once(c.name)]
                                        for c in calls]}

    def _once(self, name: str) -> bool:
        tool = self._tools.get(name)
        return tool is not None and not tool.idempotent

    async def _journaled_calls(self, journal: Journal, calls: Sequence[ToolCallRequest],
                               once: Sequence[bool], ctx: Context) -> list[Step]:
        """The turn's calls, run at the same time, their results journaled in call order.

        A call that must not run twice records that it started before any call runs; a
        result is recorded once it and every result before it are known. So a resumed run
        replays the recorded results, runs again the idempotent calls without one, and never
        runs again a started non-idempotent call without one (it is reported interrupted,
        even if it had finished while an earlier call was still running: its outcome is
        then unknown to the journal, and saying so is the honest answer)."""
        started_before = []
        for call, o in zip(calls, once, strict=True):
            started_before.append(o and journal.replaying)
            if o:
                await journal.step(f"start {call.id}", _started(call), retry=False)
        tasks: dict[int, asyncio.Task[Step]] = {}
        steps: list[Step] = []
        try:
            for i, (call, o) in enumerate(zip(calls, once, strict=True)):
                if not journal.replaying and not tasks:
                    # The journal ends here: every call from this one on runs now, together.
                    tasks = {j: asyncio.ensure_future(self._call_once(c, ctx, interrupted))
                             for j, c in enumerate(calls) if j >= i
                             for interrupted in [started_before[j]]}
                steps.append(await self._journaled_result(journal, call, o, tasks.get(i)))
        finally:
            for task in tasks.values():
                task.cancel()
        return steps

    async def _journaled_result(self, journal: Journal, call: ToolCallRequest, once: bool,
                                running: asyncio.Task[Step] | None) -> Step:
        async def result() -> dict[str, Any]:
            if running is None:  # (a recorded result is replayed without calling this)
                raise AgentError(ErrorCode.INTERNAL, f"{call.id}: no result and no run")
            step = await running
            return {"ok": step.ok, "text": step.text, "ms": step.ms}

        done = await journal.step(f"call {call.id}", result, retry=not once)
        return Step(call, bool(done["ok"]), str(done["text"]), float(done["ms"]))

    async def _call_once(self, call: ToolCallRequest, ctx: Context, interrupted: bool) -> Step:
        if interrupted:
            return Step(call, False, INTERRUPTED.format(name=call.name), 0.0)
        return await self._call(call, ctx)

    async def _call(self, call: ToolCallRequest, ctx: Context) -> Step:
        started = self._clock.monotonic()
        try:
            args = _arguments(call)
            result = await ctx.run(self._tools.call(call.name, args))
            ok, text = True, result.text
        except AgentError as exc:
            if ctx.done:
                raise  # the request's own cancellation or deadline: the loop ends with it
            ok, text = False, f"error ({exc.code.value}): {exc.message}"
        return Step(call, ok, text, (self._clock.monotonic() - started) * 1000)


def tool_sources(steps: Sequence[Step]) -> tuple[Source, ...]:
    """The tool results an answer builds on, citable beside its passages: one source per
    call that succeeded (`tool:<name>`, titled as the call reads, its result as the snippet),
    the same call once."""
    found: dict[tuple[str, str], Source] = {}
    for step in steps:
        key = (step.call.name, step.call.arguments)
        if step.ok and key not in found:
            found[key] = Source(f"tool:{step.call.name}", _shown(step.call), "", 1.0,
                                step.text[:300])
    return tuple(found.values())


def _shown(call: ToolCallRequest) -> str:
    """`calculator(17 * 23)`, `days_between(start='2026-01-01', end='2026-12-25')`."""
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError:
        return f"{call.name}({call.arguments})"
    if isinstance(args, dict) and len(args) == 1:
        return f"{call.name}({next(iter(args.values()))})"
    if isinstance(args, dict):
        return f"{call.name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
    return f"{call.name}({call.arguments})"


def _messages(question: str, passages: Sequence[PassageIn], turns: Sequence[Turn]
              ) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = list(build_messages(question, passages, turns))
    messages[0] = {**messages[0], "content": messages[0]["content"] + TOOL_PROMPT}
    return messages


def _from_record(turn: Mapping[str, Any]) -> tuple[str, list[ToolCallRequest], list[bool]]:
    calls = [ToolCallRequest(cid, name, args) for cid, name, args, _ in turn["calls"]]
    return str(turn["text"]), calls, [bool(c[3]) for c in turn["calls"]]


def _show(text: str, shown: list[str], emit: Callable[[Event], None], request_id: str) -> None:
    if text:
        shown.append(text)
        emit(Delta(request_id, text))


def _started(call: ToolCallRequest) -> Callable[[], Awaitable[Any]]:
    async def started() -> dict[str, Any]:
        return {"tool": call.name}
    return started


def _arguments(call: ToolCallRequest) -> dict[str, Any]:
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError:
        raise AgentError(ErrorCode.TOOL_ARGS, f"{call.name}: the arguments are not valid JSON: "
                         f"{call.arguments[:200]!r}") from None
    if not isinstance(args, dict):
        raise AgentError(ErrorCode.TOOL_ARGS, f"{call.name}: the arguments must be a JSON object")
    return args


def _assistant(text: str, calls: Sequence[ToolCallRequest]) -> dict[str, Any]:
    return {"role": "assistant", "content": text or None,
            "tool_calls": [{"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}}
                           for c in calls]}


def _unfinished(outcome: LoopOutcome, said: bool) -> str:
    found = [f"- {s.call.name}: {s.text}" for s in outcome.calls if s.ok]
    lead = "\n\n" if said else ""
    summary = ("\nWhat the tools established:\n" + "\n".join(found)) if found else ""
    return (f"{lead}[I stopped after {outcome.steps} steps without a final answer.]"
            f"{summary}")
