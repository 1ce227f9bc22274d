"""The app's own questions of small mixed knowledge bases, natively: what the browser tests ask
of the shipped docs (plus a user's page or two) gets the expected first source, confidence and
words (tests/bench/eval/own_kb.py; the ranking's fit must pass it too)."""

from __future__ import annotations

from tests.bench.eval import own_kb


async def test_the_apps_own_questions_get_the_sources_the_browser_tests_expect() -> None:
    assert await own_kb.check() == []


def test_every_case_expects_something() -> None:
    for case in own_kb.CASES:
        assert case.first or case.cites or case.says or case.route, case
        assert case.kb in own_kb.KBS
    assert own_kb.default_sources(), "the build's list of the shipped knowledge base's files"
