"""Which model answers for each `Ask.mode`: the user's choice, honoured whatever is connected.

Runs in CPython and in Pyodide (tests/pyodide/core_tests.txt). The models are scripted `Llm`s
whose availability the tests set: what is under test is the choice, not a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from wasmagent.errors import UpstreamError
from wasmagent.llm.choice import ChoiceLlm, choose
from wasmagent.ports import Turn
from wasmagent.protocol import ASK_MODES, Ask, PassageIn
from wasmagent.runtime.context import Context


class Scripted:
    def __init__(self, name: str, up: bool) -> None:
        self.name = name
        self.up = up

    def available(self) -> bool:
        return self.up

    def details(self) -> dict[str, Any]:
        return {"up": self.up}

    async def stream(self, question: str, passages: Sequence[PassageIn], ctx: Context, *,
                     turns: Sequence[Turn] = (), conversation: str | None = None
                     ) -> AsyncIterator[str]:
        yield f"{self.name} says [1]"


def picked(server_up: bool, local_up: bool, mode: str) -> str | None:
    llm = ChoiceLlm(Scripted("server", server_up), Scripted("local", local_up))
    chosen = choose(llm, mode)
    return None if chosen is None else chosen.name


def test_extractive_is_a_mode_of_the_protocol() -> None:
    assert "extractive" in ASK_MODES
    assert Ask("a", "hi", mode="extractive").mode == "extractive"


def test_extractive_never_uses_a_model() -> None:
    for server_up in (True, False):
        for local_up in (True, False):
            assert picked(server_up, local_up, "extractive") is None


def test_local_uses_the_local_model_only_once_it_is_loaded() -> None:
    assert picked(True, True, "local") == "local"
    assert picked(True, False, "local") is None, "still loading: the extract comes at once"


def test_auto_prefers_the_server_then_the_local_model_then_extracts() -> None:
    assert picked(True, True, "auto") == "server"
    assert picked(False, True, "auto") == "local"
    assert picked(False, False, "auto") is None


def test_llm_mode_names_the_server_even_when_it_is_down() -> None:
    # Its call then fails with a typed error rather than silently answering from elsewhere.
    assert picked(False, True, "llm") == "server"


def test_a_plain_llm_keeps_the_old_rules() -> None:
    server = Scripted("server", True)
    assert choose(server, "auto") is server
    assert choose(server, "local") is None
    assert choose(Scripted("server", False), "auto") is None
    assert choose(None, "auto") is None


async def test_the_choice_streams_from_what_auto_picks_and_reports_both() -> None:
    llm = ChoiceLlm(Scripted("server", False), Scripted("local", True))
    assert [p async for p in llm.stream("q", [], Context(request_id="r"))] == ["local says [1]"]
    details = ChoiceLlm(Scripted("server", False), Scripted("local", True)).details()
    assert details["local"] == {"name": "local", "available": True, "up": True}


async def test_with_nothing_available_the_choice_fails_typed() -> None:
    llm = ChoiceLlm(Scripted("server", False), None)
    with pytest.raises(UpstreamError):
        async for _ in llm.stream("q", [], Context(request_id="r")):
            pass
