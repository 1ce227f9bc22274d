"""Python functions as agent tools: registered by decorator, described by a JSON Schema.

`@registry.tool` (or `@registry.tool(name=..., description=...)`) registers a sync or async
function. Its name, description (first docstring paragraph), parameter descriptions (a
Google-style `Args:` section) and argument schema (from type hints: str, int, float, bool,
Literal enums, `X | None`, `list[X]`; parameters with defaults are optional) are derived once.

A tool is idempotent unless registered with `idempotent=False` (a payment, an e-mail, an
order: anything that must not happen twice). A durable agent loop (`pipeline/durable_loop.py`)
never runs such a call twice, even across a crash; other calls may run again on resumption.
The flag is not part of `describe()`, which is what the model is offered.

`await registry.call(name, args)` returns a `ToolResult` or raises `AgentError`:
`not_found` (no such tool), `tool_bad_arguments` (missing, unknown or mistyped argument — the
message names it and what was expected; a bool is never accepted as a number), `tool_failed`
(the tool raised; the message is the tool's, without a traceback). An `AgentError` raised by a
tool keeps its own code.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ..errors import AgentError, ErrorCode

ToolFn = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    name: str
    value: Any
    text: str


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    fn: ToolFn
    idempotent: bool = True
    """False: calling it twice is not the same as once (see the module docstring)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "parameters": self.parameters}


def _type_schema(hint: Any) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin is Literal:
        values = list(get_args(hint))
        return {"enum": values}
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        return {"anyOf": [*(_type_schema(a) for a in inner), {"type": "null"}]}
    if origin is list:
        return {"type": "array", "items": _type_schema(get_args(hint)[0])}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if hint in simple:
        return {"type": simple[hint]}
    raise TypeError(f"unsupported tool parameter type {hint!r}")


def _docs(fn: ToolFn) -> tuple[str, dict[str, str]]:
    doc = inspect.getdoc(fn) or ""
    summary = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    if m := re.search(r"^Args:\n((?:[ \t]+.*\n?)+)", doc, re.M):
        for line in m.group(1).splitlines():
            if pm := re.match(r"\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line):
                params[pm.group(1)] = pm.group(2).strip()
    return summary, params


def schema_of(fn: ToolFn) -> dict[str, Any]:
    hints = get_type_hints(fn)
    _, described = _docs(fn)
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        prop = _type_schema(hints[name])
        if name in described:
            prop["description"] = described[name]
        if param.default is inspect.Parameter.empty:
            required.append(name)
        else:
            prop["default"] = param.default
        props[name] = prop
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def _matches(schema: dict[str, Any], value: Any) -> bool:
    if "enum" in schema:
        return value in schema["enum"]
    if "anyOf" in schema:
        return any(_matches(s, value) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "null":
        return value is None
    if kind == "array":
        return isinstance(value, list) and all(_matches(schema["items"], v) for v in value)
    if isinstance(value, bool):
        return kind == "boolean"
    checks: dict[str, type | tuple[type, ...]] = {
        "string": str, "integer": int, "number": (int, float), "boolean": bool}
    return isinstance(value, checks[str(kind)])


def _expected(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_expected(s) for s in schema["anyOf"])
    return {"string": "a string", "integer": "an integer", "number": "a number",
            "boolean": "true or false", "null": "null", "array": "a list"}[schema["type"]]


class ToolRegistry:
    """Tools by name."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def tool(self, fn: ToolFn | None = None, /, *, name: str | None = None,
             description: str | None = None, idempotent: bool = True) -> Any:
        """Register `fn` (`@registry.tool`), or return a decorator (`@registry.tool(...)`)."""
        if not isinstance(idempotent, bool):
            raise TypeError("idempotent= must be True or False")

        def register(f: ToolFn) -> ToolFn:
            summary, _ = _docs(f)
            tool = Tool(name or f.__name__, description or summary, schema_of(f), f,
                        idempotent)
            self._tools[tool.name] = tool
            return f

        return register(fn) if fn is not None else register

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def add(self, tool: Tool) -> None:
        """Register an already described tool (one another registry built)."""
        self._tools[tool.name] = tool

    def remove(self, name: str) -> None:
        """Forget a tool; an unknown name is ignored."""
        self._tools.pop(name, None)

    def describe(self) -> list[dict[str, Any]]:
        return [t.describe() for t in self._tools.values()]

    def not_idempotent(self) -> list[str]:
        """The names of the tools declared `idempotent=False`, in registration order."""
        return [t.name for t in self._tools.values() if not t.idempotent]

    def validate(self, name: str, args: Mapping[str, Any]) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            raise AgentError(ErrorCode.NOT_FOUND, f"there is no tool named {name!r}")
        props = tool.parameters["properties"]
        for key in args:
            if key not in props:
                raise AgentError(ErrorCode.TOOL_ARGS, f"{name}: unknown argument {key!r}")
        for key in tool.parameters["required"]:
            if key not in args:
                raise AgentError(ErrorCode.TOOL_ARGS, f"{name}: argument {key!r} is required")
        for key, value in args.items():
            if not _matches(props[key], value):
                raise AgentError(ErrorCode.TOOL_ARGS,
                                 f"{name}: argument {key!r} must be {_expected(props[key])}, "
                                 f"got {value!r}")
        return tool

    async def call(self, name: str, args: Mapping[str, Any]) -> ToolResult:
        tool = self.validate(name, args)
        try:
            value = tool.fn(**args)
            if inspect.isawaitable(value):
                value = await value
        except AgentError:
            raise
        except Exception as exc:
            raise AgentError(ErrorCode.TOOL_FAILED, f"{name} failed: {exc}") from None
        if isinstance(value, ToolResult):
            return value
        return ToolResult(name, value, str(value))

