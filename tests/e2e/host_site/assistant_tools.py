"""Acme's own assistant tools: opening hours and shipping costs."""

from wasmagent.tools.owner import route, tool

HOURS = {"saturday": "10:00-16:00", "sunday": "closed"}


@route(r"\b(?:opening hours|when are you open)\b(?: on (?P<day>\w+))?")
@tool
def opening_hours(day: str = "weekdays") -> str:
    """When the Acme shop is open.

    Args:
        day: A day of the week, or "weekdays".
    """
    return f"Acme is open {HOURS.get(day.lower(), '9:00-18:00')} on {day.lower()}."


@route(r"\bship(?:ping)?\b.*?(?P<kilos>\d+(?:\.\d+)?) ?kg")
@tool
def shipping(kilos: float) -> str:
    """Shipping cost of a parcel within Europe."""
    return f"Shipping {kilos:g} kg costs {4 + 1.5 * kilos:.2f} EUR."
