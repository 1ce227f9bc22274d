"""The fixed part of a tool-calling model double: tests script only its `chat`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


class ChatModel:
    """Always available, no details, and never asked for a plain `stream` (the agent loop
    uses `chat`); subclasses give `name` and `chat`."""

    name = "chat-model"

    def available(self) -> bool:
        return True

    def details(self) -> dict[str, Any]:
        return {}

    def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
        raise AssertionError("the loop uses chat()")
