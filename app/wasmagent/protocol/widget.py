"""The widget's port messages: between a host page's `widget.js` and the agent in its frame.

They are not agent requests (no `v`, no request id of the agent's): the host page opens the
frame with one `connect` window message carrying a MessagePort, and everything after goes over
that port. They live here so that the published schema covers them and `protocol.js` gives
both ends the same names; the frame and the widget validate what they receive against it.

Host -> frame: `connect` (window message), `tools`, `ask`, `focus`.
Frame -> host: `hello`, `refused`, `ready`, `answer`, `error`, `reply`, `close`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .messages import MAX_ID, MAX_QUESTION, MAX_TOOLS_CODE, _limit

HANDSHAKE = 1
"""The `wasmagent` field of the `connect` window message: its version."""


@dataclass(frozen=True, slots=True)
class Connect:
    """Host -> frame, as a window message with a MessagePort: start talking. `config` holds
    what the host page chose (`kb`, `title`, `welcome`, `accent`, `tools`, `model`,
    `server`); the frame keeps
    only valid values of it and falls back to defaults for the rest."""

    TYPE: ClassVar[str] = "connect"
    wasmagent: int
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Tools:
    """Host -> frame: the site owner's tools file (fetched on the owner's origin), or why it
    could not be fetched."""

    TYPE: ClassVar[str] = "tools"
    source: str = field(metadata=_limit(min_len=1, max_len=1024))
    code: str | None = field(default=None, metadata=_limit(max_len=MAX_TOOLS_CODE))
    error: str | None = field(default=None, metadata=_limit(max_len=2048))


@dataclass(frozen=True, slots=True)
class WidgetAsk:
    """Host -> frame: `wasmagent.ask(text)` from the host page; answered with `reply`."""

    TYPE: ClassVar[str] = "ask"
    id: str = field(metadata=_limit(min_len=1, max_len=MAX_ID))
    text: str = field(metadata=_limit(min_len=1, max_len=MAX_QUESTION))


@dataclass(frozen=True, slots=True)
class Focus:
    """Host -> frame: the panel opened; focus the question box."""

    TYPE: ClassVar[str] = "focus"


@dataclass(frozen=True, slots=True)
class Hello:
    """Frame -> host: a page of the frame is up (`gate` while checking the origin, `app`
    once the agent page runs)."""

    TYPE: ClassVar[str] = "hello"
    page: str = field(metadata=_limit(choices=("gate", "app")))


@dataclass(frozen=True, slots=True)
class Refused:
    """Frame -> host: the host page's origin is not in the site owner's allowlist."""

    TYPE: ClassVar[str] = "refused"
    origin: str
    message: str


@dataclass(frozen=True, slots=True)
class Ready:
    """Frame -> host: the agent can answer. `server` is the origin of the owner's agent server
    (`data-server`) once linked, whether or not it is connected at this moment."""

    TYPE: ClassVar[str] = "ready"
    threads: int
    crossOriginIsolated: bool  # the DOM's own name, as the host page reads it
    storage: str
    kb: str
    tools: list[str]
    version: str
    server: str | None = None


@dataclass(frozen=True, slots=True)
class WidgetAnswer:
    """Frame -> host: the visitor asked in the panel and got this answer."""

    TYPE: ClassVar[str] = "answer"
    question: str
    answer: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WidgetError:
    """Frame -> host: something failed (`question` names the question it belongs to)."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    question: str | None = None


@dataclass(frozen=True, slots=True)
class ReplyError:
    """Why a host page's `ask` failed."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Frame -> host: the answer to the host page's `ask` of the same `id`, or its error."""

    TYPE: ClassVar[str] = "reply"
    id: str
    answer: dict[str, Any] | None = None
    error: ReplyError | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Frame -> host: the visitor closed the panel from inside the frame (Escape)."""

    TYPE: ClassVar[str] = "close"


WIDGET_MESSAGES: tuple[type[Any], ...] = (Connect, Tools, WidgetAsk, Focus, Hello, Refused,
                                          Ready, WidgetAnswer, WidgetError, Reply, Close)
