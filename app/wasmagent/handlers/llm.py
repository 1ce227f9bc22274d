"""`llm.chat`: one turn of this host's LLM for a client that runs the agent loop itself.

The browser keeps the loop, and so its tools (a site owner's included), on its side: the
server only relays the model, offered the tools the browser names. Text comes back as
`delta` events, tool calls as `tool_call` events; nothing the model asks for runs here.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ports import Clock, ToolLlm
from ..protocol import Delta, Event, LlmChat, ToolCalled
from ..runtime.context import Context


class LlmRelay:
    def __init__(self, llm: ToolLlm, clock: Clock, timeout_s: float) -> None:
        self._llm = llm
        self._clock = clock
        self._timeout = timeout_s

    async def chat(self, request: LlmChat, emit: Callable[[Event], None]) -> None:
        ctx = Context(request.id, timeout=self._timeout, clock=self._clock)
        async for part in self._llm.chat(request.messages, request.tools or [], ctx):
            if isinstance(part, str):
                emit(Delta(request.id, part))
            else:
                emit(ToolCalled(request.id, part.id, part.name, part.arguments, 1))
