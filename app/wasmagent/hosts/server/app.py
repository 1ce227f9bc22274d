"""The optional agent server: the same core on CPython behind FastAPI.

Routes: `GET /healthz` (liveness), `GET /readyz` (model and store loaded, no pipeline stage
stuck — see `runtime/watchdog.py` — and the store's kind: "sqlite" or "postgresql"), `GET /metrics`
(Prometheus), `GET /v1/protocol.schema.json` (the wire schema), `POST /v1/ask` (one answer as
Server-Sent Events), `WS /v1/ws` (the browser protocol, exactly), `POST /v1/chat/completions`
and `GET /v1/models` (OpenAI's Chat Completions API over the same agent; `openai_compat.py`),
and FastAPI's OpenAPI docs at `/docs`. With `--grpc-port` the same process also serves the
gRPC service `wasmagent.v1.Agent` (`grpc_api/`; its `.proto` is published as
`dist/agent.proto`).

Every failure a client sees carries a protocol error code: HTTP errors are
`{"error": {"code", "message"}}` (`ErrorBody`) with a matching status — also an unknown route
(404 `not_found`), a method a route does not take (405 `bad_message`, with `Allow`), a body
that is not JSON or nests too deeply (400 `bad_json`), one that does not fit the route (400
`bad_message`, never 422) and a bug (500 `internal`, its traceback only in the server's log);
WebSocket ones are `error` events.

Ahead of FastAPI, `http_guard.py` checks every HTTP request (origin, token and size before a
body is read; CORS for `--allow-origin` origins).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ... import __version__, keyspace
from ...errors import AgentError, ErrorCode
from ...llm.chat import OpenAIChat
from ...llm.resilience import CircuitBreaker
from ...protocol import Ask, AskMode, json_schema, limits
from ...service import Service
from ...telemetry import Telemetry
from ..native import AiohttpStream, native_host
from ..sql import SqlStore, open_store, redact_url
from . import openai_compat
from .config import ServerConfig
from .http_guard import STATUS, error_json, guard_http
from .openapi import SSE_EVENT, Readiness, errors_doc, honest_openapi
from .security import RateLimiter, bearer
from .sessions import (
    Receive,
    Scope,
    Send,
    serve_websocket,
    sse_answer,
    websocket_protocol,
)
from .state import ServerState, write_stderr

WS_FRAME_CAP = 4
WS_PATH = "/v1/ws"
FULL_GC_EVERY = 100


class _Server(FastAPI):
    """FastAPI for the HTTP routes; WebSockets on `WS_PATH` go straight to the session
    handler, ahead of FastAPI's middleware, exception and dependency layers. Through them an
    idle connection held ~20 more coroutines and ~12 KB more memory (measured with 5,000
    connections), and every event sent passed through their `send` wrappers."""

    websocket_handler: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
    server_config: ServerConfig | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.websocket_handler
        if handler is not None and scope["type"] == "websocket" and scope["path"] == WS_PATH:
            await handler(scope, receive, send)
            return
        if scope["type"] == "http" and self.server_config is not None:
            await guard_http(self.server_config, scope, receive, send, super().__call__)
            return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, made to say what the server does (`openapi.py`)."""
        if self.openapi_schema is not None:
            return self.openapi_schema
        schema = super().openapi()
        honest_openapi(schema, self.server_config)
        return schema


def _ask_field(name: str) -> Any:
    """A body field with the limits and default the `ask` message declares (protocol.py is
    their one source)."""
    limit = limits(Ask, name)
    return Field(default=limit.get("default", ...), min_length=limit["min_len"] or None,
                 max_length=limit["max_len"], ge=limit["lo"], le=limit["hi"])


class AskBody(BaseModel):
    """A question for `POST /v1/ask`; the fields mean what they mean in the `ask` message."""

    text: str = _ask_field("text")
    kb: str | None = _ask_field("kb")
    top_k: int = _ask_field("top_k")
    mode: AskMode = _ask_field("mode")


def _http_client(st: ServerState, request: Request) -> str:
    """Origin, token and rate checks for HTTP routes; the client's name for logs."""
    st.config.origins.check(request.headers.get("origin"))
    if st.config.tokens.enabled:
        name = st.config.tokens.client(bearer(request.headers.get("authorization")))
    else:
        name = request.client.host if request.client else "-"
    st.limiter.take(name)
    return name


async def _start(config: ServerConfig, store: SqlStore) -> ServerState:
    host = native_host(store, threads=config.threads)
    telemetry = Telemetry(clock=host.clock, writer=write_stderr)
    llm = None
    if config.llm is not None:
        assert isinstance(host.http, AiohttpStream)
        breaker = CircuitBreaker(host.clock, config.llm_breaker_threshold,
                                 config.llm_breaker_reset_s)
        llm = OpenAIChat(host.http, config.llm, host.clock, breaker=breaker,
                         on_failure=lambda kind: telemetry.count("upstream_errors", kind=kind),
                         log=telemetry.log)
    service = Service(host, telemetry=telemetry, llm=llm, pool_size=config.pool_size,
                      max_in_flight=config.max_in_flight,
                      timeout_s=config.request_timeout_s, job_lease_s=config.job_lease_s)
    service.start()
    state = ServerState(config, service, telemetry, RateLimiter(config.rate, config.burst),
                        llm=llm)
    if service.embedder is not None:
        await service.embedder.embed(["warm up the model session"])
    await host.store.keys(keyspace.KB) if host.store else None
    state.ready = True
    telemetry.log("server_ready", version=__version__, llm=config.llm is not None,
                  auth=config.tokens.enabled, store=store.kind,
                  database=redact_url(str(config.store)))
    return state


def _lifespan(config: ServerConfig, holder: dict[str, ServerState]
              ) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A database that cannot be opened fails the start with its `storage_failed` message
        # (password masked), before the server accepts a connection.
        store = await open_store(config.store)
        try:
            holder["state"] = await _start(config, store)
            rpc = None
            if config.grpc_port is not None:
                from .grpc_api import start_grpc  # grpcio is needed only with --grpc-port

                rpc = await start_grpc(holder["state"],
                                       lambda: bool(_readiness(holder.get("state"))["ready"]))
            _settle_gc()
            yield
            if rpc is not None:
                await rpc.stop()
            state = holder.pop("state")
            await state.service.aclose()
            if isinstance(state.service.host.http, AiohttpStream):
                await state.service.host.http.aclose()
        finally:
            await store.aclose()

    return lifespan


def _settle_gc() -> None:
    """Collector settings for a long-running server, applied once the core has started.

    - `gc.freeze()`: what start-up built (modules, FastAPI's routes and models, the model
      session, the vocabulary: ~70,000 tracked objects) lives as long as the process, so full
      collections stop scanning it again and again.
    - A full collection is considered every 100 second-generation collections instead of 10.
      Each one scans every live connection's objects (~80 per open WebSocket), stopping the one
      event loop for tens of milliseconds at 1,000 connections — the largest single source of
      the latency tail measured under load. Young-generation collections (well under a
      millisecond each) are left as they are; they free most of each request's garbage.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_EVERY)


def create_app(config: ServerConfig) -> FastAPI:
    """The ASGI app; the core starts in its lifespan (so tests can run it in-process)."""
    holder: dict[str, ServerState] = {}
    app = _Server(title="wasmagent server", version=__version__,
                  lifespan=_lifespan(config, holder), description=__doc__)
    app.server_config = config

    def state() -> ServerState:
        if "state" not in holder:
            raise AgentError(ErrorCode.NOT_READY, "the server is starting")
        return holder["state"]

    def client(request: Request, st: ServerState = Depends(state)) -> str:  # noqa: B008
        return _http_client(st, request)

    app.add_exception_handler(AgentError, _agent_error)  # type: ignore[arg-type]
    # FastAPI's default for a bad body (422 `{"detail": [...]}`) would break the rule that
    # every HTTP error is `{"error": {"code", "message"}}` with a protocol code.
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    # ... nor would Starlette's and FastAPI's own `{"detail": ...}` (unknown route, method not
    # allowed, a body `json.loads` fails on other than by a syntax error: nesting too deep
    # for its recursion limit, bytes that are not UTF-8) or a bare 500 for a bug.
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal)

    @app.get("/healthz", summary="Liveness: the process serves HTTP",
             responses=errors_doc(500))
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: model and store loaded, no stage stuck",
             responses={200: {"model": Readiness, "description": "ready"},
                        503: {"model": Readiness,
                              "description": "still starting, or a stage is stuck (named in "
                                             "`stalled`)"},
                        **errors_doc(500)})
    async def readyz() -> JSONResponse:
        body = _readiness(holder.get("state"))
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
             responses=errors_doc(401, 503, 500))
    async def metrics(request: Request, st: ServerState = Depends(state)) -> str:  # noqa: B008
        # the counters name clients: with tokens enabled, a scraper sends one too
        if st.config.tokens.enabled:
            st.config.tokens.client(bearer(request.headers.get("authorization")))
        return st.metrics()

    @app.get("/v1/protocol.schema.json", summary="JSON Schema of the WebSocket messages",
             responses=errors_doc(500))
    async def schema() -> dict[str, Any]:
        return json_schema()

    @app.post("/v1/ask", summary="Answer a question, streamed as Server-Sent Events",
              response_class=StreamingResponse,
              responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}},
                               "description": "protocol events, one SSE event each, up to "
                                              "the terminal `done` or `error`"},
                         **errors_doc(400, 401, 403, 413, 429, 503, 500)})
    async def ask(body: AskBody, st: ServerState = Depends(state),  # noqa: B008
                  who: str = Depends(client)) -> StreamingResponse:
        stream = sse_answer(st, body.model_dump(exclude_none=True), who)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    openai_compat.add_routes(app, state, client)

    async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
        await serve_websocket(holder.get("state"), scope, receive, send)

    app.websocket_handler = websocket
    return app


async def _agent_error(request: Request, exc: AgentError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.code is ErrorCode.UNAUTHORIZED else None
    return JSONResponse(error_json(exc.code, exc.message), status_code=STATUS.get(exc.code, 500),
                        headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's and FastAPI's own HTTP errors, with protocol codes. Nothing in this app
    raises them itself: a 400 is FastAPI failing to decode a JSON body."""
    status = exc.status_code
    path = request.url.path
    if status == 400:
        code, message = ErrorCode.BAD_JSON, ("the request body is not valid JSON (not UTF-8, "
                                             "or nested too deeply)")
    elif status == 404:
        code, message = ErrorCode.NOT_FOUND, f"no route {path}"
    elif status == 405:
        code, message = ErrorCode.BAD_MESSAGE, f"{request.method} is not allowed on {path}"
    else:
        code = (ErrorCode.TOO_LARGE if status == 413 else
                ErrorCode.INTERNAL if status >= 500 else ErrorCode.BAD_MESSAGE)
        message = str(exc.detail)
    return JSONResponse(error_json(code, message, status), status_code=status,
                        headers=exc.headers)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    """A bug: `internal` (500) without details; Starlette re-raises `exc`, so uvicorn logs its
    traceback."""
    return JSONResponse(error_json(ErrorCode.INTERNAL, "an internal error; see the server log"),
                        status_code=500)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return await _agent_error(request, AgentError(ErrorCode.BAD_JSON,
                                                      "the request body is not valid JSON"))
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = str(first.get("msg", "the request body is not valid"))
    return await _agent_error(request, AgentError(
        ErrorCode.BAD_MESSAGE, f"field {where!r}: {message}" if where else message))


def _readiness(st: ServerState | None) -> dict[str, Any]:
    """Ready once started, and only while no pipeline stage is stuck with work waiting: a
    load balancer then drains this process instead of sending users into a black hole."""
    if st is None:
        return {"ready": False}
    health = st.service.health()
    return {"ready": st.ready and health["ok"], "model": st.service.embedder is not None,
            "store": (st.service.host.info or {}).get("storage"),
            "llm": None if st.llm is None else st.llm.breaker.state,
            "stalled": health["stalled"]}


async def serve(config: ServerConfig) -> None:
    import uvicorn

    config.check()
    app = create_app(config)
    # The WebSocket layer's own cap sits above `max_message_bytes`: a message just over the
    # limit gets a typed `too_large` error from the agent and the connection stays open
    # (with the cap at the limit, uvicorn closed it with a bare 1009); only frames over
    # WS_FRAME_CAP times the limit are cut off there, which still bounds memory.
    # uvicorn's `websockets-sansio` protocol (the plain `websockets` one is deprecated and
    # printed a non-JSON warning among the JSON log lines), over a `CorkedTransport`.
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, ws=websocket_protocol(),
        ws_max_size=WS_FRAME_CAP * config.max_message_bytes, log_config=None,
        access_log=False,
        # Compression costs a zlib context per connection (~100 KB each: 10k idle clients
        # would need over 1 GB) and CPU per event; protocol events are small JSON lines.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5, backlog=4096))
    await server.serve()


def run(config: ServerConfig) -> int:
    from .state import setup_logging

    setup_logging()
    with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
        runner.run(serve(config))
    return 0


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop (libuv; faster transports and callbacks) when `choice` allows it
    and it is installed — a server-only dependency — else asyncio's default (None)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("--loop uvloop: uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
