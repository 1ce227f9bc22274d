"""Site owners' own tools and routing rules, loaded at run time from their Python source.

A tools file is plain Python, run once in a fresh module namespace:

    from wasmagent.tools.owner import route, tool

    @route(r"\\b(?:opening hours|when are you open)\\b(?: on (?P<day>\\w+))?")
    @tool
    def opening_hours(day: str = "weekdays") -> str:
        '''When the shop is open.'''
        return "..."

- `tool` is `ToolRegistry.tool`, the decorator the built-in tools are registered with (the
  same schema from type hints and docstring, the same argument checks, the same
  `idempotent=False` for a tool that must never run twice), bound while the file runs to a
  registry of that file's own tools.
- `route(pattern, tool=None, args=None)` adds a routing rule: a question in which the regular
  expression is found (case-insensitively) goes to that tool, called with `args` plus the
  pattern's named groups that matched (a group's text becomes an int or a float for such a
  parameter; for a bool one, a group that matched is true unless it reads false/no/off/0).
  As a decorator it routes to the decorated tool, above or below `@tool`; called with a tool
  name it routes to that tool. Owner rules are tried in file order, before the built-in ones.
- The file may `await` at top level (for example to fetch data once when it loads).

Contract of `await load_file(code, source, reserved)`:
- returns `OwnerTools` when the file ran and every rule names one of its tools with arguments
  that tool takes;
- raises `AgentError(TOOLS_LOAD)` otherwise: a syntax error; an exception while the file runs
  (the traceback, restricted to the file's own lines, is part of the message); a rule that is
  bound to no tool, to an unknown tool or passes arguments the tool does not take; a tool
  named like one in `reserved` or defined twice; `tool`/`route` used wrongly. The message
  starts with `<source>, line <n>: ` whenever a line is known. Any other exception escaping
  is a bug.

Trust: this executes the owner's code with everything Python can do. Pyodide is not a sandbox:
a tools file is trusted code, exactly like any script the owner puts on their own page.
"""

from __future__ import annotations

import ast
import contextvars
import inspect
import linecache
import re
import sys
import traceback
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import AgentError, ErrorCode
from .registry import Tool, ToolFn, ToolRegistry

F = TypeVar("F", bound=ToolFn)
ToolCall = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Rule:
    """A routing rule: questions where `pattern` is found go to `tool`."""

    pattern: re.Pattern[str]
    tool: str
    args: Mapping[str, Any]
    kinds: Mapping[str, str]
    line: int

    def call(self, text: str) -> ToolCall | None:
        found = self.pattern.search(text)
        if found is None:
            return None
        args = dict(self.args)
        for key, value in found.groupdict().items():
            if value is not None:
                args[key] = _coerce(value.strip(), self.kinds.get(key))
        return self.tool, args


@dataclass(frozen=True, slots=True)
class OwnerTools:
    """What one tools file defined."""

    source: str
    tools: tuple[Tool, ...]
    rules: tuple[Rule, ...]

    def match(self, text: str) -> ToolCall | None:
        """The tool call of the first rule that matches `text`, or None."""
        for rule in self.rules:
            call = rule.call(text)
            if call is not None:
                return call
        return None


@dataclass(slots=True)
class _Pending:
    """A rule as the file wrote it, before its tool is known."""

    pattern: re.Pattern[str]
    target: str | ToolFn | None
    args: dict[str, Any]
    line: int


@dataclass(slots=True)
class _Loading:
    source: str
    registry: ToolRegistry = field(default_factory=ToolRegistry)
    rules: list[_Pending] = field(default_factory=list)


# The file being loaded, per task: a tools file may await at top level, so two loads can
# interleave, and `tool`/`route` must register into the right one.
_LOADING: contextvars.ContextVar[_Loading | None] = contextvars.ContextVar(
    "wasmagent_owner_loading", default=None)


def _current(what: str) -> _Loading:
    loading = _LOADING.get()
    if loading is None:
        raise RuntimeError(f"{what}() works only in a tools file that wasmagent loads")
    return loading


def tool(fn: ToolFn | None = None, /, *, name: str | None = None,
         description: str | None = None, idempotent: bool = True) -> Any:
    """Register a tool of the file being loaded (`ToolRegistry.tool`; see the module doc)."""
    loading = _current("tool")
    if fn is not None and not callable(fn):
        raise TypeError("tool() decorates a function; to rename it write @tool(name=\"...\")")

    def register(f: ToolFn) -> ToolFn:
        key = str(name or getattr(f, "__name__", ""))
        if key in loading.registry:
            raise ValueError(f"the tool {key!r} is defined twice")
        loading.registry.tool(f, name=name, description=description, idempotent=idempotent)
        return f

    return register(fn) if fn is not None else register


def route(pattern: str, tool: str | None = None,
          args: Mapping[str, Any] | None = None) -> Callable[[F], F]:
    """Route questions matching `pattern` to a tool (see the module docstring)."""
    loading = _current("route")
    if not isinstance(pattern, str):
        raise TypeError("route() needs a regular expression first: write @route(r\"...\")")
    if tool is not None and not isinstance(tool, str):
        raise TypeError("route()'s second argument is the name of a tool")
    pending = _Pending(re.compile(pattern, re.IGNORECASE), tool, dict(args or {}),
                       _caller_line(loading.source))
    loading.rules.append(pending)

    def bind(fn: F) -> F:
        if pending.target is None:
            pending.target = fn
        return fn

    return bind


def _caller_line(source: str) -> int:
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename != source:
        frame = frame.f_back  # type: ignore[assignment]
    return frame.f_lineno if frame is not None else 0


def _coerce(value: str, kind: str | None) -> Any:
    if kind == "integer" and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if kind == "number" and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", value):
        return float(value)
    if kind == "boolean":  # a flag group such as (?P<express>express): present means true
        return value.lower() not in ("false", "no", "off", "0")
    return value


def _kind(schema: Mapping[str, Any]) -> str | None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") not in (None, "null"):
            return str(option["type"])
    return None


def _error(source: str, line: int | None, message: str) -> AgentError:
    where = f"{source}, line {line}" if line else source
    return AgentError(ErrorCode.TOOLS_LOAD, f"{where}: {message}")


def _crashed(exc: BaseException, source: str) -> AgentError:
    """The file raised while running: where, what, and the file's part of the traceback."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == source]
    last = "".join(traceback.format_exception_only(exc)).strip()
    if not frames:
        return _error(source, None, last)
    trace = "".join(traceback.format_list(frames))
    return _error(source, frames[-1].lineno,
                  f"{last}\nTraceback (most recent call last):\n{trace}{last}")


def _resolve(loading: _Loading) -> tuple[Rule, ...]:
    rules = []
    for p in loading.rules:
        if p.target is None:
            raise _error(loading.source, p.line, "this route is bound to no tool: put it above "
                         "a @tool function, or name the tool: route(pattern, \"name\")")
        if isinstance(p.target, str):
            name = p.target
        else:
            fn = p.target
            found = next((t.name for t in loading.registry if t.fn is fn), None)
            if found is None:
                raise _error(loading.source, p.line, f"@route decorates "
                             f"{getattr(fn, '__name__', fn)!r}, which is not a tool: add @tool")
            name = found
        rules.append(_checked_rule(loading, p, name))
    return tuple(rules)


def _checked_rule(loading: _Loading, p: _Pending, name: str) -> Rule:
    target = loading.registry.get(name)
    if target is None:
        raise _error(loading.source, p.line, f"route() names the tool {name!r}, which this "
                     "file does not define")
    params = target.parameters["properties"]
    given = set(p.args) | set(p.pattern.groupindex)
    unknown = sorted(given - set(params))
    if unknown:
        raise _error(loading.source, p.line, f"route() passes {unknown[0]!r}, which {name} "
                     f"does not take (it takes: {', '.join(params) or 'nothing'})")
    for key in target.parameters["required"]:
        if key not in given:
            raise _error(loading.source, p.line, f"route() never gives {name} its required "
                         f"argument {key!r} (add a named group or args={{{key!r}: ...}})")
    kinds = {key: k for key in p.pattern.groupindex if (k := _kind(params[key]))}
    return Rule(p.pattern, name, dict(p.args), kinds, p.line)


async def load_file(code: str, source: str, reserved: Collection[str] = ()) -> OwnerTools:
    """Run a tools file and collect its tools and rules; see the module docstring."""
    # Tracebacks through the file show its lines, now and when its tools run later.
    linecache.cache[source] = (len(code), None, code.splitlines(keepends=True), source)
    try:
        compiled = compile(code, source, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                           dont_inherit=True)
    except SyntaxError as exc:
        shown = f"\n    {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        raise _error(source, exc.lineno, f"SyntaxError: {exc.msg}{shown}") from None
    except ValueError as exc:  # e.g. a NUL byte in the source
        raise _error(source, None, f"cannot compile: {exc}") from None
    module = types.ModuleType(f"wasmagent_owner:{source}")
    module.__file__ = source
    # Registered while the file runs: dataclasses and typing look their module up there.
    sys.modules[module.__name__] = module
    loading = _Loading(source)
    token = _LOADING.set(loading)
    try:
        pending = eval(compiled, module.__dict__)  # the owner's trusted code; see the docstring
        if inspect.isawaitable(pending):
            await pending
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module.__name__, None)
        raise _crashed(exc, source) from None
    finally:
        _LOADING.reset(token)
    for defined in loading.registry:
        if defined.name in reserved:
            code_of = getattr(defined.fn, "__code__", None)
            raise _error(source, code_of.co_firstlineno if code_of else None,
                         f"a tool named {defined.name!r} already exists; choose another name")
    return OwnerTools(source, tuple(loading.registry), _resolve(loading))


class SiteTools:
    """The tools files loaded into one agent: their tools live in the agent's registry."""

    def __init__(self, registry: ToolRegistry) -> None:
        self._registry = registry
        self._files: dict[str, OwnerTools] = {}

    async def load(self, code: str, source: str) -> OwnerTools:
        """Load a file, replacing an earlier load of `source` only if this one succeeds."""
        previous = self._files.get(source)
        own = {t.name for t in previous.tools} if previous else set()
        reserved = {t.name for t in self._registry} - own
        loaded = await load_file(code, source, reserved)
        for old in own:
            self._registry.remove(old)
        for new in loaded.tools:
            self._registry.add(new)
        self._files[source] = loaded
        return loaded

    def tools(self) -> list[Tool]:
        """Every owner tool, files in load order."""
        return [t for loaded in self._files.values() for t in loaded.tools]

    def match(self, text: str) -> ToolCall | None:
        """The first owner rule's tool call for `text`, files in load order."""
        for loaded in self._files.values():
            call = loaded.match(text)
            if call is not None:
                return call
        return None
