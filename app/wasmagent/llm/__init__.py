"""LLM answers: the OpenAI Chat Completions wire format, resilience, and the `Llm` seam.

`Llm` is what the pipeline's LLM worker streams from. Two implementations share it:
`OpenAIChat` (any OpenAI-compatible endpoint, through the host's `HttpStream` port — the
server) and `RemoteLlm` (the agent server, through a `Link` — the browser).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

from ..protocol import PassageIn
from ..runtime.context import Context

Turn = tuple[str, str]


@runtime_checkable
class Llm(Protocol):
    """Streams an answer to `question` grounded in `passages`, as text pieces in order.

    Raises `AgentError` (`upstream_failed`, `upstream_unavailable`, `deadline_exceeded`,
    `cancelled`) on failure, possibly after some pieces were already yielded.
    """

    name: str

    def available(self) -> bool:
        """Whether a call has a chance now (configured, connected, breaker not open)."""
        ...

    def details(self) -> dict[str, Any]:
        """Facts for `status` (connection state, breaker state...)."""
        ...

    def stream(self, question: str, passages: Sequence[PassageIn], ctx: Context, *,
               turns: Sequence[Turn] = (), conversation: str | None = None
               ) -> AsyncIterator[str]:
        """`turns` are the conversation's earlier (question, answer) pairs, oldest first; a
        client of a remote agent passes the `conversation` id on instead."""
        ...


__all__ = ["Llm", "Turn"]
