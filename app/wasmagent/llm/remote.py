"""`RemoteLlm`: the browser's path to the agent server's LLM, over a `Link`.

The browser keeps retrieval local (the user's documents never leave it whole): it sends the
question with its own top passages as an `ask` in `llm` mode, and streams back the server's
`delta` events. A server `error` or a dropped connection becomes `UpstreamError`, so the LLM
worker can fall back to the local extractive answer.

With tools, the browser runs the agent loop itself: `chat` relays one model turn at a time
(`llm.chat`), and the model's tool calls come back to run here, in the visitor's browser.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from ..errors import UpstreamError
from ..ports import Link, ToolCallRequest, Turn
from ..protocol import Ask, LlmChat, PassageIn
from ..runtime.context import Context
from .wire import text_parts

__all__ = ["Link", "RemoteLlm"]


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

    def stream(self, question: str, passages: Sequence[PassageIn], ctx: Context, *,
               turns: Sequence[Turn] = (), conversation: str | None = None
               ) -> AsyncIterator[str]:
        # The server keeps the conversation's turns itself: its id is enough.
        message = Ask(self._id(ctx), question, mode="llm", passages=list(passages),
                      conversation=conversation)
        return text_parts(self._parts(message, ctx))

    def chat(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
             ctx: Context) -> AsyncIterator[str | ToolCallRequest]:
        """One turn of the server's model, offered this browser's tools (`llm.chat`): the
        tools run here, never on the server."""
        message = LlmChat(self._id(ctx), [dict(m) for m in messages],
                          [dict(t) for t in tools] or None)
        return self._parts(message, ctx)

    def _id(self, ctx: Context) -> str:
        return f"{ctx.request_id[:100]}~{next(self._ids)}"

    async def _parts(self, message: Ask | LlmChat, ctx: Context
                     ) -> AsyncGenerator[str | ToolCallRequest, None]:
        """The answer's text pieces and tool calls as the server streams them; its `error`,
        or an answer cut short, is an `UpstreamError`."""
        async with aclosing(ctx.stream(self._link.exchange(message.to_wire()))) as events:
            async for event in events:
                kind = event.get("type")
                if kind == "delta" and isinstance(event.get("text"), str):
                    yield event["text"]
                elif kind == "tool_call":
                    yield ToolCallRequest(str(event.get("call_id", "")),
                                          str(event.get("name", "")),
                                          str(event.get("arguments", "{}")))
                elif kind == "error":
                    raise UpstreamError(f"the server failed: {event.get('code')}: "
                                        f"{event.get('message')}", retryable=False)
                elif kind == "done":
                    return
        raise UpstreamError("the server closed the answer early")
