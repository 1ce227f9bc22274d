"""The browser host: adapts the JS API that `web/worker/worker.js` hands over to the core's ports.

`worker.js` calls `boot(api, vocab)` once Pyodide and this package are loaded. `api` carries:
`post(json)` to send an event to the page, `run(model, feeds)` (onnxruntime-web, owned by
`web/worker/ort-host.js`), `model` (a promise of the embedding session: null once it is made,
else why it failed; the agent answers from keyword search until then, and `modelSettled(error)`,
when present, hears of it after the core has), `store` (IndexedDB, `web/worker/idb-store.js`,
or `{error}` when unavailable),
`kb` (the knowledge base to install from `kb/<name>.kv` on first boot), `vectors` (vector
search, `web/worker/vectors.js`, with `engine()` saying what it runs on), and facts for
`status` (`threads`, `crossOriginIsolated`, `bootMs()`).

Tensors cross into JS as typed arrays made from the `array` buffers in one copy
(`to_js(memoryview(...))`: int64 -> BigInt64Array, float32 -> Float32Array) and come back
with `to_bytes()` (one copy), never element by element.
"""

from __future__ import annotations

import asyncio
import json
import re
from array import array
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import js
from js import Object
from pyodide.code import run_js
from pyodide.ffi import JsException, JsProxy, jsnull, to_js

from .. import keyspace
from ..agent import Agent
from ..errors import AgentError, ErrorCode, UpstreamError
from ..llm.choice import ChoiceLlm
from ..llm.json_tools import json_turn
from ..llm.remote import RemoteLlm
from ..llm.repetition import until_repeat
from ..llm.wire import build_messages

# Service imports the LLM worker chain on first use (cheap one-shot CLI asks); the browser always
# builds it, so it is imported here, where the build's memory snapshot holds it (~50-90 ms/boot).
from ..pipeline import llm_worker  # noqa: F401
from ..ports import (
    Host,
    LoopClock,
    MemoryStore,
    ModelState,
    Store,
    Tensor,
    ToolCallRequest,
    Turn,
)
from ..protocol import Event, PassageIn, Result, ServerConnect, ToolsLoad, is_terminal
from ..runtime.context import Context
from ..service import Service
from ..session import Session

_TYPECODES = {"int64": "q", "float32": "f"}
SHIPPED_KB = re.compile(r"[A-Za-z0-9_-]{1,64}")
BROWSER_JOB_LEASE_S = 3.0
LOCAL_MAX_TOKENS = 64
"""A 135M model rambles past this; 10-25 s of decoding on one thread."""
LOCAL_TIMEOUT_S = 90.0
DEFAULT_TIMEOUT_S = 30.0
LOCAL_DEADLINE_MARGIN_S = 1.0
LOCAL_PASSAGES = 2
LOCAL_PASSAGE_CHARS = 400
LOCAL_TOOL_MAX_TOKENS = 160
"""A turn of tool calls in compact JSON (`llm/grammar.py`): ~45 tokens for two calls; three,
the most a turn may ask for, with long arguments, fit."""


def _js_object(value: Mapping[str, Any]) -> Any:
    return to_js(value, dict_converter=Object.fromEntries)


class OrtWebInference:
    """The `Inference` port over onnxruntime-web."""

    def __init__(self, api: Any) -> None:
        self._api = api

    async def run(self, model: str, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        js_feeds = {
            name: _js_object({"dtype": t.dtype, "dims": list(t.shape),
                              "data": to_js(memoryview(t.data))})
            for name, t in feeds.items()
        }
        try:
            out = await self._api.run(model, _js_object(js_feeds))
        except JsException as exc:
            message = f"onnxruntime-web failed on {model}: {exc}"
            raise AgentError(ErrorCode.INFERENCE, message) from None
        return {str(name): _tensor(getattr(out, name)) for name in Object.keys(out)}


def _tensor(js: JsProxy) -> Tensor:
    dtype = str(js.dtype)
    if dtype not in _TYPECODES:
        raise AgentError(ErrorCode.INFERENCE, f"unsupported output type {dtype}")
    data = array(_TYPECODES[dtype])
    data.frombytes(js.data.to_bytes())
    return Tensor(dtype, tuple(int(d) for d in js.dims), data)  # type: ignore[arg-type]


class IndexedDbStore:
    """The `Store` port over IndexedDB; quota or closed-database failures: `storage_failed`."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", key)
        # One copy out of the Uint8Array (`to_py()` then `bytes()` made two: opening a
        # knowledge base reads tens of MB).
        return None if value is None else bytes(value.to_bytes())

    async def put(self, key: str, value: bytes) -> None:
        await self._call("put", key, to_js(value))

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def keys(self, prefix: str = "") -> list[str]:
        found = await self._call("keys", prefix)
        return [str(k) for k in found]

    async def commit(self, puts: Mapping[str, bytes], deletes: Sequence[str] = (),
                     expect: Mapping[str, bytes | None] | None = None) -> None:
        await self._call("commit", _js_object({k: to_js(v) for k, v in puts.items()}),
                         to_js(list(deletes)),
                         _js_object({k: None if v is None else to_js(v)
                                     for k, v in (expect or {}).items()}))

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._store, method)(*args)
        except JsException as exc:
            if "ConflictError" in str(exc):
                raise AgentError(ErrorCode.CONFLICT, f"{exc}; the write was not applied"
                                 ) from None
            raise AgentError(ErrorCode.STORAGE, f"browser storage failed: {exc}") from None


class JsVectors:
    """The `VectorSearch` port over `web/worker/vectors.js` (rows in wasm memory, scored by a SIMD
    kernel)."""

    def __init__(self, vectors: Any) -> None:
        self._js = vectors

    async def add(self, space: str, dim: int, rows: array) -> int:  # type: ignore[type-arg]
        return int(self._js.add(space, dim, to_js(memoryview(rows))))

    async def search(self, space: str, query: array, k: int) -> list[tuple[int, float]]:  # type: ignore[type-arg]
        found = self._js.search(space, to_js(memoryview(query)), k)
        return [(int(pair[0]), float(pair[1])) for pair in found]

    async def drop(self, space: str) -> None:
        self._js.drop(space)


class JsLink:
    """The `Link` to an agent server over `web/worker/server-link.js` (a WebSocket that reconnects
    with backoff by itself)."""

    def __init__(self, link: Any) -> None:
        self._js = link

    def connected(self) -> bool:
        return bool(self._js.connected())

    def state(self) -> dict[str, Any]:
        found: dict[str, Any] = self._js.state().to_py()
        return found

    async def exchange(self, message: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        try:
            handle = self._js.exchange(json.dumps(message))
        except JsException as exc:
            raise UpstreamError(str(exc)) from None
        try:
            while True:
                try:
                    raw = await handle.next()
                except JsException as exc:
                    raise UpstreamError(f"the server link failed: {exc}") from None
                event = json.loads(str(raw))
                yield event
                if is_terminal(event):
                    return
        finally:
            handle.close()

    def connect_handler(self) -> Callable[[ServerConnect, Callable[[Event], None]], Any]:
        async def handle(request: ServerConnect, emit: Callable[[Event], None]) -> None:
            if request.url is None:
                self._js.disconnect()
            elif not request.url.startswith(("ws://", "wss://")):
                raise AgentError(ErrorCode.BAD_MESSAGE, "the server URL must start with "
                                 "ws:// or wss://")
            else:
                await self._js.connect(request.url, request.token)
            emit(Result(request.id, self.state()))

        return handle


class WllamaLlm:
    """The `Llm` port over the local model (`web/worker/llm-host.js`: wllama in its own worker).

    Available only once the model is installed and loaded: a model still loading is never
    waited for (the caller answers extractively). The prompt is the server's RAG prompt
    (`build_messages`); closing the stream, as a cancelled request does, aborts decoding
    between two tokens."""

    name = "local"

    def __init__(self, host: Any, max_tokens: int = LOCAL_MAX_TOKENS) -> None:
        self._js = host
        self._max_tokens = max_tokens

    def available(self) -> bool:
        return bool(self._js.ready())

    def details(self) -> dict[str, Any]:
        found: dict[str, Any] = self._js.state().to_py()
        return found

    def fit(self, passages: Sequence[PassageIn]) -> list[PassageIn]:
        # Prompt tokens cost as much as answer tokens here (~100/s in wasm): fewer, shorter
        # passages keep the first token within seconds. The first ones keep their numbers.
        return [replace(p, text=p.text[:LOCAL_PASSAGE_CHARS]) for p in passages[:LOCAL_PASSAGES]]

    async def stream(self, question: str, passages: Sequence[PassageIn], ctx: Context, *,
                     turns: Sequence[Turn] = (), conversation: str | None = None
                     ) -> AsyncIterator[str]:
        messages = build_messages(question, self.fit(passages), turns)
        handle = self._generate(messages, self._max_tokens)
        # A 135M model decoding greedily loops on one sentence: stop it at the first repeat.
        async with aclosing(ctx.stream(until_repeat(_pieces(handle, ctx)))) as pieces:
            async for piece in pieces:
                yield piece

    async def chat(self, messages: Sequence[Mapping[str, Any]],
                   tools: Sequence[Mapping[str, Any]], ctx: Context
                   ) -> AsyncIterator[str | ToolCallRequest]:
        """One turn of the agent loop (`llm/json_tools.py`): tool calls decoded under a
        grammar, so that each parses and fits its tool's schema; then the answer, streamed."""
        def generate(plain: list[dict[str, str]], grammar: str | None
                     ) -> AsyncGenerator[str, None]:
            budget = self._max_tokens if grammar is None else LOCAL_TOOL_MAX_TOKENS
            return ctx.stream(_pieces(self._generate(plain, budget, grammar), ctx))

        async with aclosing(json_turn(generate, messages, tools)) as parts:
            async for part in parts:
                yield part

    def _generate(self, messages: Sequence[Mapping[str, Any]], max_tokens: int,
                  grammar: str | None = None) -> Any:
        try:
            return self._js.generate(json.dumps(messages), max_tokens, grammar)
        except JsException as exc:
            raise UpstreamError(str(exc), retryable=False) from None


async def _pieces(handle: Any, ctx: Context) -> AsyncGenerator[str, None]:
    try:
        while True:
            left = ctx.remaining()
            # Stop short of the request's deadline: a slow device then gets the extractive
            # answer with a notice (the LLM worker's fallback), not a bare deadline error.
            budget = None if left is None else max(0.0, left - LOCAL_DEADLINE_MARGIN_S)
            try:
                piece = await asyncio.wait_for(handle.next(), budget)
            except TimeoutError:
                raise UpstreamError("the local model is too slow on this device to answer "
                                    "in time", retryable=False) from None
            except JsException as exc:
                raise UpstreamError(str(exc), retryable=False) from None
            if piece is None or piece is jsnull:
                return
            yield str(piece)
    finally:
        handle.close()


async def boot(api: Any, vocab: str | None = None, labels: str | None = None) -> Agent:
    """Build the agent on the browser's ports; called once by worker.js. Its events go to the
    page as JSON through `api.post`."""
    service, link = await _service(api, vocab, labels)
    agent = service.connect(lambda event: api.post(event.to_json()))
    agent.route(ServerConnect, link.connect_handler())
    # Site owners' Python runs only in the visitor's own browser, never on a shared server.
    agent.route(ToolsLoad, service.tools_load)
    return agent


async def start(app: str | None = None, *, kb: str = "default",
                threads: int | None = None) -> Session:
    """The agent on the Pyodide this code runs on (a PyScript worker, a page's own Pyodide), as
    a `Session`. `app` is where the wasmagent app is served (its `worker/`, `models/`, `ort/`
    and `kb/`): a URL, or a path on this site (default `/`); `kb` is the shipped knowledge base to
    install on first use. Knowledge bases live in this origin's IndexedDB, shared with the app."""
    # Against the origin, not `location`: PyScript's workers run from blob: URLs.
    base = js.URL.new(app or "/", f"{js.location.origin}/")
    module = await run_js(f"import({json.dumps(js.URL.new('worker/host.js', base).href)})")
    options: dict[str, object] = {"kb": kb}
    if threads is not None:
        options["threads"] = threads
    host = await module.startHost(_js_object(options))
    service, _ = await _service(host.api, host.vocab, host.labels)
    return Session(service)


async def _service(api: Any, vocab: str | None, labels: str | None) -> tuple[Service, JsLink]:
    """The started service on `api`'s ports, its shipped knowledge base installed."""
    store_error = getattr(api.store, "error", None)
    # Without IndexedDB (a browser that blocks storage in third-party frames, private modes)
    # everything still works for as long as the page is open.
    store = MemoryStore() if store_error else IndexedDbStore(api.store)
    info: dict[str, object] = {
        "storage": "memory" if store_error else "indexeddb",
        "threads": int(api.threads),
        "cross_origin_isolated": bool(api.crossOriginIsolated),
        "boot_ms": round(float(api.bootMs()), 1),
    }
    if store_error:
        info["storage_error"] = str(store_error)
    vector_engine = api.vectors.engine()
    info["vector_search"] = str(vector_engine.kernel)
    if vector_engine.error:
        info["vector_search_error"] = str(vector_engine.error)
    # Ready before the embedding session: questions meanwhile get keyword answers, and the
    # core switches to hybrid search by itself once `model` settles (`_follow_model`).
    model = ModelState(pending=True)
    host = Host(name="browser", clock=LoopClock(), store=store, inference=OrtWebInference(api),
                vectors=JsVectors(api.vectors), vocab=vocab,
                intent_labels=tuple(json.loads(labels)) if labels else None, info=info,
                model=model)
    link = JsLink(api.link)
    local_host = getattr(api, "llm", None)
    local = WllamaLlm(local_host) if local_host is not None else None
    # A short job lease: after a reload, the new page takes the interrupted ingestion over
    # within seconds (the old page can no longer renew it). Other tabs renew theirs meanwhile.
    # With the local model installed, a grounded answer can take a minute on a slow CPU
    # (wasm reads the prompt at ~6-50 tokens/s): the request deadline must allow it.
    service = Service(host, llm=ChoiceLlm(RemoteLlm(link), local),
                      job_lease_s=BROWSER_JOB_LEASE_S,
                      timeout_s=DEFAULT_TIMEOUT_S if local is None else LOCAL_TIMEOUT_S)
    service.start()
    following = asyncio.get_running_loop().create_task(_follow_model(api, model))
    _FOLLOWING.add(following)
    following.add_done_callback(_FOLLOWING.discard)
    if local_host is not None:
        # Loads an installed model in wllama's worker; questions meanwhile answer extractively.
        local_host.ensure()
    await _seed(service, store, api, str(api.kb or "default"), info)
    return service, link


_FOLLOWING: set[asyncio.Task[None]] = set()
"""`_follow_model` tasks, kept referenced until they end."""


async def _follow_model(api: Any, model: ModelState) -> None:
    """Settle `model` when the host's embedding session is made or has failed, then tell the
    worker (which announces it and warms the model up): after the core, so that a `status`
    asked on that news already sees the new state."""
    try:
        error = await api.model
    except JsException as exc:
        error = str(exc)
    model.settle(None if error is None or error is jsnull else str(error))
    settled = getattr(api, "modelSettled", None)
    if settled is not None:
        settled(model.error)


async def _seed(service: Service, store: Store, api: Any, name: str,
                info: dict[str, object]) -> None:
    """Install a shipped knowledge base on first boot (or after a clear, or in memory)."""
    info["kb"] = name
    try:
        if not SHIPPED_KB.fullmatch(name):
            raise AgentError(ErrorCode.NOT_FOUND, f"{name!r} is not a shipped knowledge base "
                             "name (letters, digits, - and _)")
        if await store.get(keyspace.kb_meta(name)) is None:
            data = await api.fetchBytes(f"kb/{name}.kv")
            await service.seed(name, data.to_bytes())
    except (JsException, AgentError) as exc:
        # The agent still works without it: tools, and documents the user adds.
        info["seed_error"] = str(exc)
