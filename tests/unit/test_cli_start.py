"""How `python -m wasmagent ask` starts (issue 19: a question in ≤ 300 ms, process start
included): it imports none of what a one-shot question never uses (the protocol's JSON Schema
and the widget's messages, the LLM client and the LLM worker, the server, aiohttp), and the
program (not a caller of `main` in its own process) runs the question without the cyclic
garbage collector."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from tests.support.processes import imported_by_ask
from wasmagent.hosts import cli

ROOT = Path(__file__).resolve().parents[2]
NOT_IMPORTED = ("wasmagent.protocol.schema", "wasmagent.protocol.widget",
                "wasmagent.pipeline.llm_worker", "wasmagent.llm.remote",
                "wasmagent.hosts.server", "wasmagent.knowledge.dump", "aiohttp")


def test_an_ask_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    imported, stderr = imported_by_ask(tmp_path / "kb.sqlite", "how do I read a file?")
    # The whole path ran: the service, the native host and the knowledge base code.
    assert {"wasmagent.service", "wasmagent.hosts.native", "wasmagent.knowledge.kb"} <= imported
    assert not [m for m in imported if m.startswith(NOT_IMPORTED)], stderr


@pytest.fixture
def collector() -> object:
    enabled = gc.isenabled()
    yield None
    if enabled:
        gc.enable()


def test_the_program_asks_without_the_garbage_collector(tmp_path: Path,
                                                          collector: object) -> None:
    missing = str(tmp_path / "no-such-dir" / "kb.sqlite")
    gc.enable()
    assert cli.main(["ask", "--kb", missing, "anything?"]) == 2
    assert gc.isenabled()  # a caller in its own process keeps its collector
    assert cli._main(["ask", "--kb", missing, "anything?"], program=True) == (2, True)
    assert not gc.isenabled()
    gc.enable()
    # Commands whose work grows with their input keep it.
    assert cli._main(["ingest", str(tmp_path / "none"), "--kb", str(tmp_path / "k.sqlite")],
                     program=True) == (2, True)
    assert gc.isenabled()
