"""Site owners' tools files: what an owner writing one would notice, good and broken."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.aio import collect
from wasmagent.agent import Agent
from wasmagent.errors import AgentError, ErrorCode
from wasmagent.ports import Host, LoopClock
from wasmagent.protocol import ToolsLoad
from wasmagent.service import Service
from wasmagent.tools import ToolRegistry, default_tools
from wasmagent.tools.owner import SiteTools, load_file, route, tool

SHOP = '''"""The Acme shop's assistant tools."""
from __future__ import annotations

from dataclasses import dataclass

from wasmagent.tools.owner import route, tool


@dataclass
class Hours:
    day: str
    open: str


HOURS = {"saturday": Hours("saturday", "10:00-16:00"), "sunday": Hours("sunday", "closed")}


@route(r"\\b(?:opening hours|when are you open)\\b(?: on (?P<day>\\w+))?")
@tool
def opening_hours(day: str = "weekdays") -> str:
    """When the shop is open.

    Args:
        day: A day name, or "weekdays".
    """
    hours = HOURS.get(day.lower(), Hours(day, "9:00-18:00"))
    return f"Acme is open {hours.open} on {hours.day}."


@tool(name="shipping")
async def shipping_cost(kilos: float, express: bool = False) -> str:
    """Shipping cost for a parcel."""
    return f"{kilos * (9 if express else 4):.2f} EUR"


route(r"ship(?:ping)? (?P<kilos>[\\d.]+) ?kg(?: (?P<express>express))?", "shipping",
      args={"express": False})
'''


async def _load(code: str, reserved: tuple[str, ...] = ()) -> Any:
    return await load_file(code, "/assistant_tools.py", reserved)


async def _error(code: str, reserved: tuple[str, ...] = ()) -> str:
    with pytest.raises(AgentError) as info:
        await _load(code, reserved)
    assert info.value.code is ErrorCode.TOOLS_LOAD
    return info.value.message


async def test_a_tools_file_registers_tools_with_schemas_and_routes() -> None:
    loaded = await _load(SHOP)
    assert [t.name for t in loaded.tools] == ["opening_hours", "shipping"]
    hours = loaded.tools[0].describe()
    assert hours["description"] == "When the shop is open."
    assert hours["parameters"]["properties"]["day"] == {
        "type": "string", "description": 'A day name, or "weekdays".', "default": "weekdays"}
    assert loaded.match("When are you open on Saturday?") == ("opening_hours",
                                                              {"day": "Saturday"})
    assert loaded.match("what are your opening hours") == ("opening_hours", {})
    assert loaded.match("ship 2.5 kg express") == ("shipping", {"kilos": 2.5, "express": True})
    assert loaded.match("ship 3kg") == ("shipping", {"kilos": 3.0, "express": False})
    assert loaded.match("what is a list comprehension?") is None
    assert [r.line for r in loaded.rules] == [18, 36]


async def test_owner_tools_run_through_the_registry_like_built_in_ones() -> None:
    registry = default_tools()
    site = SiteTools(registry)
    await site.load(SHOP, "/assistant_tools.py")
    result = await registry.call("opening_hours", {"day": "sunday"})
    assert result.text == "Acme is open closed on sunday."
    assert (await registry.call("shipping", {"kilos": 2})).text == "8.00 EUR"
    with pytest.raises(AgentError) as info:
        await registry.call("shipping", {"kilos": "two"})
    assert info.value.code is ErrorCode.TOOL_ARGS
    assert "calculator" in registry, "built-in tools stay"


async def test_a_reload_replaces_the_files_tools_and_a_failed_one_keeps_them() -> None:
    registry = ToolRegistry()
    site = SiteTools(registry)
    await site.load(SHOP, "/assistant_tools.py")
    smaller = SHOP.split("@tool(name=")[0]
    await site.load(smaller, "/assistant_tools.py")
    assert [t.name for t in registry] == ["opening_hours"]
    with pytest.raises(AgentError):
        await site.load(smaller + "\nraise RuntimeError('half way')\n", "/assistant_tools.py")
    assert [t.name for t in registry] == ["opening_hours"]
    assert site.match("when are you open") == ("opening_hours", {})


async def test_a_syntax_error_names_the_file_and_line() -> None:
    message = await _error("from wasmagent.tools.owner import tool\n\n@tool\ndef broken(:\n"
                           "    return 1\n")
    assert message.startswith("/assistant_tools.py, line 4: SyntaxError: ")
    assert "def broken(:" in message


async def test_an_exception_while_loading_gives_the_line_and_the_traceback() -> None:
    code = ("from wasmagent.tools.owner import tool\n\n"
            "def prices():\n"
            "    return {'tea': 3} ['coffee']\n\n"
            "PRICES = prices()\n")
    message = await _error(code)
    first, *rest = message.splitlines()
    assert first == "/assistant_tools.py, line 4: KeyError: 'coffee'"
    assert 'File "/assistant_tools.py", line 6, in <module>' in message
    assert "return {'tea': 3} ['coffee']" in message, "the traceback shows the file's lines"
    assert rest[-1] == "KeyError: 'coffee'"


async def test_bad_decorator_usage_is_explained() -> None:
    head = "from wasmagent.tools.owner import route, tool\n"
    bare_route = head + "@route\ndef f() -> str:\n    return 'x'\n"
    assert "route() needs a regular expression" in await _error(bare_route)
    assert (await _error(bare_route)).startswith("/assistant_tools.py, line 2: TypeError")
    not_a_tool = head + "@route(r'hello')\ndef f() -> str:\n    return 'x'\n"
    assert await _error(not_a_tool) == (
        "/assistant_tools.py, line 2: @route decorates 'f', which is not a tool: add @tool")
    named = head + "@tool('greet')\ndef f() -> str:\n    return 'x'\n"
    assert "to rename it write @tool(name=" in await _error(named)
    unknown = head + "route(r'x', 'nothing')\n"
    assert "names the tool 'nothing', which this file does not define" in await _error(unknown)
    unbound = head + "route(r'x')\n"
    assert "line 2: this route is bound to no tool" in await _error(unbound)
    wrong_arg = head + "@route(r'(?P<size>\\d+)')\n@tool\ndef f(n: int) -> str:\n    return ''\n"
    assert "passes 'size', which f does not take (it takes: n)" in await _error(wrong_arg)
    missing = head + "@route(r'order')\n@tool\ndef f(n: int) -> str:\n    return ''\n"
    assert "never gives f its required argument 'n'" in await _error(missing)
    bad_type = head + "@tool\ndef f(n: dict) -> str:\n    return ''\n"
    assert "line 2: TypeError: unsupported tool parameter type" in await _error(bad_type)
    bad_regex = head + "route(r'(unclosed', 'f')\n"
    regex_message = await _error(bad_regex)
    assert regex_message.startswith("/assistant_tools.py, line 2: re.")  # error or PatternError
    assert "missing ), unterminated subpattern" in regex_message


async def test_tools_may_not_shadow_existing_ones_or_repeat() -> None:
    calc = ("from wasmagent.tools.owner import tool\n\n@tool\n"
            "def calculator(expression: str) -> str:\n    return 'always 4'\n")
    assert await _error(calc, reserved=("calculator",)) == (
        "/assistant_tools.py, line 3: a tool named 'calculator' already exists; "
        "choose another name")
    twice = calc + "\n@tool\ndef calculator(x: str) -> str:\n    return ''\n"
    assert "line 7: ValueError: the tool 'calculator' is defined twice" in await _error(twice)


async def test_top_level_await_and_exit_are_handled() -> None:
    code = ("import asyncio\nfrom wasmagent.tools.owner import tool\n"
            "await asyncio.sleep(0)\nDATA = {'x': 1}\n\n@tool\ndef data() -> str:\n"
            "    return str(DATA)\n")
    assert [t.name for t in (await _load(code)).tools] == ["data"]
    assert "SystemExit: 3" in await _error("import sys\nsys.exit(3)\n")


def test_the_decorators_refuse_to_work_outside_a_tools_file() -> None:
    with pytest.raises(RuntimeError, match="only in a tools file"):
        tool(lambda: "x")
    with pytest.raises(RuntimeError, match="only in a tools file"):
        route(r"x", "y")


async def test_tools_load_through_the_protocol_routes_questions_to_owner_tools() -> None:
    events: list[dict[str, Any]] = []
    service = Service(Host(name="test", clock=LoopClock()), collect(events))
    service.start()
    agent: Agent = service.agent
    agent.route(ToolsLoad, service.tools_load)  # as the browser host does; never the server
    agent.submit({"v": 1, "type": "tools.load", "id": "t", "source": "/assistant_tools.py",
                  "code": SHOP})
    agent.submit({"v": 1, "type": "tools.load", "id": "bad", "source": "/broken.py",
                  "code": "x = (\n"})
    await agent.drain()
    loaded = [e for e in events if e["id"] == "t"]
    assert loaded[0]["data"] == {"source": "/assistant_tools.py",
                                 "tools": ["opening_hours", "shipping"], "routes": 2}
    broken = [e for e in events if e["id"] == "bad"][-1]
    assert broken["code"] == "tools_load_failed"
    assert broken["message"].startswith("/broken.py, line 1: SyntaxError:")
    agent.submit({"v": 1, "type": "ask", "id": "a", "text": "When are you open on Saturday?"})
    agent.submit({"v": 1, "type": "ask", "id": "c", "text": "what is 6 * 7"})
    agent.submit({"v": 1, "type": "status", "id": "s"})
    await agent.drain()
    answer = next(e for e in events if e["id"] == "a" and e["type"] == "answer")
    assert answer["text"] == "Acme is open 10:00-16:00 on saturday."
    assert answer["route"] == "tool"
    assert next(e for e in events if e["id"] == "c" and e["type"] == "answer")["text"] == \
        "6 * 7 = 42"
    status = next(e for e in events if e["id"] == "s" and e["type"] == "result")["data"]
    assert {"calculator", "opening_hours", "shipping"} <= set(status["tools"])
    await service.aclose()
