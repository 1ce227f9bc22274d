"""A Python session on an agent: ask, stream events, add documents — without writing messages.

The small API for Python callers in the same process as the core (a PyScript page's worker,
a notebook, a script): each call is a protocol request submitted to an input edge of the
core, and its events come back as the protocol's own wire dictionaries.

    session = Session(service)
    answer = await session.ask("How do I install it?")        # the `answer` event
    async for event in session.stream("How do I install it?"):  # every event, as it comes
        ...
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import AgentError, ErrorCode
from .protocol import Ask, Cancel, DocumentIn, Event, Ingest, KbList, Message, Request

if TYPE_CHECKING:
    from .service import Service


class Session:
    """One caller's input edge onto `service`; see the module docstring."""

    def __init__(self, service: Service) -> None:
        self._queues: dict[str, asyncio.Queue[Event]] = {}
        self._agent = service.connect(self._deliver)
        self._ids = itertools.count(1)

    def _deliver(self, event: Event) -> None:
        queue = self._queues.get(event.id or "")
        if queue is not None:
            queue.put_nowait(event)

    async def request(self, message: Request | Message) -> AsyncIterator[dict[str, Any]]:
        """Send one request; its events as wire dictionaries up to the terminal one. An
        `error` event is raised as `AgentError`; leaving early cancels the request."""
        rid = message.to_wire()["id"]
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._queues[rid] = queue
        self._agent.submit(message.to_wire())
        finished = False
        try:
            while True:
                event = await queue.get()
                wire = event.to_wire()
                if event.TERMINAL:
                    finished = True
                    if wire["type"] == "error":
                        raise AgentError(ErrorCode(wire["code"]), wire["message"])
                    return
                yield wire
        finally:
            del self._queues[rid]
            if not finished:
                self._agent.submit(Cancel(f"{rid}~cancel", rid).to_wire())

    def _id(self) -> str:
        return f"py-{next(self._ids)}"

    def stream(self, text: str, *, kb: str | None = None, mode: str = "auto",
               top_k: int = 5) -> AsyncIterator[dict[str, Any]]:
        """Every event of one question: `delta`s, `citation`s, tool steps, the `answer`."""
        return self.request(Ask(self._id(), text, kb=kb, mode=mode, top_k=top_k))

    async def ask(self, text: str, *, kb: str | None = None, mode: str = "auto",
                  top_k: int = 5) -> dict[str, Any]:
        """The `answer` event of one question: `text`, `citations`, `confident`, `route`."""
        answer: dict[str, Any] | None = None
        async for event in self.stream(text, kb=kb, mode=mode, top_k=top_k):
            if event["type"] == "answer":
                answer = event
        if answer is None:
            raise AgentError(ErrorCode.INTERNAL, "the request ended without an answer")
        return answer

    async def add_documents(self, kb: str, documents: Sequence[DocumentIn]) -> dict[str, Any]:
        """Ingest `documents` into knowledge base `kb`; the job's report."""
        result: dict[str, Any] = {}
        async for event in self.request(Ingest(self._id(), kb, list(documents))):
            if event["type"] == "result":
                result = event["data"]
        return result

    async def knowledge_bases(self) -> list[dict[str, Any]]:
        async for event in self.request(KbList(self._id())):
            if event["type"] == "result":
                kbs: list[dict[str, Any]] = event["data"]["kbs"]
                return kbs
        return []
