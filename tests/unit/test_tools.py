"""Tools: schemas from type hints, clear argument errors, a calculator that cannot be abused."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from wasmagent.errors import AgentError, ErrorCode
from wasmagent.tools import (
    ToolRegistry,
    default_tools,
    evaluate,
    parse_tool_request,
    parse_tool_requests,
)


class FixedClock:
    """Tuesday 24 November 2026, 14:05:00 UTC."""

    def monotonic(self) -> float:
        return 0.0

    def wall(self) -> float:
        return 1795529100.0

    async def sleep(self, seconds: float) -> None:
        return None


def _registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def convert(amount: float, unit: Literal["km", "mi"], precise: bool = False,
                tags: list[str] | None = None) -> str:
        """Convert a distance.

        Args:
            amount: How far.
            unit: The unit to convert from.
        """
        return f"{amount} {unit}"

    @registry.tool(name="explode", description="Always fails.")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    return registry


def test_schema_is_derived_from_type_hints_and_docstring() -> None:
    (convert, explode) = _registry().describe()
    assert convert["name"] == "convert"
    assert convert["description"] == "Convert a distance."
    params = convert["parameters"]
    assert params["required"] == ["amount", "unit"]
    assert params["additionalProperties"] is False
    assert params["properties"]["amount"] == {"type": "number", "description": "How far."}
    assert params["properties"]["unit"]["enum"] == ["km", "mi"]
    assert params["properties"]["precise"]["type"] == "boolean"
    assert params["properties"]["tags"]["anyOf"][0] == {"type": "array",
                                                         "items": {"type": "string"}}
    assert explode["description"] == "Always fails."


async def test_bad_arguments_get_clear_messages() -> None:
    registry = _registry()
    cases = [({}, "'amount' is required"), ({"amount": 1, "unit": "km", "x": 1}, "unknown"),
             ({"amount": "far", "unit": "km"}, "'amount' must be a number"),
             ({"amount": True, "unit": "km"}, "'amount' must be a number"),
             ({"amount": 1, "unit": "ly"}, "one of 'km', 'mi'")]
    for args, message in cases:
        with pytest.raises(AgentError) as info:
            await registry.call("convert", args)
        assert info.value.code is ErrorCode.TOOL_ARGS
        assert message in info.value.message
    assert (await registry.call("convert", {"amount": 3, "unit": "mi"})).text == "3 mi"


async def test_unknown_and_failing_tools_have_their_own_codes() -> None:
    registry = _registry()
    with pytest.raises(AgentError) as info:
        await registry.call("nope", {})
    assert info.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(AgentError) as info:
        await registry.call("explode", {})
    assert info.value.code is ErrorCode.TOOL_FAILED
    assert "kaboom" in info.value.message


def test_calculator_is_right() -> None:
    cases = {"17*23": 391, "2^10": 1024, "(3+4)*5": 35, "15% of 240": 36, "1,000 + 1": 1001,
             "7 × 6": 42, "9 ÷ 3": 3, "2**100": 2**100, "-3 + +5": 2, "10 // 3": 3,
             "10 % 3": 1, "factorial(5)": 120, "max(1, 7, 3)": 7}
    for expression, expected in cases.items():
        assert evaluate(expression) == expected, expression
    assert abs(evaluate("sqrt(2)") - 1.41421356) < 1e-8
    assert abs(evaluate("2 * pi") - 6.283185307) < 1e-8


async def test_calculator_renders_results_for_people() -> None:
    tools = default_tools(FixedClock())
    assert (await tools.call("calculator", {"expression": "0.1 + 0.2"})).text == "0.1 + 0.2 = 0.3"
    assert (await tools.call("calculator", {"expression": "17 * 23"})).text == "17 * 23 = 391"


def test_calculator_refuses_anything_but_arithmetic() -> None:
    refused = ["__import__('os').system('ls')", "().__class__", "open('x')", "x + 1",
               "'a' * 3", "9**9**9", "2 ** 100000", "-(" * 40 + "1" + ")" * 40, "1+" * 150 + "1",
               "lambda: 1", "[1, 2]", "factorial(10000)", ""]
    for expression in refused:
        with pytest.raises(AgentError) as info:
            evaluate(expression)
        assert info.value.code is ErrorCode.TOOL_ARGS, expression


def test_calculator_math_errors_are_tool_failures() -> None:
    for expression, message in [("1 / 0", "division by zero"), ("sqrt(-1)", "not defined")]:
        with pytest.raises(AgentError) as info:
            evaluate(expression)
        assert info.value.code is ErrorCode.TOOL_FAILED
        assert message in info.value.message


async def test_date_and_time_tools_read_the_clock() -> None:
    tools = default_tools(FixedClock())
    now = await tools.call("datetime_now", {})
    assert now.text == "It is Tuesday, 24 November 2026, 14:05 UTC."
    shifted = await tools.call("datetime_now", {"timezone": "+05:30"})
    assert "19:35" in shifted.text
    assert (await tools.call("days_until", {"date": "2026-12-25"})).value == 31
    assert (await tools.call("days_until", {"date": "christmas"})).value == 31
    between = await tools.call("days_between", {"start": "2026-01-01", "end": "2026-03-01"})
    assert between.value == 59
    with pytest.raises(AgentError) as info:
        await tools.call("datetime_now", {"timezone": "Mars/Olympus"})
    assert info.value.code is ErrorCode.TOOL_ARGS
    with pytest.raises(AgentError):
        await tools.call("days_until", {"date": "someday"})


def test_plain_language_tool_requests_are_recognised() -> None:
    expected = {
        "what is 17*23": ("calculator", {"expression": "17*23"}),
        "compute 2^10": ("calculator", {"expression": "2^10"}),
        "calculate (3+4)*5": ("calculator", {"expression": "(3+4)*5"}),
        "sqrt(2)": ("calculator", {"expression": "sqrt(2)"}),
        "what's 15% of 240": ("calculator", {"expression": "15% of 240"}),
        "how much is 1234 + 5678": ("calculator", {"expression": "1234 + 5678"}),
        "3.5 * 4.2": ("calculator", {"expression": "3.5 * 4.2"}),
        "what is 7 times 8": ("calculator", {"expression": "7 * 8"}),
        "what is the square root of 81": ("calculator", {"expression": "sqrt(81)"}),
        "what day is it": ("datetime_now", {}),
        "what's the date today": ("datetime_now", {}),
        "what time is it": ("datetime_now", {}),
        "what time is it in UTC": ("datetime_now", {"timezone": "UTC"}),
        "how many days until 2026-12-25": ("days_until", {"date": "2026-12-25"}),
        "how many days until christmas?": ("days_until", {"date": "christmas"}),
        "how many days between 2026-01-01 and 2026-03-01":
            ("days_between", {"start": "2026-01-01", "end": "2026-03-01"}),
    }
    for text, call in expected.items():
        assert parse_tool_request(text) == call, text


def test_questions_are_not_mistaken_for_tool_requests() -> None:
    for text in ["what is a list comprehension", "what is python", "how do I open a file",
                 "what is 3.11's new feature", "how to use time.sleep", "what is 3.11",
                 "what time complexity does sort have", "what is the date format in logging",
                 "how many days are in a leap year", "hello", "what is pi",
                 "explain os.path.join", "what does 2to3 do", "is python 2 or 3 better",
                 "how do I compute a hash of a file", "what is utf-8"]:
        assert parse_tool_request(text) is None, text


def test_a_question_with_several_requests_gets_them_all_or_none() -> None:
    two = "What is 17.5% of 2,340, and how many days until 2026-12-25?"
    assert parse_tool_request(two) is None, "not the days alone"
    assert parse_tool_requests(two) == [("calculator", {"expression": "17.5% of 2,340"}),
                                        ("days_until", {"date": "2026-12-25"})]
    assert parse_tool_requests("what is 6 * 7 and what is 2 + 2") == [
        ("calculator", {"expression": "6 * 7"}), ("calculator", {"expression": "2 + 2"})]
    assert parse_tool_requests("what is 2+2; what time is it in utc") == [
        ("calculator", {"expression": "2+2"}), ("datetime_now", {"timezone": "UTC"})]
    # One part no rule reads: a model, if there is one, decides the whole question.
    assert parse_tool_requests(
        "How much is seventeen times twenty-three, and how long until Christmas 2026?") == []
    assert parse_tool_requests("what is 6 * 7 and how do I open a file") == []
    assert parse_tool_requests("how many days until christmas?") == [
        ("days_until", {"date": "christmas"})]


async def test_each_request_of_a_question_is_answered_on_its_own_line() -> None:
    from wasmagent.pipeline.jobs import Route
    from wasmagent.ports import Host, LoopClock
    from wasmagent.service import Service

    events: list[dict[str, Any]] = []
    service = Service(Host(name="test", clock=LoopClock()), lambda e: events.append(e.to_wire()))
    service.start()
    agent = service.agent
    agent.submit({"v": 1, "type": "ask", "id": "q", "text": "what is 6 * 7 and what is 2 + 2?"})
    await agent.drain()
    [answer] = [e for e in events if e["type"] == "answer"]
    assert answer["route"] == Route.TOOL.value
    assert answer["text"] == "6 * 7 = 42\n2 + 2 = 4"
    await service.aclose()
