"""Recognise plain-language tool requests deterministically, before any model is asked.

`parse_tool_request(text)` returns `(tool name, arguments)` or None. Arithmetic is recognised
only when what remains after a lead-in ("what is", "compute", ...) is made of numbers,
operators, parentheses and calculator function names, and the calculator can parse it; so
"what is a list comprehension" or "what is 3.11's new feature" are never taken for math. A
date request is recognised only when nothing but a lead-in precedes it, so that "what is 17.5%
of 2,340, and how many days until Christmas?" is not answered with the days alone.

`parse_tool_requests(text)` also takes questions made of several requests ("..., and ...",
"...; ..."): every part must be one, or none is taken (a model, if any, then decides).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..errors import AgentError, ErrorCode
from .calculator import CONSTANTS, FUNCTIONS, evaluate

_LEAD = re.compile(
    r"^(?:please\s+)?(?:(?:what|how much|how many)\s*(?:is|are|'s|s|does|do)?|whats|compute|"
    r"calculate|calc|evaluate|eval|solve|work out|figure out|tell me|quick math:?|"
    r"can you (?:calculate|compute|work out))\b\s*", re.I)
_WORD_OPS = [
    (r"\bsquare root of\s+", "sqrt "), (r"\bmultiplied by\b", "*"), (r"\btimes\b", "*"),
    (r"\bdivided by\b", "/"), (r"\bover\b", "/"), (r"\bplus\b", "+"), (r"\bminus\b", "-"),
    (r"\bto the power of\b", "**"), (r"\bsquared\b", "**2"), (r"\bcubed\b", "**3"),
    (r"\bmod(?:ulo)?\b", "%"),
]
_MATH_WORDS = set(FUNCTIONS) | set(CONSTANTS) | {"of"}
_ZONE = (r"(utc|gmt|z|local|[+-]\d{1,2}(?::?\d{2})?|(?:utc|gmt)\s*[+-]\s*\d{1,2}(?::?\d{2})?"
         r"|[a-z]+/[a-z_]+)")
_DATE = (r"(\d{4}-\d{2}-\d{2}|today|tomorrow|yesterday|christmas(?: day)?|xmas"
         r"|new years?(?:'s)?(?: day)?)")


def _math(text: str) -> str | None:
    body = _LEAD.sub("", text.strip()).strip().rstrip("?.!= ").strip()
    body = re.sub(r"\s*(please|for me)$", "", body, flags=re.I)
    body = re.sub(r"^the\s+", "", body, flags=re.I)
    for pattern, repl in _WORD_OPS:
        body = re.sub(pattern, repl, body, flags=re.I)
    body = re.sub(r"\bsqrt\s+(\d+(?:\.\d+)?)", r"sqrt(\1)", body)
    if not body or not re.search(r"\d", body):
        return None
    words = set(re.findall(r"[a-z_]+", body.lower()))
    if words - _MATH_WORDS - {"x"}:
        return None
    has_op = re.search(r"[-+*/^%×÷]|\*\*", body) or re.search(r"[a-z]\w*\s*\(", body.lower())
    if not has_op:
        return None
    try:
        evaluate(body)
    except AgentError as exc:
        if (exc.code is ErrorCode.TOOL_ARGS and "not arithmetic" in exc.message) or (
                "cannot read" in exc.message):
            return None
    return body


_LEAD_WORDS = re.compile(
    r"(?:(?:please|so|how|many|much|long|is|it|are|there|the|number|of|count|tell|me|what|"
    r"whats|what's|do|does|i|have|we|left|remain|remaining|exactly)\s+)*")
"""Words that may precede a date request in a question that asks only that."""


def _alone(t: str, m: re.Match[str]) -> bool:
    return _LEAD_WORDS.fullmatch(t[:m.start()]) is not None


def _date_time(text: str) -> tuple[str, dict[str, Any]] | None:
    t = text.lower().strip().rstrip("?.! ")
    if (m := re.search(rf"\bdays? between {_DATE} and {_DATE}", t)) and _alone(t, m):
        return "days_between", {"start": m.group(1), "end": m.group(2)}
    if (m := re.search(rf"\bdays? since {_DATE}", t)) and _alone(t, m):
        return "days_between", {"start": m.group(1), "end": "today"}
    if (m := re.search(rf"\b(?:days?|long) (?:until|till|to|before) {_DATE}$", t)) and _alone(t, m):
        return "days_until", {"date": m.group(1)}
    if (m := re.search(rf"\btime(?: is it)?(?: now)? in {_ZONE}$", t)) and _alone(t, m):
        return "datetime_now", {"timezone": m.group(1).upper() if "/" not in m.group(1)
                                else m.group(1)}
    patterns = [r"^what(?:'s| is)? the (?:current )?(?:time|date)(?: today| now)?$",
                r"^what (?:time|day|date) is it(?: today| now| right now)?$",
                r"^(?:what|which) day of the week is it(?: today)?$", r"^what(?:'s| is) today$",
                r"^(?:tell me )?the (?:current )?(?:time|date)(?: please)?$",
                r"^(?:current|today's) (?:time|date)(?: please)?$",
                r"^what(?:'s| is) today'?s date$", r"^what year is it(?: now)?$"]
    if any(re.match(p, t) for p in patterns):
        return "datetime_now", {}
    return None


def parse_tool_request(text: str) -> tuple[str, dict[str, Any]] | None:
    """A tool call for `text`, or None; see the module docstring."""
    if len(text) > 300:
        return None
    found = _date_time(text)
    if found is not None:
        return found
    expression = _math(text)
    return ("calculator", {"expression": expression}) if expression else None


ToolRequest = tuple[str, dict[str, Any]]
_PARTS = re.compile(r"\s*(?:[,;]\s*and\s+|\band\s+(?=(?:what|how|when|which|compute|calculate)\b)"
                    r"|;\s*|\?\s+)", re.I)


def parse_tool_requests(text: str, parse: Callable[[str], ToolRequest | None] = parse_tool_request
                        ) -> list[ToolRequest]:
    """Every tool call `text` asks for, in order, or none; see the module docstring."""
    whole = parse(text)
    if whole is not None:
        return [whole]
    parts = [p for p in _PARTS.split(text.strip()) if p.strip()]
    if not 1 < len(parts) <= 4:
        return []
    found = [parse(p) for p in parts]
    return [f for f in found if f is not None] if all(found) else []
