"""`RemoteLlm`: the browser's path to the agent server's LLM, over a `Link`.

The browser keeps retrieval local (the user's documents never leave it whole): it sends the
question with its own top passages as an `ask` in `llm` mode, and streams back the server's
`delta` events. A server `error` or a dropped connection becomes `UpstreamError`, so the LLM
worker can fall back to the local extractive answer.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import asdict
from typing import Any, Protocol, runtime_checkable

from ..errors import UpstreamError
from ..protocol import PROTOCOL_VERSION, PassageIn
from ..runtime.context import Context
from . import Turn


@runtime_checkable
class Link(Protocol):
    """A message connection to an agent server (the browser adapter: a WebSocket).

    `exchange(message)` sends one request and yields the server's events for its id, ending
    after the terminal one; it raises `UpstreamError` when the connection is down or drops.
    Closing the iterator early sends a `cancel` for the request.
    """

    def connected(self) -> bool: ...

    def exchange(self, message: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]: ...


class RemoteLlm:
    """The `Llm` seam over the agent server; see the module docstring."""

    name = "server"

    def __init__(self, link: Link) -> None:
        self._link = link
        self._ids = itertools.count(1)

    def available(self) -> bool:
        return self._link.connected()

    def details(self) -> dict[str, Any]:
        state = getattr(self._link, "state", None)
        return dict(state()) if callable(state) else {"connected": self._link.connected()}

    async def stream(self, question: str, passages: Sequence[PassageIn], ctx: Context, *,
                     turns: Sequence[Turn] = (), conversation: str | None = None
                     ) -> AsyncIterator[str]:
        rid = f"{ctx.request_id[:100]}~{next(self._ids)}"
        message: dict[str, object] = {"v": PROTOCOL_VERSION, "type": "ask", "id": rid,
                                      "text": question, "mode": "llm",
                                      "passages": [asdict(p) for p in passages]}
        if conversation is not None:  # the server keeps that conversation's turns itself
            message["conversation"] = conversation
        async with aclosing(ctx.stream(self._link.exchange(message))) as events:
            async for event in events:
                kind = event.get("type")
                if kind == "delta" and isinstance(event.get("text"), str):
                    yield event["text"]
                elif kind == "error":
                    raise UpstreamError(f"the server failed: {event.get('code')}: "
                                        f"{event.get('message')}", retryable=False)
                elif kind == "done":
                    return
        raise UpstreamError("the server closed the answer early")
