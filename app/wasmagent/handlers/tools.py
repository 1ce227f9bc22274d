"""`tools.load`: a site owner's tools and routing rules, from Python source (browser only:
owner code runs in the visitor's own browser, never on a shared server).

The result is `{source, tools, routes}`, plus `not_idempotent` (the names of the file's tools
declared `idempotent=False`) when there is any."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol import Event, Result, ToolsLoad
from ..tools.owner import SiteTools


class ToolLoading:
    def __init__(self, site_tools: SiteTools) -> None:
        self._site_tools = site_tools

    async def load(self, request: ToolsLoad, emit: Callable[[Event], None]) -> None:
        loaded = await self._site_tools.load(request.code, request.source)
        data: dict[str, Any] = {"source": loaded.source, "tools": [t.name for t in loaded.tools],
                                "routes": len(loaded.rules)}
        once = [t.name for t in loaded.tools if not t.idempotent]
        if once:
            data["not_idempotent"] = once
        emit(Result(request.id, data))
