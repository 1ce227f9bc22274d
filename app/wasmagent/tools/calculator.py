"""A safe calculator: arithmetic parsed with `ast` and evaluated by walking whitelisted nodes.

No `eval`, `exec` or `compile` of user text ever runs. Accepted: numbers, + - * / // % ** (also
`^`, `×`, `÷`), unary signs, parentheses, the functions in `FUNCTIONS` and the constants `pi`
and `e`; "15% of 240" means 15/100*240. Refused with `tool_bad_arguments`: anything else
(names, attributes, calls of other functions, strings), input over 200 characters, nesting
deeper than 30, exponents over 10,000 or results over 1,000 digits. Division by zero and math
domain errors are `tool_failed`. Integers stay exact; floats print with 12 significant digits.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

from ..errors import AgentError, ErrorCode

MAX_CHARS = 200
MAX_DEPTH = 30
MAX_EXPONENT = 10_000
MAX_DIGITS = 1_000

Number = int | float

FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "log": math.log,
    "ln": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp, "abs": abs,
    "round": round, "floor": math.floor, "ceil": math.ceil, "min": min, "max": max,
    "factorial": math.factorial,
}
CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e, "tau": math.tau}
BINARY: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _bad(message: str) -> AgentError:
    return AgentError(ErrorCode.TOOL_ARGS, f"calculator: {message}")


def normalize(expression: str) -> str:
    """Everyday notation to Python arithmetic: ^, ×, ÷, thousands separators, 'x% of y'."""
    text = expression.strip().rstrip("=?").strip()
    text = text.replace("^", "**").replace("×", "*").replace("÷", "/").replace("−", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(\d+(?:\.\d+)?)\s*%\s*of\s*", r"(\1/100)*", text, flags=re.I)
    return re.sub(r"(?<=\d)\s*x\s*(?=\d)", "*", text)


def _check_power(base: Number, exponent: Number) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise _bad("that exponent is too large")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and base not in (
            0, 1, -1):
        digits = exponent * math.log10(abs(base))
        if digits > MAX_DIGITS:
            raise _bad(f"the result would have about {int(digits)} digits")


def _eval(node: ast.AST, depth: int = 0) -> Number:
    if depth > MAX_DEPTH:
        raise _bad("the expression is nested too deeply")
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth + 1)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value: Number = node.value  # type: ignore[assignment]
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval(node.operand, depth + 1)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fn = FUNCTIONS.get(node.func.id)
        if fn is None:
            raise _bad(f"unknown function {node.func.id!r}")
        args = [_eval(a, depth + 1) for a in node.args]
        if fn is math.factorial and (not args or not isinstance(args[0], int) or args[0] > 500):
            raise _bad("factorial takes a whole number up to 500")
        return fn(*args)
    raise _bad(f"{ast.unparse(node) if isinstance(node, ast.expr) else 'that'!s} is not arithmetic")


def render(value: Number) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; see the module docstring for what is accepted."""
    if len(expression) > MAX_CHARS:
        raise _bad(f"the expression is longer than {MAX_CHARS} characters")
    text = normalize(expression)
    if not text:
        raise _bad("the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        raise _bad(f"cannot read {expression!r} as arithmetic") from None
    try:
        return _eval(tree)
    except ZeroDivisionError:
        raise AgentError(ErrorCode.TOOL_FAILED, "calculator: division by zero") from None
    except (ValueError, OverflowError) as exc:
        # Python's wording changes between versions ("math domain error" before 3.14).
        raise AgentError(ErrorCode.TOOL_FAILED,
                         f"calculator: not defined for these values ({exc})") from None
    except RecursionError:
        raise _bad("the expression is nested too deeply") from None
