"""Whether a question is about one of the site owner's own tools, judged by meaning.

The intent head was trained on the built-in tools (arithmetic, dates) and has never seen a
site's own (`order_status`, `shipping_cost`): it calls questions for them out of scope, and
they would get the canned "I can't help with that". A question whose embedding is close to
an owner tool's description (its name and docstring) is instead treated as a tool question,
so a model that can call tools decides (the agent loop). Measured with MiniLM: questions for
an owner tool scored 0.52-0.66 against its description, documentation questions at most 0.48
against any tool's, hence `NEAR`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..inference.embedder import Embedder, Vector
    from ..runtime.context import Context
    from ..tools.registry import Tool

NEAR = 0.5


class ToolMatch:
    """How close a question is to the closest owner tool; see the module docstring."""

    def __init__(self, embedder: Embedder, tools: Callable[[], Sequence[Tool]]) -> None:
        self._embedder = embedder
        self._tools = tools
        self._key: tuple[tuple[str, str], ...] = ()
        self._vectors: list[Vector] = []

    async def closeness(self, question: Vector, ctx: Context | None = None) -> float:
        """The best cosine between the question and an owner tool's description (0 when
        there is none). Raises `AgentError` when the descriptions cannot be embedded."""
        tools = self._tools()
        key = tuple((t.name, t.description) for t in tools)
        if key != self._key:
            # Embedded once per set of tools: files load rarely, questions come often.
            texts = [f"{t.name.replace('_', ' ')}: {t.description}" for t in tools]
            self._vectors = await self._embedder.embed(texts, ctx=ctx) if texts else []
            self._key = key
        # Vectors are unit length (MiniLM's output is normalised): a dot product is the cosine.
        return max((sum(a * b for a, b in zip(question, v, strict=True))
                    for v in self._vectors), default=0.0)
