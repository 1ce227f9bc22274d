"""The ports: the only ways the core reaches the world.

Adapters live in `wasmagent.hosts` (`native.py` for CPython, `browser.py` for Pyodide);
tests pass small in-memory hosts. Nothing in the core imports a host module directly.

Outward: `Inference`, `Store` (and `Staging`, a durable step's writes), `VectorSearch`,
`HttpStream`, `Clock`, `Llm` (an answer writer: `OpenAIChat` on the server, `RemoteLlm` in
the browser) and `Link` (a message connection to an agent server). Inward: a host feeds an
`Agent` wire messages and receives its events through a `Sink`; `Admit` is a host's check on
each valid request (the server's limits).

Tensors cross the `Inference` port as flat `array.array` buffers plus a shape, so the
browser adapter can hand them to onnxruntime-web as typed arrays with one copy and no
per-element conversion (`array('q')` -> `BigInt64Array`, `array('f')` -> `Float32Array`).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .errors import AgentError, ErrorCode

if TYPE_CHECKING:  # (runtime.context needs `Clock` from here)
    from .protocol import Event, PassageIn, Request
    from .runtime.context import Context

DType = Literal["int64", "float32"]

_TYPECODES: dict[DType, str] = {"int64": "q", "float32": "f"}


@dataclass(frozen=True, slots=True)
class Tensor:
    """A dense row-major tensor: `data` holds `prod(shape)` elements of `dtype`."""

    dtype: DType
    shape: tuple[int, ...]
    data: array  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        if self.data.typecode != _TYPECODES[self.dtype]:
            raise ValueError(f"{self.dtype} tensor needs array typecode {_TYPECODES[self.dtype]!r}")
        size = 1
        for dim in self.shape:
            size *= dim
        if size != len(self.data):
            raise ValueError(f"shape {self.shape} needs {size} elements, got {len(self.data)}")

    @classmethod
    def int64(cls, shape: Sequence[int], values: Sequence[int] | array) -> Tensor:  # type: ignore[type-arg]
        data = values if isinstance(values, array) else array("q", values)
        return cls("int64", tuple(shape), data)

    @classmethod
    def float32(cls, shape: Sequence[int], values: Sequence[float] | array) -> Tensor:  # type: ignore[type-arg]
        data = values if isinstance(values, array) else array("f", values)
        return cls("float32", tuple(shape), data)

    def rows(self) -> list[list[float]]:
        """The tensor as a list of rows along its last axis (for small outputs and tests)."""
        width = self.shape[-1] if self.shape else 1
        flat = self.data.tolist()
        return [flat[i : i + width] for i in range(0, len(flat), width)]


@runtime_checkable
class Inference(Protocol):
    """Runs ONNX models by name. Sessions are created once per model and reused.

    `run` raises `AgentError(INFERENCE)` when the runtime rejects the inputs and
    `AgentError(NOT_FOUND)` for a model the host does not know.
    """

    async def run(self, model: str, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]: ...


@runtime_checkable
class Store(Protocol):
    """Durable key/value storage of bytes, ordered by key.

    Writes raise `AgentError(STORAGE)` when the medium refuses them (quota, closed).

    `commit` is the one multi-key write, and it is atomic: either every put and delete lands
    or none does (deletes apply before puts). It first checks `expect` (key -> the exact
    bytes it must hold now, None for "absent") and, if any key differs, changes nothing and
    raises `AgentError(CONFLICT)`.
    Durable jobs build on it: a step's effects, its journal record and the job's lease are
    one commit, so a crash never leaves half a step and two processes never both finish one.
    """

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def keys(self, prefix: str = "") -> list[str]: ...

    async def commit(self, puts: Mapping[str, bytes], deletes: Sequence[str] = (),
                     expect: Mapping[str, bytes | None] | None = None) -> None: ...


def check_expect(current: Mapping[str, bytes | None], expect: Mapping[str, bytes | None]
                 ) -> None:
    """Raise `conflict` unless every expected key holds the expected value (stores share it)."""
    for key, wanted in expect.items():
        if current.get(key) != wanted:
            raise AgentError(ErrorCode.CONFLICT,
                             f"{key!r} was changed by someone else; the write was not applied")


class MemoryStore:
    """A `Store` that lives as long as the page or process: for a host without durable
    storage (a widget frame whose browser blocks storage in third-party frames), so shipped
    knowledge, added documents and history still work until the page closes."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self.data[key] = bytes(value)

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)

    async def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.data if k.startswith(prefix))

    async def commit(self, puts: Mapping[str, bytes], deletes: Sequence[str] = (),
                     expect: Mapping[str, bytes | None] | None = None) -> None:
        if expect:
            check_expect({k: self.data.get(k) for k in expect}, expect)
        for key in deletes:
            self.data.pop(key, None)
        for key, value in puts.items():
            self.data[key] = bytes(value)


@runtime_checkable
class VectorSearch(Protocol):
    """Dense vectors kept outside Python, searched by inner product.

    The core never loops over vectors in Python (Pyodide runs pure Python 3-10x slower than
    CPython): the browser adapter keeps each space in a JS Float32Array and the native one in
    numpy. A space holds rows of `dim` float32 values, numbered from 0 in insertion order.
    """

    async def add(self, space: str, dim: int, rows: array) -> int:  # type: ignore[type-arg]
        """Append `len(rows) // dim` rows; returns the new row count of the space."""
        ...

    async def search(self, space: str, query: array, k: int) -> list[tuple[int, float]]:  # type: ignore[type-arg]
        """The `k` best rows by inner product with `query`, best first: (row, score)."""
        ...

    async def drop(self, space: str) -> None:
        """Forget a space; unknown spaces are ignored."""
        ...


@runtime_checkable
class HttpStream(Protocol):
    """Streaming HTTP POST, for upstream APIs (the LLM). One pooled client per host.

    `post_stream` yields the response body in pieces as they arrive. It raises
    `UpstreamError` (with `status` and `retryable`) for a non-2xx status, a connection failure
    or a timeout (`timeout` bounds connecting and each wait for the next piece), and also when
    the connection breaks mid-body. It never retries by itself: the core decides.
    """

    def post_stream(self, url: str, headers: Mapping[str, str], body: bytes, *,
                    timeout: float) -> AsyncIterator[bytes]: ...


@runtime_checkable
class Clock(Protocol):
    """Time as the core sees it: monotonic seconds for deadlines, wall seconds for records."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The real clock: asyncio's loop time, which both CPython and Pyodide's WebLoop keep."""

    def monotonic(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Staging(Protocol):
    """Where a durable job step stages its writes (the workflow's `Tx`)."""

    def put(self, key: str, value: bytes) -> None: ...

    def expect_value(self, key: str, value: bytes | None) -> None: ...


Turn = tuple[str, str]
"""One earlier exchange of a conversation: (question, answer)."""


@runtime_checkable
class Llm(Protocol):
    """Streams an answer to `question` grounded in `passages`, as text pieces in order.

    Raises `AgentError` (`upstream_failed`, `upstream_unavailable`, `deadline_exceeded`,
    `cancelled`) on failure, possibly after some pieces were already yielded.
    """

    name: str

    def available(self) -> bool:
        """Whether a call has a chance now (configured, connected, breaker not open)."""
        ...

    def details(self) -> dict[str, Any]:
        """Facts for `status` (connection state, breaker state...)."""
        ...

    def stream(self, question: str, passages: Sequence[PassageIn], ctx: Context, *,
               turns: Sequence[Turn] = (), conversation: str | None = None
               ) -> AsyncIterator[str]:
        """`turns` are the conversation's earlier (question, answer) pairs, oldest first; a
        client of a remote agent passes the `conversation` id on instead."""
        ...


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A model's request to call a tool: `arguments` as the model wrote them (JSON text,
    checked by the tool registry before anything runs)."""

    id: str
    name: str
    arguments: str


@runtime_checkable
class ToolLlm(Llm, Protocol):
    """An `Llm` that can be offered tools (OpenAI `tools`, JSON Schemas) and answer with text,
    tool calls, or both. `messages` are Chat Completions messages (system, user, assistant
    with `tool_calls`, tool results); text pieces stream as they come, each tool call once
    complete (its arguments may arrive in pieces)."""

    def chat(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
             ctx: Context) -> AsyncIterator[str | ToolCallRequest]: ...


@runtime_checkable
class SmallContext(Protocol):
    """A model with a short context window (the browser's local one): `fit` keeps what of
    the passages it can read in time, in order, so that their `[n]` numbers stay the same."""

    def fit(self, passages: Sequence[PassageIn]) -> list[PassageIn]: ...


@runtime_checkable
class Link(Protocol):
    """A message connection to an agent server (the browser adapter: a WebSocket).

    `exchange(message)` sends one request (its wire form) and yields the server's events for
    its id, ending after the terminal one; it raises `UpstreamError` when the connection is
    down or drops. Closing the iterator early sends a `cancel` for the request.
    """

    def connected(self) -> bool: ...

    def exchange(self, message: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]: ...


Sink = Callable[["Event"], None]
"""Where an `Agent` delivers events: the host serialises them once, at its edge."""
Admit = Callable[["Request"], None]
"""A host's check on each valid request; refuses it by raising `AgentError`."""


class ModelState:
    """Whether the embedding model behind `Host.inference` can be used yet.

    `pending` while the host is still making the model's session (the browser makes it after
    Python is up: the agent is ready to answer before it, from keyword search), then `ready`,
    or `failed` for good with `error` saying why. A host whose model is usable from the start
    passes none. Never goes back: the first `settle` wins.
    """

    def __init__(self, *, pending: bool = False) -> None:
        self._settled = asyncio.Event()
        self.error: str | None = None
        if not pending:
            self._settled.set()

    @property
    def state(self) -> Literal["pending", "ready", "failed"]:
        if not self._settled.is_set():
            return "pending"
        return "ready" if self.error is None else "failed"

    @property
    def ready(self) -> bool:
        return self._settled.is_set() and self.error is None

    def settle(self, error: str | None = None) -> None:
        """The model is usable (`error` None) or will never be (`error` says why)."""
        if not self._settled.is_set():
            self.error = error
            self._settled.set()

    async def wait(self) -> bool:
        """Until the model settles; True when it is ready, False when it failed."""
        await self._settled.wait()
        return self.error is None


@dataclass(slots=True)
class Host:
    """What a host adapter hands the core: its ports and facts about itself for `status`.

    `inference` is None when the model runtime failed to load: the agent then still answers
    from lexical search and says so in `status`. `model`, when given, says whether the model
    behind `inference` is usable yet (`ModelState`); none means it is from the start.
    """

    name: str
    clock: Clock
    store: Store | None = None
    inference: Inference | None = None
    vectors: VectorSearch | None = None
    http: HttpStream | None = None
    vocab: str | None = None
    intent_labels: tuple[str, ...] | None = None
    info: dict[str, object] | None = None
    model: ModelState | None = None
