"""The CSP runtime of the core: request contexts, channels, the worker pool, the micro-batcher.

Everything here is stdlib asyncio, single-threaded and non-blocking, so it runs the same on
CPython's loop and on Pyodide's WebLoop. Each module's docstring states its contract.
"""

from __future__ import annotations

from .batcher import MicroBatcher, Priority
from .channels import Channel, ChannelClosed, ChannelEmpty, Recv, Selected, Send, select
from .context import Context
from .pool import WorkerPool

__all__ = [
    "Channel",
    "ChannelClosed",
    "ChannelEmpty",
    "Context",
    "MicroBatcher",
    "Priority",
    "Recv",
    "Selected",
    "Send",
    "WorkerPool",
    "select",
]
