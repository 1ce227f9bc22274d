"""A model that fails mid-answer (most often the local one, too slow on a busy device): what
was shown stays, a notice says why, and the answer goes on without it — from what its tools
already found, else from the documents — labelled with a route that names which model failed.
Plain test functions: the same file runs in Pyodide.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from tests.unit.test_json_tools import Decoder, pieces
from tests.unit.test_local_tool_routing import Local, job, worker
from wasmagent.errors import UpstreamError
from wasmagent.pipeline.jobs import Route

SLOW = "<too slow>"


class Slow(Decoder):
    """Replies as scripted; `SLOW` fails the turn as the browser host does at its deadline."""

    async def generate(self, plain: list[dict[str, str]], grammar: str | None
                       ) -> AsyncGenerator[str, None]:
        self.seen.append((plain, grammar))
        reply = self.replies.pop(0)
        if reply == SLOW:
            raise UpstreamError("the local model is too slow on this device to answer in time",
                                retryable=False)
        for piece in pieces(reply, len(self.seen)):
            yield piece


async def test_after_its_tools_ran_a_failing_model_leaves_an_answer_made_of_their_results(
) -> None:
    local = Local(Slow({"tool_calls": [
        {"name": "calculator", "arguments": {"expression": "17 * 23"}},
        {"name": "calculator", "arguments": {"expression": "2340 * 0.175"}}]}, SLOW))
    events: list[dict[str, Any]] = []
    reply = await worker(local)(job("what is 17 times 23, and 17.5% of 2,340?", "tool",
                                    events=events))
    assert reply.route is Route.LOCAL_FALLBACK
    assert "too slow on this device" in reply.text
    assert reply.text.endswith("What its tools found:]\n\n"
                               "- calculator(17 * 23): 17 * 23 = 391\n"
                               "- calculator(2340 * 0.175): 2340 * 0.175 = 409.5")
    assert [c.source for c in reply.citations] == ["tool:calculator", "tool:calculator"]
    assert reply.confident
    shown = "".join(e["text"] for e in events if e["type"] == "delta")
    assert shown == reply.text, "the notice and the results stream like any answer"


async def test_without_tool_results_it_answers_from_the_documents_and_says_which_model_failed(
) -> None:
    local = Local(Slow(SLOW))
    reply = await worker(local)(job("what is the meaning of the boot progress bar?", "tool"))
    assert reply.route is Route.LOCAL_FALLBACK
    assert "[The local LLM failed (upstream_failed: the local model is too slow" in reply.text
    assert "Answer from the local documents instead:]" in reply.text
