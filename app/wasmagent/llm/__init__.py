"""LLM answers: the OpenAI Chat Completions wire format, resilience, and the server link.

The pipeline's LLM worker streams from the `Llm` port (`wasmagent.ports`). Two
implementations: `OpenAIChat` (any OpenAI-compatible endpoint, through the host's `HttpStream`
port — the server) and `RemoteLlm` (the agent server, through a `Link` — the browser).
"""

from __future__ import annotations

from ..ports import Llm, Turn

__all__ = ["Llm", "Turn"]
