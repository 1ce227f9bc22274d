"""wasmagent: an AI agent runtime whose core runs unchanged in Pyodide and in CPython.

The Python API for callers in the same process as the agent (a PyScript page, a script):

    session = await wasmagent.start_in_browser()   # in Pyodide: the agent on this worker
    answer = await session.ask("How do I install it?")

`Session` (wasmagent.session) is the same API over a `Service` built on any host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Session", "__version__", "start_in_browser"]

if TYPE_CHECKING:
    from .session import Session


async def start_in_browser(app: str | None = None, *, kb: str = "default",
                           threads: int | None = None) -> Session:
    """The agent on this Pyodide (a PyScript worker, a page's own Pyodide), as a `Session`.

    `app`: where the wasmagent app (its models and runtime files) is served: a URL, or a path
    on this site (default `/`); `kb`: the shipped knowledge base installed on first use; `threads`:
    onnxruntime-web threads (needs a cross-origin isolated page)."""
    from .hosts.browser import start  # imports `js`: only in Pyodide

    return await start(app, kb=kb, threads=threads)


def __getattr__(name: str) -> Any:
    # Lazily, so `python -m wasmagent` does not pay for the protocol package before it needs it.
    if name == "Session":
        from .session import Session

        return Session
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
