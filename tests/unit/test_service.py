"""The assembled agent on the native host (real onnxruntime, SQLite): the CLI's path."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.aio import collect, of
from tests.support.documents import GUIDE, NOTES
from wasmagent.hosts.native import native_host
from wasmagent.protocol import Event
from wasmagent.service import Service

ROOT = Path(__file__).resolve().parents[2]

DOCS = [*GUIDE, NOTES]


def _service(store: str | Path = ":memory:") -> tuple[Service, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    host = native_host(store)
    service = Service(host, collect(events),
                      intent_labels=host.intent_labels)
    service.start()
    return service, events


async def test_ingest_ask_list_and_delete_through_the_protocol(tmp_path: Path) -> None:
    service, events = _service(tmp_path / "kb.sqlite")
    agent = service.agent
    agent.submit({"v": 1, "type": "ingest", "id": "i", "kb": "guide", "documents": DOCS})
    await agent.drain()
    result = of(events, "i")[-2]["data"]
    assert result["chunks_added"] == 4
    assert result["skipped"] == []
    assert any(e["type"] == "progress" for e in of(events, "i"))
    agent.submit({"v": 1, "type": "ask", "id": "a", "text": "does it work offline?",
                  "kb": "guide"})
    await agent.drain()
    answer = of(events, "a")[-2]
    assert "service worker" in answer["text"]
    assert answer["citations"][0]["source"] == "guide/faq.rst"
    assert answer["citations"][0]["anchor"] == "does-it-work-offline"
    agent.submit({"v": 1, "type": "kb.list", "id": "l"})
    await agent.drain()
    assert of(events, "l")[0]["data"]["kbs"] == [{"name": "guide", "chunks": 4, "sources": 3}]
    agent.submit({"v": 1, "type": "kb.delete", "id": "d", "kb": "guide"})
    agent.submit({"v": 1, "type": "kb.delete", "id": "d2", "kb": "nope"})
    await agent.drain()
    assert of(events, "d")[-1]["type"] == "done"
    assert of(events, "d2")[-1]["code"] == "not_found"
    assert await service.host.store.keys("kb/") == []  # type: ignore[union-attr]
    await service.aclose()


async def test_knowledge_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "kb.sqlite"
    first, _ = _service(db)
    await first.library.ingest("guide", [__import__("wasmagent.protocol").protocol.DocumentIn(
        **d) for d in DOCS])
    await first.aclose()
    second, events = _service(db)
    second.agent.submit({"v": 1, "type": "ask", "id": "a", "text": "what do I need to install?",
                         "kb": "guide"})
    await second.agent.drain()
    answer = of(events, "a")[-2]
    assert "Python 3.11" in answer["text"]
    await second.aclose()


async def test_cancelling_an_ingestion_keeps_what_was_committed(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    indexed = asyncio.Event()  # the first batch of passages is committed

    def sink(event: Event) -> None:
        events.append(event.to_wire())
        if "indexed" in (events[-1].get("message") or ""):
            indexed.set()

    host = native_host(tmp_path / "kb.sqlite")
    service = Service(host, sink, intent_labels=host.intent_labels)
    service.start()
    many = [{"source": f"doc{i}.md", "text": f"# Doc {i}\n\n" + f"Paragraph {i} about topic "
             f"number {i}. " * 30} for i in range(200)]
    service.agent.submit({"v": 1, "type": "ingest", "id": "i", "kb": "big", "documents": many})
    await asyncio.wait_for(indexed.wait(), 120)  # 120 s: a safety net
    service.agent.submit({"v": 1, "type": "cancel", "id": "c", "target": "i"})
    await service.agent.drain()
    assert of(events, "i")[-1]["code"] == "cancelled"
    kb = await service.library.get("big")
    assert 0 < len(kb) < 200 * 2
    meta = json.loads(await service.host.store.get("kb/big/meta"))  # type: ignore[union-attr]
    assert meta["chunks"] == len(kb), "the store agrees with memory"
    await service.aclose()


def test_cli_ingest_then_ask_json(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "install.md").write_text(DOCS[0]["text"])
    (docs / ".hidden").mkdir()
    (docs / ".hidden" / "secret.md").write_text("# Secret\n\nnever indexed words here")
    db = tmp_path / "kb.sqlite"
    run = [sys.executable, "-m", "wasmagent"]
    subprocess.run([*run, "ingest", str(docs), "--kb", str(db)], check=True,
                   capture_output=True, cwd=ROOT)
    out = subprocess.run([*run, "ask", "--kb", str(db), "what Node version do I need?", "--json"],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    answer = json.loads(out)
    assert set(answer) >= {"answer", "citations", "timings_ms"}
    assert "Node 20" in answer["answer"]
    citation = answer["citations"][0]
    assert citation["source"] == "sub/install.md"
    assert set(citation) == {"source", "title", "anchor", "score", "snippet"}


def _assert_quiet_broken_pipe(proc: subprocess.Popen[str], stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "BrokenPipeError" not in stderr, stderr
    assert proc.returncode == 141, (proc.returncode, stderr)  # 128 + SIGPIPE, like `yes | head`


def test_the_cli_exits_quietly_when_its_reader_leaves_early(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "wasmagent"]
    # `wasmagent embed ... | head -c 100`: 64 texts print ~250 KB of JSON, far more than a pipe
    # holds (64 KiB), so the CLI is still writing when the reader has gone.
    with subprocess.Popen([*run, "embed", *(f"text {n}" for n in range(64))], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.read(100).startswith('[{"text": "text 0"')
        proc.stdout.close()
        _, stderr = proc.communicate(timeout=120)  # a safety net: it exits at the next write
    _assert_quiet_broken_pipe(proc, stderr)
    # Commands that print little: the reader is gone before the first write.
    docs = tmp_path / "install.md"
    docs.write_text(DOCS[0]["text"])
    db = tmp_path / "kb.sqlite"
    subprocess.run([*run, "ingest", str(docs), "--kb", str(db)], check=True,
                   capture_output=True, cwd=ROOT)
    for args in (["ask", "--kb", str(db), "what Node version do I need?"],
                 ["ask", "--kb", str(db), "what Node version do I need?", "--json"],
                 ["ingest", str(docs), "--kb", str(db)],
                 ["export", "--kb", str(db), "--out", str(tmp_path / "kb.kv")],
                 ["token", "someone"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        with subprocess.Popen([*run, *args], cwd=ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, text=True) as proc:
            os.close(write_end)
            _, stderr = proc.communicate(timeout=120)
        _assert_quiet_broken_pipe(proc, stderr)


class FullStore:
    """A Store whose writes fail like an exhausted browser quota."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def put(self, key: str, value: bytes) -> None:
        from wasmagent.errors import AgentError, ErrorCode

        raise AgentError(ErrorCode.STORAGE, "QuotaExceededError: the quota has been exceeded")

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)

    async def keys(self, prefix: str = "") -> list[str]:
        return [k for k in self.data if k.startswith(prefix)]

    async def commit(self, puts: Any, deletes: Any = (), expect: Any = None) -> None:
        await self.put("", b"")


async def test_a_full_store_is_reported_and_answers_come_from_memory() -> None:
    events: list[dict[str, Any]] = []
    host = native_host(":memory:")
    host.store = FullStore()
    service = Service(host, collect(events),
                      intent_labels=host.intent_labels)
    service.start()
    service.agent.submit({"v": 1, "type": "ingest", "id": "i", "kb": "guide", "documents": DOCS})
    await service.agent.drain()
    error = of(events, "i")[-1]
    assert error["code"] == "storage_failed"
    assert "quota" in error["message"]
    service.agent.submit({"v": 1, "type": "ask", "id": "a", "text": "does it work offline?",
                          "kb": "guide"})
    await service.agent.drain()
    assert "service worker" in of(events, "a")[-2]["text"]
    await service.aclose()


def test_an_exported_knowledge_base_installs_elsewhere_under_its_own_name_only(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "faq.rst").write_text(DOCS[1]["text"])
    db = tmp_path / "kb.sqlite"
    out = tmp_path / "dist" / "kb" / "guide.kv"
    run = [sys.executable, "-m", "wasmagent"]
    subprocess.run([*run, "ingest", str(docs), "--kb", str(db), "--name", "guide"], check=True,
                   capture_output=True, cwd=ROOT)
    export = [*run, "export", "--kb", str(db), "--out", str(out)]
    printed = subprocess.run([*export, "--name", "guide"], check=True, capture_output=True,
                             text=True, cwd=ROOT).stdout
    assert json.loads(printed)["bytes"] == out.stat().st_size > 0
    missing = subprocess.run([*export, "--name", "nope"], check=False, capture_output=True,
                             text=True, cwd=ROOT)
    assert missing.returncode == 1
    assert "no knowledge base named 'nope'" in missing.stderr
    asyncio.run(_install(out.read_bytes()))


async def _install(dump: bytes) -> None:
    from wasmagent.errors import AgentError

    service, events = _service()
    with pytest.raises(AgentError, match="holds the key 'kb/guide/") as info:
        await service.seed("docs", dump)
    assert info.value.code.value == "not_found"
    assert await service.host.store.keys("kb/") == [], "nothing half installed"  # type: ignore[union-attr]
    assert await service.seed("guide", dump) is True
    assert await service.seed("guide", dump) is False, "installed once"
    service.agent.submit({"v": 1, "type": "ask", "id": "a", "text": "does it work offline?",
                          "kb": "guide"})
    await service.agent.drain()
    assert "service worker" in of(events, "a")[-2]["text"]
    await service.aclose()
