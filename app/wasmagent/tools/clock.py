"""Date and time tools; they read time from the injected `Clock`, so tests can fix it.

Time zones: "UTC" (also "Z", "GMT"), "local", fixed offsets ("+05:30", "UTC-8", "GMT+2"), and
IANA names ("Europe/Paris") where the platform has tz data (Pyodide may not: then the tool says
which zone it could not find). Dates: ISO `YYYY-MM-DD`, "today", "tomorrow", "yesterday",
"christmas", "new year".
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

from ..errors import AgentError, ErrorCode
from ..ports import Clock
from .registry import ToolRegistry, ToolResult

_OFFSET = re.compile(r"^(?:utc|gmt)?\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?$", re.I)


def parse_zone(name: str) -> tzinfo | None:
    """The zone for `name`; None means the machine's local zone."""
    key = name.strip()
    if key.lower() in ("utc", "z", "gmt", ""):
        return UTC
    if key.lower() == "local":
        return None
    if m := _OFFSET.match(key):
        sign = -1 if m.group(1) == "-" else 1
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if hours > 14 or minutes >= 60:
            raise AgentError(ErrorCode.TOOL_ARGS, f"{name!r} is not a valid UTC offset")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(key)
    except Exception:
        raise AgentError(ErrorCode.TOOL_ARGS, f"unknown time zone {name!r}") from None


def parse_day(text: str, today: date) -> date:
    key = text.strip().lower()
    named = {"today": today, "now": today, "tomorrow": today + timedelta(days=1),
             "yesterday": today - timedelta(days=1)}
    if key in named:
        return named[key]
    if key in ("christmas", "xmas", "christmas day"):
        target = date(today.year, 12, 25)
        return target if target >= today else date(today.year + 1, 12, 25)
    if key in ("new year", "new year's day", "new years day", "new years"):
        return date(today.year + 1, 1, 1)
    try:
        return date.fromisoformat(key)
    except ValueError:
        raise AgentError(ErrorCode.TOOL_ARGS,
                         f"{text!r} is not a date (use YYYY-MM-DD, today, christmas...)") from None


def register_clock_tools(registry: ToolRegistry, clock: Clock) -> None:
    def now(zone: str = "UTC") -> datetime:
        tz = parse_zone(zone)
        moment = datetime.fromtimestamp(clock.wall(), UTC)
        return moment.astimezone(tz) if tz is not None else moment.astimezone()

    @registry.tool
    def datetime_now(timezone: str = "UTC") -> ToolResult:
        """The current date, weekday and time.

        Args:
            timezone: "UTC", "local", an offset like "+05:30", or an IANA name.
        """
        moment = now(timezone)
        label = moment.tzname() or timezone
        text = f"It is {moment:%A, %d %B %Y, %H:%M} {label}."
        return ToolResult("datetime_now", moment.isoformat(timespec="seconds"), text)

    @registry.tool
    def days_until(date: str) -> ToolResult:
        """Whole days from today (UTC) until a date.

        Args:
            date: YYYY-MM-DD, or christmas, new year, tomorrow.
        """
        today = now("UTC").date()
        target = parse_day(date, today)
        days = (target - today).days
        when = f"{target:%A, %d %B %Y}"
        text = (f"{days} days until {when}." if days >= 0 else f"{when} was {-days} days ago.")
        return ToolResult("days_until", days, text)

    @registry.tool
    def days_between(start: str, end: str) -> ToolResult:
        """Whole days between two dates.

        Args:
            start: YYYY-MM-DD or today.
            end: YYYY-MM-DD or today.
        """
        today = now("UTC").date()
        a, b = parse_day(start, today), parse_day(end, today)
        days = (b - a).days
        return ToolResult("days_between", days, f"{abs(days)} days between {a} and {b}.")
