"""What flows through the pipeline: one `Job` per question, carrying its context end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import AgentError
from ..protocol import Ask, Event, Source
from ..runtime.context import Context
from ..tenancy import Scope


class Route(StrEnum):
    """Where the router sends a question."""

    RETRIEVE = "retrieve"
    TOOL = "tool"
    CANNED = "canned"
    LLM = "llm"
    LOCAL_LLM = "local_llm"
    """Written by the local model in the browser (the `llm` route's worker, another model)."""
    FALLBACK = "llm_fallback"
    """The LLM failed; the answer is the local extractive one, with a notice saying so."""
    LOCAL_FALLBACK = "local_llm_fallback"
    """The local model failed (too slow on this device, most often): the same, in the browser."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A worker's answer before it is streamed: text, sources, and whether it is grounded."""

    text: str
    route: Route
    citations: tuple[Source, ...] = ()
    confident: bool = True
    detail: dict[str, Any] = field(default_factory=dict)
    streamed: bool = False
    """The worker already emitted the text as `delta` events (LLM tokens as they came)."""
    saved: bool = False
    """The worker already saved the turn's history record (a durable agent loop does)."""


@dataclass(slots=True)
class Job:
    """One question in flight. Stages fill in `embedding`, `route`, `tool_calls`, `by_meaning`
    and `reply`."""

    request: Ask
    ctx: Context
    emit: Callable[[Event], None]
    finished: asyncio.Future[None]
    started: float
    timings: dict[str, float] = field(default_factory=dict)
    embedding: Any = None
    by_meaning: bool | None = None
    """Whether the knowledge base was searched by meaning too (set by the search; None before)."""
    route: Route | None = None
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    canned: str | None = None
    intent: str | None = None
    reply: Reply | None = None
    saved: asyncio.Future[None] | None = None
    """Set once the answer is streamed: resolves when its history record is written."""
    scope: Scope | None = None
    """Whose knowledge bases the workers search and whose history the turn joins (set at the
    input edge); None: the workers' and the pipeline's own (one tenant, as in the browser)."""

    def fail(self, error: AgentError) -> None:
        """End the job with an error; the input edge turns it into the `error` event."""
        if not self.finished.done():
            self.finished.set_exception(error)

    def finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)
