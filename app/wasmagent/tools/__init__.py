"""Agent tools: a registry of typed Python functions, and the ones wasmagent ships."""

from __future__ import annotations

from ..ports import Clock, LoopClock
from .calculator import evaluate, render
from .clock import register_clock_tools
from .parsing import parse_tool_request, parse_tool_requests
from .registry import Tool, ToolRegistry, ToolResult


def default_tools(clock: Clock | None = None) -> ToolRegistry:
    """The built-in tools: a safe calculator and date/time tools reading `clock`."""
    registry = ToolRegistry()

    @registry.tool
    def calculator(expression: str) -> ToolResult:
        """Evaluate arithmetic safely (+ - * / // % ** ^, sqrt, log, sin, ..., pi, e).

        Args:
            expression: The arithmetic to evaluate, such as "17 * 23" or "sqrt(2)".
        """
        value = evaluate(expression)
        shown = expression.strip().rstrip("=?").strip()
        return ToolResult("calculator", value, f"{shown} = {render(value)}")

    register_clock_tools(registry, clock or LoopClock())
    return registry


__all__ = ["Tool", "ToolRegistry", "ToolResult", "default_tools", "evaluate",
           "parse_tool_request", "parse_tool_requests"]
