"""The server bench's gRPC row: the WebSocket `busy` measurement (server.py) over gRPC.

`sessions` Ask streams (`llm` mode, the same given passage, so the same path: protocol →
pipeline → pooled upstream stream → events), open-loop at the same fixed rate, spread over
`CHANNELS` HTTP/2 connections (each channel with its own subchannel pool: gRPC channels to one
address otherwise share one connection), on the server the WebSocket row just measured.
Latency is call → final status at the client; the baseline is the same completions streamed
straight from the fake upstream with httpx at the same rate, measured right after, and the
server-added latency is the difference at each percentile.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import grpc

from wasmagent.hosts.server.grpc_api import agent_pb2 as pb
from wasmagent.hosts.server.grpc_api import agent_pb2_grpc as pb_grpc

CHANNELS = 10
"""HTTP/2 connections the streams share: at 1,000 streams, 100 each, under the server's 256
concurrent streams per connection."""
ASK_TIMEOUT_S = 60.0


async def _ask(stub: pb_grpc.AgentStub, request: pb.AskRequest) -> float:
    t0 = time.perf_counter()
    call = stub.Ask(request, timeout=ASK_TIMEOUT_S)
    last = None
    async for event in call:
        last = event
    if last is None or not last.HasField("done"):
        raise RuntimeError(f"an ask ended without `done`: {last}")
    return (time.perf_counter() - t0) * 1000


async def busy(grpc_port: int, upstream: int, server_pid: int, sessions: int, rate: float,
               passage: dict[str, str]) -> dict[str, Any]:
    # server.py's helpers (imported here: server.py imports this module)
    from server import _beside_upstream, _cpu_s, _open_loop, _pct, _ticker

    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}",
                                          options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(CHANNELS)]
    try:
        await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), 30) for ch in channels))
        stubs = [pb_grpc.AgentStub(ch) for ch in channels]
        given = pb.PassageIn(**passage)

        def one(n: int) -> Any:
            request = pb.AskRequest(id=f"grpc-load-{n}", text="when does the ferry leave?",
                                    mode=pb.ASK_MODE_LLM, passages=[given])
            return _ask(stubs[n % CHANNELS], request)

        gc.collect()
        gc.freeze()
        try:
            await _open_loop(min(100, sessions), rate, lambda n: one(-n - 1))  # warm-up
            lags: list[float] = []
            ticker = asyncio.create_task(_ticker(lags))
            cpu0, client0 = _cpu_s(server_pid), time.thread_time()
            server = await _open_loop(sessions, rate, one)
            server_cpu, client_cpu = _cpu_s(server_pid) - cpu0, time.thread_time() - client0
            ticker.cancel()
        finally:
            gc.unfreeze()
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))
    stats = await _beside_upstream(server, upstream, sessions, rate)
    return {"asks": len(server), "channels": CHANNELS, **stats,
            "server_cpu_ms_per_ask": round(server_cpu * 1000 / len(server), 2),
            "client_cpu_ms_per_ask": round(client_cpu * 1000 / len(server), 2),
            "client_lag_p99_ms": round(_pct(lags, 99), 1)}
