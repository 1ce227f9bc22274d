"""The Python session API (what a PyScript page or a script uses): plain functions, so the
same file runs in Pyodide."""

from __future__ import annotations

import asyncio

import pytest

from wasmagent.errors import AgentError
from wasmagent.ports import Host, LoopClock, MemoryStore
from wasmagent.protocol import DocumentIn
from wasmagent.service import Service
from wasmagent.session import Session

DOCS = [DocumentIn("guide/offline.md", "# Offline\n\nAfter the first visit a service worker "
                   "keeps every file cached, so the app works offline.")]


async def _session() -> tuple[Service, Session]:
    service = Service(Host(name="test", clock=LoopClock(), store=MemoryStore()))
    service.start()
    return service, Session(service)


async def test_add_documents_then_ask_with_citations() -> None:
    service, session = await _session()
    try:
        report = await session.add_documents("guide", DOCS)
        assert report["chunks_added"] >= 1
        assert [kb["name"] for kb in await session.knowledge_bases()] == ["guide"]
        answer = await session.ask("does the app work offline?", kb="guide")
        assert "service worker" in answer["text"]
        assert answer["citations"][0]["source"] == "guide/offline.md"
        kinds = [e["type"] async for e in session.stream("does it work offline?", kb="guide")]
        assert kinds[-1] == "answer"
        assert "delta" in kinds
    finally:
        await service.aclose()


async def test_errors_are_raised_and_leaving_early_cancels() -> None:
    service, session = await _session()
    try:
        with pytest.raises(AgentError, match="no knowledge base"):
            await session.ask("anything?", kb="missing")
        await session.add_documents("guide", DOCS)
        stream = session.stream("does the app work offline?", kb="guide")
        first = await anext(stream)
        assert first["type"] in ("delta", "citation", "answer")
        await stream.aclose()  # the caller leaves: the request is cancelled, nothing leaks
        for _ in range(20):
            await asyncio.sleep(0)
        assert (await session.ask("does the app work offline?", kb="guide"))["text"]
    finally:
        await service.aclose()
