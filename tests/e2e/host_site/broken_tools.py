"""A tools file with a mistake in it, as an owner might write."""

from wasmagent.tools.owner import tool

WARRANTY_YEARS = 3

STORES = load_store_list()


@tool
def warranty() -> str:
    """How long the warranty lasts."""
    return f"{WARRANTY_YEARS} years"
