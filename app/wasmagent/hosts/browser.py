"""The browser host: adapts the JS API that `web/worker.js` hands over to the core's ports.

`worker.js` calls `boot(api, vocab)` once Pyodide and this package are loaded. `api` carries:
`post(json)` to send an event to the page, `run(model, feeds)` (onnxruntime-web, owned by
`web/ort-host.js`), `store` (IndexedDB, `web/idb-store.js`, or `{error}` when unavailable),
`kb` (the knowledge base to install from `kb/<name>.kv` on first boot), and facts for
`status` (`threads`, `crossOriginIsolated`, `bootMs()`).

Tensors cross into JS as typed arrays made from the `array` buffers in one copy
(`to_js(memoryview(...))`: int64 -> BigInt64Array, float32 -> Float32Array) and come back
with `to_bytes()` (one copy), never element by element.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from js import Object
from pyodide.ffi import JsException, JsProxy, to_js

from ..agent import Agent
from ..errors import AgentError, ErrorCode, UpstreamError
from ..llm.remote import RemoteLlm
from ..ports import Host, LoopClock, MemoryStore, Store, Tensor
from ..protocol import Event, Result, ServerConnect, ToolsLoad
from ..service import Service, build_agent

_TYPECODES = {"int64": "q", "float32": "f"}
SHIPPED_KB = re.compile(r"[A-Za-z0-9_-]{1,64}")
BROWSER_JOB_LEASE_S = 3.0


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
        return None if value is None else bytes(value.to_py())

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
    """The `VectorSearch` port over `web/vectors.js` (typed arrays searched in JS)."""

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
    """The `Link` to an agent server over `web/server-link.js` (a WebSocket that reconnects
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
                if event.get("type") in ("done", "error"):
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


async def boot(api: Any, vocab: str | None = None, labels: str | None = None) -> Agent:
    """Build the agent on the browser's ports; called once by worker.js."""
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
    model_error = api.modelError
    if model_error:
        info["model_error"] = str(model_error)
    inference = None if model_error else OrtWebInference(api)
    host = Host(name="browser", clock=LoopClock(), store=store, inference=inference,
                vectors=JsVectors(api.vectors), vocab=vocab,
                intent_labels=tuple(json.loads(labels)) if labels else None, info=info)
    link = JsLink(api.link)
    # A short job lease: after a reload, the new page takes the interrupted ingestion over
    # within seconds (the old page can no longer renew it). Other tabs renew theirs meanwhile.
    service = build_agent(host, lambda event: api.post(event), llm=RemoteLlm(link),
                          job_lease_s=BROWSER_JOB_LEASE_S)
    service.agent.route(ServerConnect, link.connect_handler())
    # Site owners' Python runs only in the visitor's own browser, never on a shared server.
    service.agent.route(ToolsLoad, service.tools_load)
    await _seed(service, store, api, str(api.kb or "default"), info)
    return service.agent


async def _seed(service: Service, store: Store, api: Any, name: str,
                info: dict[str, object]) -> None:
    """Install a shipped knowledge base on first boot (or after a clear, or in memory)."""
    info["kb"] = name
    try:
        if not SHIPPED_KB.fullmatch(name):
            raise AgentError(ErrorCode.NOT_FOUND, f"{name!r} is not a shipped knowledge base "
                             "name (letters, digits, - and _)")
        if await store.get(f"kb/{name}/meta") is None:
            data = await api.fetchBytes(f"kb/{name}.kv")
            await service.seed(name, data.to_bytes())
    except (JsException, AgentError) as exc:
        # The agent still works without it: tools, and documents the user adds.
        info["seed_error"] = str(exc)
