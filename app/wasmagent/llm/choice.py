"""Which model answers a question: the server's LLM, the browser's local model, or none.

An `Ask.mode` is a promise to the user about where the answer comes from:
- `extractive`: never a model; sentences cut from the best passages, cited.
- `local`: the local generative model when it is installed and loaded, else extractive. A
  model still loading is never waited for: the extractive answer comes at once.
- `llm`: the server's LLM (an error where there is none, as before).
- `auto`: the server's LLM when connected, else the local model when loaded, else extractive.

`choose(llm, mode)` is the whole rule, pure over `available()`: the router calls it to route,
the LLM worker to stream. `ChoiceLlm` is itself an `Llm` (what `auto` picks), so hosts that
hold one model slot keep one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..errors import UpstreamError
from ..ports import Llm, Turn
from ..protocol import PassageIn
from ..runtime.context import Context

__all__ = ["ChoiceLlm", "choose"]


class ChoiceLlm:
    """A server model and a local model behind one `Llm` slot; see the module docstring."""

    name = "choice"

    def __init__(self, server: Llm | None, local: Llm | None) -> None:
        self.server = server
        self.local = local

    def pick(self, mode: str) -> Llm | None:
        if mode == "extractive":
            return None
        if mode == "llm":
            return self.server
        local = self.local if self.local is not None and self.local.available() else None
        if mode == "local":
            return local
        if self.server is not None and self.server.available():
            return self.server
        return local

    def available(self) -> bool:
        return self.pick("auto") is not None

    def details(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.server is not None:
            found.update(self.server.details())
        if self.local is not None:
            found["local"] = {"name": self.local.name, "available": self.local.available(),
                              **self.local.details()}
        return found

    async def stream(self, question: str, passages: Sequence[PassageIn], ctx: Context, *,
                     turns: Sequence[Turn] = (), conversation: str | None = None
                     ) -> AsyncIterator[str]:
        chosen = self.pick("auto")
        if chosen is None:
            raise UpstreamError("no LLM is available: the server is not connected and the "
                                "local model is not loaded", retryable=False)
        async for piece in chosen.stream(question, passages, ctx, turns=turns,
                                         conversation=conversation):
            yield piece


def choose(llm: Llm | None, mode: str) -> Llm | None:
    """The model that answers a knowledge-base question asked in `mode`; None: extractive.
    `llm` mode names the server's model even while it is unavailable (its call then fails
    with a typed error instead of silently answering from elsewhere)."""
    if isinstance(llm, ChoiceLlm):
        return llm.pick(mode)
    if llm is None or mode in ("local", "extractive"):
        return None
    return llm if mode == "llm" or llm.available() else None
