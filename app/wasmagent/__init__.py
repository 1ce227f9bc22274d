"""wasmagent: an AI agent runtime whose core runs unchanged in Pyodide and in CPython."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
