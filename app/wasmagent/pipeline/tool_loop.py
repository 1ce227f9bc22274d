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
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import AgentError, ErrorCode
from ..llm.wire import build_messages
from ..ports import Clock, ToolCallRequest, ToolLlm, Turn
from ..protocol import Delta, Event, PassageIn, ToolCalled, ToolReturned
from ..runtime.context import Context
from ..tools import ToolRegistry

MAX_STEPS = 6
TOOL_PROMPT = (
    " You can call the tools you are given when a question needs them (arithmetic, dates, "
    "the site's own tools); use their results, and say what you computed.")


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


class ToolLoop:
    """Runs the loop for one request; see the module docstring."""

    def __init__(self, llm: ToolLlm, tools: ToolRegistry, clock: Clock, *,
                 max_steps: int = MAX_STEPS) -> None:
        self._llm = llm
        self._tools = tools
        self._clock = clock
        self._max_steps = max_steps

    async def run(self, request_id: str, question: str, passages: Sequence[PassageIn],
                  ctx: Context, emit: Callable[[Event], None], *, turns: Sequence[Turn] = (),
                  shown: list[str] | None = None) -> LoopOutcome:
        """`shown` collects every delta as it is emitted: a caller that handles a failure
        mid-loop still knows what the user has already read."""
        messages: list[dict[str, Any]] = list(build_messages(question, passages, turns))
        messages[0] = {**messages[0], "content": messages[0]["content"] + TOOL_PROMPT}
        specs = self._tools.describe()
        outcome = LoopOutcome("", 0)
        shown = [] if shown is None else shown
        while outcome.steps < self._max_steps:
            outcome.steps += 1
            started = self._clock.monotonic()
            text, calls = await self._turn(messages, specs, ctx, request_id, emit, shown)
            outcome.model_ms += (self._clock.monotonic() - started) * 1000
            if not calls:
                outcome.text = "".join(shown)
                return outcome
            messages.append(_assistant(text, calls))
            for call in calls:
                emit(ToolCalled(request_id, call.id, call.name, call.arguments, outcome.steps))
            started = self._clock.monotonic()
            steps = await asyncio.gather(*(self._call(call, ctx) for call in calls))
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

    async def _turn(self, messages: Sequence[Mapping[str, Any]], specs: Sequence[Any],
                    ctx: Context, request_id: str, emit: Callable[[Event], None],
                    shown: list[str]) -> tuple[str, list[ToolCallRequest]]:
        text: list[str] = []
        calls: list[ToolCallRequest] = []
        async for part in self._llm.chat(messages, specs, ctx):
            if isinstance(part, ToolCallRequest):
                calls.append(part)
            else:
                text.append(part)
                shown.append(part)
                emit(Delta(request_id, part))
        return "".join(text), calls

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
