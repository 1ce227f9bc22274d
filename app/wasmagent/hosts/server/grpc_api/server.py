"""The gRPC server beside HTTP/WebSocket: same process, same event loop (`grpc.aio`).

Started by the HTTP server's lifespan once the core is ready (`--grpc-port`), stopped before
the core closes. It serves `wasmagent.v1.Agent` (`service.py`), the standard health service
and reflection. Limits: messages over `max_message_bytes` are refused by gRPC itself
(RESOURCE_EXHAUSTED) before they are decoded; one HTTP/2 connection may hold
`MAX_OPEN_REQUESTS` calls at once (more wait in the client, as HTTP/2 has them wait), the
gRPC form of a WebSocket's limit on unfinished requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..sessions import MAX_OPEN_REQUESTS
from ..state import ServerState
from . import agent_pb2 as pb
from .service import register

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Agent"].full_name
HEALTH_EVERY_S = 2.0
"""How often `Watch` subscribers learn of a change in readiness (a `Check` asks afresh)."""
STOP_GRACE_S = 5.0


class Health(health.aio.HealthServicer):
    """The standard health service, SERVING exactly when `/readyz` says ready (started, no
    pipeline stage stuck), for the server as a whole ("") and for `wasmagent.v1.Agent`."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        super().__init__()
        self._ready = ready
        self._status: int | None = None

    async def refresh(self) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if self._ready()
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        if status != self._status:
            self._status = status
            for name in ("", SERVICE_NAME):
                await self.set(name, status)

    async def Check(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext[health_pb2.HealthCheckRequest,
                                                      health_pb2.HealthCheckResponse]
                    ) -> health_pb2.HealthCheckResponse:
        await self.refresh()
        return await super().Check(request, context)

    async def watch(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(HEALTH_EVERY_S)


class GrpcServer:
    """A started gRPC server; `stop` ends it (running calls get `STOP_GRACE_S`)."""

    def __init__(self, server: grpc.aio.Server, port: int, health: Health) -> None:
        self.server = server
        self.port = port
        self.health = health
        self._watching = asyncio.get_running_loop().create_task(health.watch(),
                                                                name="grpc-health")

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        self._watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watching
        await self.server.stop(STOP_GRACE_S)


async def start_grpc(state: ServerState, ready: Callable[[], bool]) -> GrpcServer:
    """Serve gRPC on the configured host and `grpc_port` (0: any free port, see `.port`).
    Raises `RuntimeError` when the port cannot be bound."""
    config = state.config
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_concurrent_streams", MAX_OPEN_REQUESTS),
        # gRPC's default SO_REUSEPORT lets a second server bind a port in use without an
        # error, and then share its connections: a port clash must fail the start instead.
        ("grpc.so_reuseport", 0),
    ])
    register(server, state)
    checker = Health(ready)
    await checker.refresh()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"[{config.host}]" if ":" in config.host else config.host
    try:
        port = server.add_insecure_port(f"{address}:{config.grpc_port}")
    except RuntimeError as exc:  # the port is taken, or the address is not this host's
        raise RuntimeError(f"cannot listen for gRPC on {address}:{config.grpc_port}: {exc}"
                           ) from None
    await server.start()
    state.telemetry.log("grpc_listening", host=config.host, port=port)
    return GrpcServer(server, port, checker)
