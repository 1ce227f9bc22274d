"""gRPC (issue 21, part 1): a real `grpcio` client against a real server process started with
`--grpc-port` and `--tokens` (tests/support/processes.py), beside its HTTP and WebSocket.

Also, without a server: the `.proto` against the protocol's dataclasses and error codes (so
neither can change alone), the status table against every error code, and the committed
generated code against a fresh generation from the `.proto`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from wasmagent.errors import ErrorCode
from wasmagent.hosts.server.grpc_api import agent_pb2 as pb
from wasmagent.hosts.server.grpc_api import agent_pb2_grpc as pb_grpc
from wasmagent.hosts.server.grpc_api.convert import ERROR_CODE_KEY, STATUS
from wasmagent.protocol import (
    ASK_MODES,
    EVENT_TYPES,
    Ask,
    Cancel,
    DocumentIn,
    Ingest,
    PassageIn,
    Status,
    TurnIn,
)

from ..support.processes import ROOT, Server, free_port, start_server, token_server
from .conftest import DOCS, QUESTION, RECV_TIMEOUT_S

PASSAGE = pb.PassageIn(source="ferry.md", title="Ferry", anchor="ferry",
                       text="The ferry to the island leaves at 7:45 every morning from pier 4.")
MAX_MESSAGE_BYTES = 64 * 1024
LOG_TIMEOUT_S = 30.0
"""A safety net while waiting for a server log line that follows an event the test saw."""


# ---- the .proto and the protocol agree ------------------------------------------------------


def _fields(message: Any) -> set[str]:
    return set(message.DESCRIPTOR.fields_by_name)


def _dataclass_fields(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(("protocol", "message"), [
    (Ask, pb.AskRequest), (Ingest, pb.IngestRequest), (Cancel, pb.CancelRequest),
    (Status, pb.StatusRequest), (PassageIn, pb.PassageIn), (DocumentIn, pb.DocumentIn),
    (TurnIn, pb.TurnIn)])
def test_request_messages_have_the_protocol_fields(protocol: type[Any], message: Any) -> None:
    assert _fields(message) == _dataclass_fields(protocol)


def test_every_protocol_event_is_an_event_kind_with_its_fields() -> None:
    kinds = {f.name: f.message_type for f in pb.Event.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert set(kinds) == {cls.TYPE for cls in EVENT_TYPES}
    for cls in EVENT_TYPES:
        assert set(kinds[cls.TYPE].fields_by_name) == _dataclass_fields(cls) - {"id"}, cls.TYPE
    assert _fields(pb.Event) == {"id", *kinds}


def test_error_codes_and_ask_modes_match_the_protocol() -> None:
    names = set(pb.ErrorCode.keys()) - {"ERROR_CODE_UNSPECIFIED"}
    assert names == {f"ERROR_CODE_{code.value.upper()}" for code in ErrorCode}
    modes = set(pb.AskMode.keys()) - {"ASK_MODE_UNSPECIFIED"}
    assert modes == {f"ASK_MODE_{mode.upper()}" for mode in ASK_MODES}
    assert set(STATUS) == set(ErrorCode), "every error code needs a gRPC status"


def test_the_readme_status_table_is_the_mapping() -> None:
    readme = (ROOT / "README.md").read_text().split("### Use it over gRPC", 1)[1]
    documented = {}
    for line in readme.split("\n\n| gRPC status |", 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        status, codes = line.strip("|").split("|")[:2]
        for code in codes.split(";")[0].split(","):
            documented[code.strip().strip("`")] = status.split()[0].strip("`")
    assert documented == {code.value: status.name for code, status in STATUS.items()}


def test_the_committed_generated_code_is_what_the_proto_generates(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for made in generate.generate(tmp_path):
        committed = generate.OUT / made.name
        assert made.read_text() == committed.read_text(), (
            f"{committed} is stale: run `.venv/bin/python proto/generate.py`")


# ---- a real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Tokens for alice and bob, no rate limit, a small message limit; its own upstream."""
    port = free_port()
    with token_server(tmp_path_factory.mktemp("grpc"), ["alice", "bob"], "--rate", "0",
                      "--grpc-port", str(port), "--max-message-bytes",
                      str(MAX_MESSAGE_BYTES)) as srv:
        srv.grpc_port = port  # type: ignore[attr-defined]
        yield srv


@pytest.fixture
async def channel(grpc_server: Server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.grpc_port}") as ch:  # type: ignore[attr-defined]
        yield ch


@pytest.fixture
def upstream(grpc_server: Server) -> Iterator[None]:
    """The server's fake upstream, well-behaved again after the test."""
    assert grpc_server.fake is not None
    yield
    grpc_server.fake.control()


def auth(srv: Server, who: str = "alice") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {srv.tokens[who]}"),)


async def collect(call: Any, events: list[pb.Event] | None = None) -> list[pb.Event]:
    """The call's events up to its end (into `events`, kept when the call fails)."""
    events = [] if events is None else events
    async with asyncio.timeout(RECV_TIMEOUT_S):
        async for event in call:
            events.append(event)
    return events


async def ingest(stub: pb_grpc.AgentStub, srv: Server, who: str, kb: str) -> None:
    request = pb.IngestRequest(kb=kb, documents=[pb.DocumentIn(source=d["source"], text=d["text"])
                                                  for d in DOCS])
    events = await collect(stub.Ingest(request, metadata=auth(srv, who)))
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[-2:] == ["result", "done"], events
    assert "progress" in kinds, events


async def log_line(srv: Server, **match: Any) -> dict[str, Any]:
    """The server's first log line with these fields (it follows an event already seen)."""
    deadline = time.monotonic() + LOG_TIMEOUT_S
    while True:
        for line in srv.log():
            if all(line.get(k) == v for k, v in match.items()):
                return line
        assert time.monotonic() < deadline, f"no log line {match}"
        await asyncio.sleep(0.05)


async def test_a_streamed_answer_with_citations(grpc_server: Server,
                                                channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentStub(channel)
    await ingest(stub, grpc_server, "alice", "default")
    call = stub.Ask(pb.AskRequest(id="q1", text=QUESTION, mode=pb.ASK_MODE_LOCAL),
                    metadata=auth(grpc_server))
    events = await collect(call)
    assert await call.code() == grpc.StatusCode.OK
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[-2:] == ["answer", "done"], kinds
    assert {"delta", "citation"} <= set(kinds), kinds
    assert {e.id for e in events} == {"q1"}
    answer = events[-2].answer
    assert "".join(e.delta.text for e in events if e.HasField("delta")) == answer.text
    assert "offline" in answer.text
    assert answer.citations[0].source == "guide/offline.md"
    assert next(e for e in events if e.HasField("citation")).citation.source == "guide/offline.md"
    assert (await log_line(grpc_server, event="request", request_id="q1"))["outcome"] == "ok"


async def test_status_is_the_status_request_result(grpc_server: Server,
                                                   channel: grpc.aio.Channel) -> None:
    reply = await pb_grpc.AgentStub(channel).Status(pb.StatusRequest(),
                                                    metadata=auth(grpc_server),
                                                    timeout=RECV_TIMEOUT_S)
    assert reply.data["protocol"] == 1
    assert reply.data["model"] is True
    assert "metrics" not in reply.data  # a tenant's status, as on the WebSocket


async def test_a_client_sees_only_its_own_knowledge_bases(grpc_server: Server,
                                                          channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentStub(channel)
    await ingest(stub, grpc_server, "alice", "alices")
    call = stub.Ask(pb.AskRequest(text=QUESTION, kb="alices"), metadata=auth(grpc_server, "bob"))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await collect(call)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert (ERROR_CODE_KEY, "not_found") in tuple(failed.value.trailing_metadata() or ())


async def test_an_invalid_request_is_invalid_argument_with_its_error_event(
        grpc_server: Server, channel: grpc.aio.Channel) -> None:
    call = pb_grpc.AgentStub(channel).Ask(pb.AskRequest(id="empty", text=""),
                                          metadata=auth(grpc_server))
    events: list[pb.Event] = []
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await collect(call, events)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [e.error.code for e in events] == [pb.ERROR_CODE_BAD_MESSAGE]
    assert "text" in failed.value.details()


async def test_a_passed_deadline_cancels_the_request(grpc_server: Server,
                                                     channel: grpc.aio.Channel,
                                                     upstream: None) -> None:
    assert grpc_server.fake is not None
    grpc_server.fake.control(["hang"])  # the LLM never answers
    call = pb_grpc.AgentStub(channel).Ask(
        pb.AskRequest(id="late", text="when does the ferry leave?", mode=pb.ASK_MODE_LLM,
                      passages=[PASSAGE]), metadata=auth(grpc_server), timeout=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await collect(call)
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    line = await log_line(grpc_server, event="request", request_id="late")
    assert line["outcome"] == "deadline_exceeded"
    assert line["client"] == "alice"


async def _first_delta(call: Any) -> pb.Event:
    async with asyncio.timeout(RECV_TIMEOUT_S):
        async for event in call:
            if event.HasField("delta"):
                return event
    raise AssertionError("the answer ended before its first delta")


async def test_a_client_cancelling_mid_stream_stalls_no_one(grpc_server: Server,
                                                            channel: grpc.aio.Channel,
                                                            upstream: None) -> None:
    assert grpc_server.fake is not None
    grpc_server.fake.control(["slow"], delay=0.0)  # 0.5 s between words, this ask only
    stub = pb_grpc.AgentStub(channel)
    leaving = stub.Ask(pb.AskRequest(id="leaver", text="when does the ferry leave?",
                                     mode=pb.ASK_MODE_LLM, passages=[PASSAGE]),
                       metadata=auth(grpc_server))
    await _first_delta(leaving)
    leaving.cancel()
    line = await log_line(grpc_server, event="request", request_id="leaver")
    assert line["outcome"] == "cancelled"
    # another client, on a connection of its own, is answered meanwhile
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{grpc_server.grpc_port}") as other:  # type: ignore[attr-defined]
        events = await collect(pb_grpc.AgentStub(other).Ask(
            pb.AskRequest(text="when does the ferry leave?", mode=pb.ASK_MODE_LLM,
                          passages=[PASSAGE]), metadata=auth(grpc_server, "bob")))
    assert events[-1].HasField("done")
    assert "7:45" in events[-2].answer.text


async def test_the_cancel_rpc_ends_a_running_call(grpc_server: Server,
                                                  channel: grpc.aio.Channel,
                                                  upstream: None) -> None:
    assert grpc_server.fake is not None
    grpc_server.fake.control(["slow"], delay=0.0)
    stub = pb_grpc.AgentStub(channel)
    running = stub.Ask(pb.AskRequest(id="target", text="when does the ferry leave?",
                                     mode=pb.ASK_MODE_LLM, passages=[PASSAGE]),
                       metadata=auth(grpc_server))
    await _first_delta(running)
    # bob cannot cancel alice's call; alice can
    other = await stub.Cancel(pb.CancelRequest(target="target"),
                              metadata=auth(grpc_server, "bob"), timeout=RECV_TIMEOUT_S)
    assert not other.cancelled
    reply = await stub.Cancel(pb.CancelRequest(target="target"), metadata=auth(grpc_server),
                              timeout=RECV_TIMEOUT_S)
    assert reply.cancelled
    assert reply.target == "target"
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await collect(running)
    assert failed.value.code() == grpc.StatusCode.CANCELLED


@pytest.mark.parametrize("token", [None, "wa_not-a-token"])
async def test_a_call_without_a_valid_token_is_unauthenticated(
        grpc_server: Server, channel: grpc.aio.Channel, token: str | None) -> None:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await collect(pb_grpc.AgentStub(channel).Ask(pb.AskRequest(text=QUESTION),
                                                     metadata=metadata))
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (ERROR_CODE_KEY, "unauthorized") in tuple(failed.value.trailing_metadata() or ())


async def test_an_oversized_message_is_refused_and_the_server_goes_on(
        grpc_server: Server, channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.AgentStub(channel)
    big = pb.IngestRequest(kb="big", documents=[pb.DocumentIn(source="big.md",
                                                               text="x" * MAX_MESSAGE_BYTES)])
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await collect(stub.Ingest(big, metadata=auth(grpc_server)))
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    reply = await stub.Status(pb.StatusRequest(), metadata=auth(grpc_server),
                              timeout=RECV_TIMEOUT_S)
    assert reply.data["protocol"] == 1


async def test_health_is_serving_when_ready(grpc_server: Server,
                                            channel: grpc.aio.Channel) -> None:
    assert grpc_server.readyz()["ready"] is True
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "wasmagent.v1.Agent"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service),
                                   timeout=RECV_TIMEOUT_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await health.Check(health_pb2.HealthCheckRequest(service="no.Such"),
                           timeout=RECV_TIMEOUT_S)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_agent_service(grpc_server: Server,
                                                  channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async with asyncio.timeout(RECV_TIMEOUT_S):
        replies = [r async for r in stub.ServerReflectionInfo(ask())]
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"wasmagent.v1.Agent", "grpc.health.v1.Health"} <= names


def test_a_taken_grpc_port_fails_the_start_with_a_reason(grpc_server: Server,
                                                         tmp_path: Path) -> None:
    taken = grpc_server.grpc_port  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="exited") as failed:
        start_server(tmp_path, None, "--grpc-port", str(taken))
    assert f"cannot listen for gRPC on 127.0.0.1:{taken}" in str(failed.value)


async def test_the_per_client_rate_limit_applies_to_calls(tmp_path: Path) -> None:
    port = free_port()
    # two calls of burst, then one per 100 s: the third call is over the limit however slowly
    # this machine runs the first two
    with token_server(tmp_path, ["alice", "bob"], "--rate", "0.01", "--burst", "2",
                      "--grpc-port", str(port), upstream=False) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.AgentStub(ch)
            for _ in range(2):
                await stub.Status(pb.StatusRequest(), metadata=auth(srv), timeout=RECV_TIMEOUT_S)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.Status(pb.StatusRequest(), metadata=auth(srv), timeout=RECV_TIMEOUT_S)
            assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (ERROR_CODE_KEY, "rate_limited") in tuple(failed.value.trailing_metadata()
                                                              or ())
            # per client: bob still has his own burst
            await stub.Status(pb.StatusRequest(), metadata=auth(srv, "bob"),
                              timeout=RECV_TIMEOUT_S)
