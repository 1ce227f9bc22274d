"""`tools.load`: a site owner's tools and routing rules, from Python source (browser only:
owner code runs in the visitor's own browser, never on a shared server)."""

from __future__ import annotations

from collections.abc import Callable

from ..protocol import Event, Result, ToolsLoad
from ..tools.owner import SiteTools


class ToolLoading:
    def __init__(self, site_tools: SiteTools) -> None:
        self._site_tools = site_tools

    async def load(self, request: ToolsLoad, emit: Callable[[Event], None]) -> None:
        loaded = await self._site_tools.load(request.code, request.source)
        emit(Result(request.id, {"source": loaded.source,
                                 "tools": [t.name for t in loaded.tools],
                                 "routes": len(loaded.rules)}))
