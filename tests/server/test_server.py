"""The agent server as its users see it: real server and fake-upstream processes on loopback.

Covers the browser protocol over WebSocket, SSE answers, health/metrics/docs/schema, LLM
retries, mid-stream drops, the circuit breaker, deadlines, and the security guards (tokens,
origins, rate and size limits, secrets kept out of the logs).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import httpx
import openai
import pytest
from websockets.exceptions import ConnectionClosed

from wasmagent.hosts.cli import build_parser
from wasmagent.hosts.server.app import loop_factory
from wasmagent.hosts.server.config import ServerConfig
from wasmagent.hosts.server.security import digest
from wasmagent.hosts.server.sessions import CorkedTransport
from wasmagent.protocol import json_schema

from ..support.processes import (
    LLM_KEY,
    ROOT,
    FakeUpstream,
    Server,
    start_fake,
    start_server,
    token_server,
)
from .conftest import QUESTION, RECV_TIMEOUT_S, seed, sse_events, ws_client

NOTICE = "LLM failed ("
LOCAL_WORDS = "service worker keeps every file cached"


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def deltas(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


def answer(events: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [e for e in events if e["type"] == "answer"]
    return found


def assert_answer_shape(events: list[dict[str, Any]]) -> None:
    """delta+ citation* answer done, in that order, and the deltas spell the answer."""
    assert re.fullmatch(r"(delta,)+(citation,)*answer,done", ",".join(kinds(events))), kinds(events)
    assert deltas(events) == answer(events)["text"]


async def ask(srv: Server, mode: str = "auto", text: str = QUESTION) -> list[dict[str, Any]]:
    async with ws_client(srv) as ws:
        return await ws.request({"type": "ask", "text": text, "mode": mode})


async def heal(srv: Server) -> None:
    """One successful LLM answer: resets the breaker's count of consecutive failures, so each
    test starts from a healthy upstream."""
    events = await ask(srv, "llm")
    assert answer(events)["route"] == "llm", events


async def until_logged(srv: Server, request_id: str, count: int) -> list[str]:
    """Wait until the server has logged the end of `count` requests with id `request_id` (it
    does once their work has unwound); their outcomes."""
    deadline = time.monotonic() + RECV_TIMEOUT_S  # a safety net
    while True:
        outcomes = [line["outcome"] for line in srv.log()
                    if line.get("event") == "request" and line["request_id"] == request_id]
        if len(outcomes) >= count:
            return outcomes
        assert time.monotonic() < deadline, f"{len(outcomes)} of {count} {request_id!r} logged"
        await asyncio.sleep(0.05)


@pytest.fixture
async def healthy(server: Server, fake: FakeUpstream) -> AsyncIterator[FakeUpstream]:
    assert server.readyz()["llm"] == "closed"
    yield fake
    fake.control()
    await heal(server)


# ---- the wire format of the fake upstream ---------------------------------------------------


def test_the_official_openai_client_accepts_the_fake_upstream(main_fake: FakeUpstream) -> None:
    client = openai.OpenAI(base_url=main_fake.base_url, api_key=LLM_KEY, max_retries=0,
                           timeout=RECV_TIMEOUT_S)
    messages: Any = [{"role": "user", "content": "Passages:\n\n[1] Doc (a.md)\nThe sky is "
                      "blue today.\n\nQuestion: what colour is the sky?"}]
    whole = client.chat.completions.create(model="fake", messages=messages)
    text = whole.choices[0].message.content
    assert text == "According to [1], The sky is blue today."
    assert whole.choices[0].finish_reason == "stop"
    pieces = []
    finishes = []
    for chunk in client.chat.completions.create(model="fake", messages=messages, stream=True):
        assert chunk.object == "chat.completion.chunk"
        pieces.append(chunk.choices[0].delta.content or "")
        finishes.append(chunk.choices[0].finish_reason)
    assert "".join(pieces) == text
    assert finishes[-1] == "stop"
    wrong = openai.OpenAI(base_url=main_fake.base_url, api_key="sk-wrong", max_retries=0,
                          timeout=RECV_TIMEOUT_S)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="fake", messages=messages)


# ---- the browser protocol over WebSocket ----------------------------------------------------


async def test_ws_ask_streams_llm_deltas_then_citations_answer_and_done(
        server: Server, healthy: FakeUpstream) -> None:
    before = healthy.requests()
    async with ws_client(server) as ws:
        assert ws.conn.subprotocol == "wasmagent.v1"
        events = await ws.request({"type": "ask", "text": QUESTION, "mode": "auto"})
    assert_answer_shape(events)
    assert len([e for e in events if e["type"] == "delta"]) > 5  # token by token, not one blob
    final = answer(events)
    assert final["route"] == "llm"
    assert final["text"].startswith("According to [1], After the first visit")
    citations = [e for e in events if e["type"] == "citation"]
    assert citations[0]["source"] == "guide/offline.md"
    assert final["citations"][0]["source"] == "guide/offline.md"
    assert all(e["id"] == events[0]["id"] for e in events)
    assert healthy.requests() == before + 1


async def test_ws_status_reports_the_server_core(server: Server) -> None:
    async with ws_client(server) as ws:
        status = await ws.status()
    assert status["protocol"] == 1
    assert status["host"] == "native"
    assert status["model"] is True
    assert status["store"] is True
    assert status["llm"]["available"] is True


async def test_a_malformed_message_gets_a_typed_error_and_the_connection_stays_usable(
        server: Server) -> None:
    cases: list[tuple[str | bytes, str, str | None]] = [
        ("{not json", "bad_json", None),
        ("[1, 2]", "bad_json", None),
        (b"\xff\xfe\xfd", "bad_json", None),
        ('{"v": 2, "type": "status", "id": "v2"}', "unsupported_version", "v2"),
        ('{"v": 1, "type": "launch", "id": "t1"}', "bad_message", "t1"),
        ('{"v": 1, "type": "ask", "id": "a1", "text": "hi", "extra": 1}', "bad_message", "a1"),
        ('{"v": 1, "type": "ask", "id": "a2", "text": "hi", "top_k": "5"}', "bad_message", "a2"),
    ]
    async with ws_client(server) as ws:
        for raw, code, rid in cases:
            await ws.send(raw)
            event = await ws.recv()
            assert (event["type"], event["code"], event["id"]) == ("error", code, rid), raw
            assert event["message"]
        assert (await ws.status())["protocol"] == 1


async def test_request_ids_with_lone_surrogates_are_echoed_and_the_socket_survives(
        server: Server) -> None:
    # "\ud800" is valid JSON but not encodable as UTF-8, the WebSocket's text encoding
    async with ws_client(server) as ws:
        await ws.send('{"v": 1, "type": "status", "id": "s\\ud800"}')
        events = await ws.until_terminal("s\ud800")
        assert kinds(events) == ["result", "done"]
        await ws.send('{"v": 1, "type": "nope", "id": "\\udfff"}')
        event = await ws.recv()
        assert (event["type"], event["code"], event["id"]) == ("error", "bad_message", "\udfff")
        assert (await ws.status())["protocol"] == 1


async def test_requests_of_a_client_that_leaves_are_cancelled_logged_and_not_in_flight(
        server: Server, healthy: FakeUpstream) -> None:
    healthy.control(delay=0.05)  # answers take a while: the client leaves mid-answer
    async with ws_client(server) as ws:
        for n in range(3):  # ... and right after sending, before some of them even started
            await ws.send({"v": 1, "type": "ask", "id": f"gone{n}", "text": QUESTION,
                           "mode": "llm"})
    deadline = time.monotonic() + RECV_TIMEOUT_S  # a safety net: waits for the log lines
    while True:
        outcomes = {line["request_id"]: line["outcome"] for line in server.log()
                    if line.get("event") == "request" and line["request_id"].startswith("gone")}
        if len(outcomes) == 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert outcomes == {f"gone{n}": "cancelled" for n in range(3)}
    # the gauge is shared with requests other tests may still be unwinding: wait for it
    while not re.search(r"^wasmagent_in_flight_requests 0$", metrics := server.metrics(),
                        re.MULTILINE):
        assert time.monotonic() < deadline, metrics
        await asyncio.sleep(0.05)


# ---- Server-Sent Events ----------------------------------------------------------------------


def test_post_ask_streams_server_sent_events(server: Server) -> None:
    with httpx.stream("POST", f"{server.http}/v1/ask", json={"text": QUESTION},
                      timeout=RECV_TIMEOUT_S) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    events = sse_events(body)
    assert [name for name, _ in events] == [data["type"] for _, data in events]
    assert_answer_shape([data for _, data in events])
    assert answer([data for _, data in events])["route"] == "llm"


@pytest.mark.parametrize(("body", "code"), [
    ({"text": ""}, "bad_message"),
    ({"text": "q", "top_k": 0}, "bad_message"),
    ({"text": "q", "mode": "psychic"}, "bad_message"),
    ({}, "bad_message"),
    ("{not json", "bad_json"),
])
def test_a_bad_http_ask_gets_a_protocol_error(server: Server, body: Any, code: str) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    response = httpx.post(f"{server.http}/v1/ask", content=content, timeout=RECV_TIMEOUT_S,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


# ---- health, metrics, docs, schema -----------------------------------------------------------


def test_health_and_readiness(server: Server) -> None:
    assert httpx.get(f"{server.http}/healthz", timeout=RECV_TIMEOUT_S).json() == {"status": "ok"}
    ready = httpx.get(f"{server.http}/readyz", timeout=RECV_TIMEOUT_S)
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "model": True, "store": "sqlite", "llm": "closed",
                            "stalled": []}


def test_docs_openapi_and_protocol_schema(server: Server) -> None:
    docs = httpx.get(f"{server.http}/docs", timeout=RECV_TIMEOUT_S)
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    api = httpx.get(f"{server.http}/openapi.json", timeout=RECV_TIMEOUT_S).json()
    assert {"/healthz", "/readyz", "/metrics", "/v1/ask", "/v1/protocol.schema.json"} <= set(
        api["paths"])
    schema = httpx.get(f"{server.http}/v1/protocol.schema.json", timeout=RECV_TIMEOUT_S)
    assert schema.status_code == 200
    assert schema.json() == json_schema()


async def test_metrics_are_prometheus_text(server: Server, healthy: FakeUpstream) -> None:
    await ask(server, "llm")
    healthy.control(["fail400"])
    assert (await ask(server, "llm"))[-1]["code"] == "upstream_failed"
    text = server.metrics()
    lines = text.splitlines()
    typed = Counter(line.split()[2] for line in lines if line.startswith("# TYPE "))
    assert typed, text
    assert max(typed.values()) == 1, [m for m, n in typed.items() if n > 1]
    samples = [line for line in lines if line and not line.startswith("#")]
    for line in samples:
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        assert name is not None, line
        family = re.sub(r"_(bucket|sum|count)$", "", name.group(0))
        assert name.group(0) in typed or family in typed, f"no # TYPE for {line}"
        float(line.rsplit(" ", 1)[1])
    assert typed["wasmagent_requests_total"] == 1
    assert re.search(r'^wasmagent_requests_total\{client="127\.0\.0\.1",type="ask"\} [1-9]', text,
                     re.MULTILINE)
    assert re.search(r'^wasmagent_responses_total\{outcome="upstream_failed",type="ask"\} [1-9]',
                     text, re.MULTILINE)
    assert re.search(r'^wasmagent_stage_latency_ms_bucket\{le="\+Inf",stage="work"\} [1-9]', text,
                     re.MULTILINE)
    assert re.search(r'^wasmagent_stage_latency_ms_count\{stage="total"\} [1-9]', text,
                     re.MULTILINE)
    assert re.search(r'^wasmagent_upstream_errors_total\{kind="request"\} [1-9]', text,
                     re.MULTILINE)
    for gauge in ("wasmagent_in_flight_requests", "wasmagent_queue_depth",
                  "wasmagent_websocket_connections", "wasmagent_upstream_breaker_open"):
        assert re.search(rf"^{gauge} \d", text, re.MULTILINE), gauge
    # every request above has ended, and its connection has closed
    assert re.search(r"^wasmagent_in_flight_requests 0$", text, re.MULTILINE), text


# ---- the socket under the WebSocket ---------------------------------------------------------


class RecordingTransport:
    """An asyncio transport's write side, recording each write (one `send()` each)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed


async def test_writes_in_one_loop_tick_leave_in_one_write_in_order() -> None:
    real = RecordingTransport()
    corked = CorkedTransport(cast(asyncio.Transport, real))
    for frame in (b"a", b"bc", b"d"):
        corked.write(frame)
    assert real.writes == []  # nothing leaves during the tick...
    await asyncio.sleep(0)
    assert real.writes == [b"abcd"]  # ...then all of it, once, in order
    corked.write(b"e")
    corked.write(b"f")
    corked.close()  # closing sends what is waiting first
    assert (real.writes, real.closed) == ([b"abcd", b"ef"], True)
    await asyncio.sleep(0)
    assert real.writes == [b"abcd", b"ef"]  # the scheduled flush finds nothing left
    assert corked.is_closing()  # everything else is the real transport's


async def test_an_aborted_corked_transport_drops_what_waits() -> None:
    real = RecordingTransport()
    corked = CorkedTransport(cast(asyncio.Transport, real))
    corked.write(b"never")
    corked.abort()
    await asyncio.sleep(0)
    assert (real.writes, real.aborted) == ([], True)


async def test_a_burst_of_events_arrives_as_separate_frames_in_order(
        server: Server, healthy: FakeUpstream) -> None:
    # the upstream's whole answer comes in one read: its deltas leave in one socket write,
    # and the client still gets one protocol event per WebSocket frame
    async with ws_client(server) as ws:
        for n in range(3):
            await ws.send({"v": 1, "type": "status", "id": f"b{n}"})
        events = [await ws.recv() for _ in range(6)]
        asked = await ws.request({"type": "ask", "text": QUESTION, "mode": "llm"})
    assert sorted((e["id"], e["type"]) for e in events) == [
        (f"b{n}", kind) for n in range(3) for kind in ("done", "result")]
    assert_answer_shape(asked)


def test_the_event_loop_is_uvloop_when_installed_unless_asked_otherwise() -> None:
    assert build_parser().parse_args(["server"]).loop == "auto"
    assert loop_factory("asyncio") is None
    factory = loop_factory("auto")
    assert factory is not None  # uvloop is pinned in requirements-dev.txt
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


# ---- retries, drops, fallback ----------------------------------------------------------------


async def test_two_503s_are_retried_and_the_answer_still_comes_from_the_llm(
        server: Server, healthy: FakeUpstream) -> None:
    healthy.control(["fail503", "fail503"])
    before = healthy.requests()
    events = await ask(server, "llm")
    assert_answer_shape(events)
    assert answer(events)["route"] == "llm"
    assert healthy.requests() == before + 3


async def test_a_400_is_not_retried_and_fails_an_llm_mode_ask(
        server: Server, healthy: FakeUpstream) -> None:
    healthy.control(["fail400"])
    before = healthy.requests()
    events = await ask(server, "llm")
    assert kinds(events) == ["error"]
    assert events[0]["code"] == "upstream_failed"
    assert "400" in events[0]["message"]
    assert healthy.requests() == before + 1


async def test_a_400_in_auto_mode_falls_back_to_the_local_answer(
        server: Server, healthy: FakeUpstream) -> None:
    healthy.control(["fail400"])
    events = await ask(server, "auto")
    assert_answer_shape(events)
    final = answer(events)
    assert final["route"] == "llm_fallback"
    assert NOTICE in final["text"]
    assert LOCAL_WORDS in final["text"]
    assert final["citations"][0]["source"] == "guide/offline.md"


async def test_a_drop_mid_stream_fails_an_llm_mode_ask_after_some_deltas(
        server: Server, healthy: FakeUpstream) -> None:
    healthy.control(["drop"])
    before = healthy.requests()
    events = await ask(server, "llm")
    assert kinds(events)[-1] == "error"
    assert events[-1]["code"] == "upstream_failed"
    assert set(kinds(events)[:-1]) == {"delta"}
    assert deltas(events).startswith("According to")
    assert healthy.requests() == before + 1  # text was shown: a retry would repeat it


async def test_a_drop_mid_stream_in_auto_mode_keeps_the_words_and_adds_the_local_answer(
        server: Server, healthy: FakeUpstream) -> None:
    healthy.control(["drop"])
    events = await ask(server, "auto")
    assert_answer_shape(events)
    final = answer(events)
    assert final["route"] == "llm_fallback"
    shown, _, rest = final["text"].partition("\n\n[The ")
    assert shown.startswith("According to")  # what the user already saw stays
    assert NOTICE in rest
    assert LOCAL_WORDS in rest


# ---- deadlines -------------------------------------------------------------------------------


async def test_a_hanging_upstream_ends_the_ask_with_a_typed_error(
        server: Server, healthy: FakeUpstream) -> None:
    healthy.control(["hang", "hang", "hang"])
    # every receive is bounded by RECV_TIMEOUT_S: an error event means the server ended it
    events = await ask(server, "llm")
    assert kinds(events) == ["error"]
    assert events[0]["code"] in ("upstream_failed", "deadline_exceeded")


async def test_a_too_slow_upstream_in_auto_mode_still_gets_an_answer(
        server: Server, healthy: FakeUpstream) -> None:
    healthy.control(["slow", "slow", "slow"], delay=10.0)  # far slower than --llm-timeout 1.5
    events = await ask(server, "auto")
    assert_answer_shape(events)
    assert answer(events)["route"] == "llm_fallback"
    assert LOCAL_WORDS in answer(events)["text"]


# ---- the circuit breaker ---------------------------------------------------------------------


def test_breaker_defaults_are_five_failures_and_thirty_seconds() -> None:
    args = build_parser().parse_args(["server"])
    assert (args.llm_breaker_threshold, args.llm_breaker_reset) == (5, 30.0)
    config = ServerConfig()
    assert (config.llm_breaker_threshold, config.llm_breaker_reset_s) == (5, 30.0)


@pytest.fixture(scope="module")
def breaker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir = tmp_path_factory.mktemp("breaker")
    fake = start_fake(log_dir)
    try:
        srv = start_server(log_dir, fake, "--rate", "0", "--llm-breaker-threshold", "3",
                           "--llm-breaker-reset", "2")
        try:
            asyncio.run(seed(srv))
            yield srv
        finally:
            srv.proc.stop()
    finally:
        fake.stop()


async def test_clients_leaving_mid_answer_do_not_open_the_breaker(breaker_server: Server
                                                                  ) -> None:
    assert breaker_server.fake is not None
    breaker_server.fake.control(delay=0.3)
    try:
        for _ in range(4):  # more than the threshold of 3
            async with ws_client(breaker_server) as ws:
                await ws.send({"v": 1, "type": "ask", "id": "bye", "text": QUESTION,
                               "mode": "llm"})
                assert (await ws.recv())["type"] == "delta"
            # the socket is closed here: the server cancels the answer
        await until_logged(breaker_server, "bye", 4)  # the server is done with all four
        assert breaker_server.readyz()["llm"] == "closed"
    finally:
        breaker_server.fake.control()
    assert answer(await ask(breaker_server, "llm"))["route"] == "llm"


async def test_the_breaker_opens_fails_fast_and_closes_after_the_reset(breaker_server: Server
                                                                       ) -> None:
    fake = breaker_server.fake
    assert fake is not None
    fake.control(["fail500"] * 50)
    before = fake.requests()
    events = await ask(breaker_server, "llm")
    assert events[-1]["code"] == "upstream_failed"
    assert fake.requests() == before + 3  # three attempts, three failures: the threshold
    assert breaker_server.readyz()["llm"] == "open"
    for _ in range(3):
        events = await ask(breaker_server, "llm")
        assert kinds(events) == ["error"]
        assert events[0]["code"] == "upstream_unavailable"
    assert fake.requests() == before + 3  # failed fast: the upstream saw nothing more
    local = await ask(breaker_server, "auto")  # auto mode answers locally meanwhile
    assert_answer_shape(local)
    assert answer(local)["route"] == "retrieve"
    assert re.search(r"^wasmagent_upstream_breaker_open 1$", breaker_server.metrics(),
                     re.MULTILINE)

    fake.control()  # the upstream recovers
    deadline = time.monotonic() + RECV_TIMEOUT_S  # a safety net: the reset is 2 s
    while breaker_server.readyz()["llm"] != "half_open":
        assert time.monotonic() < deadline, "the breaker never became half-open"
        await asyncio.sleep(0.1)
    events = await ask(breaker_server, "llm")
    assert answer(events)["route"] == "llm"
    assert fake.requests() == before + 4  # one trial call
    assert breaker_server.readyz()["llm"] == "closed"


# ---- security --------------------------------------------------------------------------------

GOOD = "http://good.test"
EVIL = "http://evil.test"
TOKEN_NAMES = ("alice", "bob", "ratehttp", "ratews", "sizes", "docs", "scraper")


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with token_server(tmp_path_factory.mktemp("secure"), TOKEN_NAMES, "--allow-origin", GOOD,
                      "--rate", "2", "--burst", "2", "--max-message-bytes", "4096",
                      "--max-document-bytes", "1000") as srv:
        yield srv


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_token_file_holds_only_digests(secure: Server) -> None:
    assert secure.tokens_file is not None
    content = secure.tokens_file.read_text()
    lines = content.splitlines()
    assert len(lines) == len(TOKEN_NAMES)
    for line, name in zip(lines, TOKEN_NAMES, strict=True):
        client, hexdigest = line.split()
        assert client == name
        assert hexdigest == digest(secure.tokens[name])
    for token in secure.tokens.values():
        assert token not in content


def test_the_token_command_prints_a_token_and_the_line_to_store() -> None:
    done = subprocess.run([sys.executable, "-m", "wasmagent", "token", "carol"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=True)
    line, token = done.stdout.split("add this line to the tokens file: ")[1].splitlines()[:3:2]
    assert line == f"carol {digest(token)}"


def test_http_without_or_with_a_wrong_token_is_unauthorized(secure: Server) -> None:
    for headers in ({}, auth("wa_wrong"), {"Authorization": "Basic YTpi"},
                    auth(digest(secure.tokens["alice"]))):
        response = httpx.post(f"{secure.http}/v1/ask", json={"text": "hi"}, headers=headers,
                              timeout=RECV_TIMEOUT_S)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


def test_http_with_the_token_answers(secure: Server) -> None:
    response = httpx.post(f"{secure.http}/v1/ask", json={"text": QUESTION, "mode": "llm"},
                          headers=auth(secure.tokens["alice"]), timeout=RECV_TIMEOUT_S)
    assert response.status_code == 200
    events = [data for _, data in sse_events(response.text)]
    assert kinds(events)[-1] == "done"
    assert answer(events)["route"] == "llm"  # the upstream accepted our LLM key


@pytest.mark.parametrize("offer", [(), ("bearer.wa_wrong",), ("wasmagent.v1", "bearer.")])
async def test_ws_without_a_valid_token_gets_unauthorized_then_close_1008(
        secure: Server, offer: tuple[str, ...]) -> None:
    async with ws_client(secure, subprotocols=offer) as ws:
        event = await ws.recv()
        assert (event["type"], event["code"]) == ("error", "unauthorized")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008


async def test_ws_with_the_token_as_a_subprotocol_works(secure: Server) -> None:
    async with ws_client(secure, token=secure.tokens["bob"]) as ws:
        assert ws.conn.subprotocol == "wasmagent.v1"  # the token is never echoed back
        assert (await ws.status())["protocol"] == 1
    async with ws_client(secure, subprotocols=(), headers=auth(secure.tokens["bob"])) as ws:
        assert (await ws.status())["protocol"] == 1


def test_metrics_need_a_token_when_tokens_are_enabled(secure: Server) -> None:
    # the counters name clients; liveness and readiness probes stay open
    for headers in ({}, auth("wa_wrong"), auth(digest(secure.tokens["scraper"]))):
        response = httpx.get(f"{secure.http}/metrics", headers=headers, timeout=RECV_TIMEOUT_S)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert "wasmagent_requests_total" not in response.text
    for _ in range(3):  # a scraper is not rate-limited
        response = httpx.get(f"{secure.http}/metrics", headers=auth(secure.tokens["scraper"]),
                             timeout=RECV_TIMEOUT_S)
        assert response.status_code == 200
    assert "wasmagent_ready 1" in response.text
    assert httpx.get(f"{secure.http}/healthz", timeout=RECV_TIMEOUT_S).status_code == 200
    assert httpx.get(f"{secure.http}/readyz", timeout=RECV_TIMEOUT_S).status_code == 200


def test_a_foreign_origin_is_forbidden_on_http(secure: Server) -> None:
    token = secure.tokens["alice"]
    evil = httpx.post(f"{secure.http}/v1/ask", json={"text": "hi", "mode": "local"},
                      headers={**auth(token), "Origin": EVIL}, timeout=RECV_TIMEOUT_S)
    assert evil.status_code == 403
    assert evil.json()["error"]["code"] == "forbidden_origin"
    time.sleep(1.1)  # alice's rate-limit bucket refills
    good = httpx.post(f"{secure.http}/v1/ask", json={"text": "hi", "mode": "local"},
                      headers={**auth(token), "Origin": GOOD}, timeout=RECV_TIMEOUT_S)
    assert good.status_code == 200
    assert sse_events(good.text)[-1][0] == "done"


async def test_a_foreign_origin_is_forbidden_on_ws(secure: Server) -> None:
    async with ws_client(secure, token=secure.tokens["bob"], origin=EVIL) as ws:
        event = await ws.recv()
        assert (event["type"], event["code"]) == ("error", "forbidden_origin")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008
    await asyncio.sleep(1.1)
    async with ws_client(secure, token=secure.tokens["bob"], origin=GOOD) as ws:
        assert (await ws.status())["protocol"] == 1


async def test_the_third_quick_http_request_is_rate_limited(secure: Server) -> None:
    headers = auth(secure.tokens["ratehttp"])
    async with httpx.AsyncClient(timeout=RECV_TIMEOUT_S) as client:
        responses = await asyncio.gather(*[
            client.post(f"{secure.http}/v1/ask", json={"text": "hi", "mode": "local"},
                        headers=headers) for _ in range(3)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429]
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["error"]["code"] == "rate_limited"
    for ok in (r for r in responses if r.status_code == 200):
        assert sse_events(ok.text)[-1][0] == "done"  # a passed request is not charged twice


async def test_the_third_quick_ws_request_is_rate_limited_and_the_connection_stays(
        secure: Server) -> None:
    async with ws_client(secure, token=secure.tokens["ratews"]) as ws:
        for n in range(3):
            await ws.send({"v": 1, "type": "status", "id": f"s{n}"})
        outcomes = {}
        for n in range(3):
            events = await ws.until_terminal(f"s{n}")
            outcomes[f"s{n}"] = events[-1].get("code", events[-1]["type"])
        assert sorted(outcomes.values()) == ["done", "done", "rate_limited"]
        await asyncio.sleep(1.1)
        assert (await ws.status())["protocol"] == 1


async def test_a_ws_message_over_the_size_limit_is_too_large(secure: Server) -> None:
    async with ws_client(secure, token=secure.tokens["sizes"]) as ws:
        await ws.send({"v": 1, "type": "status", "id": "big", "pad": "x" * 5000})
        event = await ws.recv()
        assert (event["type"], event["code"]) == ("error", "too_large")
        # over the limit in bytes even though under it in characters
        await ws.send({"v": 1, "type": "status", "id": "wide", "pad": "é" * 2100})
        event = await ws.recv()
        assert (event["type"], event["code"]) == ("error", "too_large")
        assert (await ws.status())["protocol"] == 1


async def test_an_ingested_document_over_the_size_limit_is_too_large(secure: Server) -> None:
    async with ws_client(secure, token=secure.tokens["docs"]) as ws:
        events = await ws.request({"type": "ingest", "kb": "default", "documents": [
            {"source": "big.md", "text": "# Big\n\n" + "word " * 300}]})
        assert kinds(events) == ["error"]
        assert events[0]["code"] == "too_large"
        assert "big.md" in events[0]["message"]
        await asyncio.sleep(0.6)
        events = await ws.request({"type": "ingest", "kb": "default", "documents": [
            {"source": "small.md", "text": "# Small\n\nA small document."}]})
        assert kinds(events)[-1] == "done"


def test_secrets_never_reach_the_logs(secure: Server) -> None:
    # runs last in this module: every token above was used, and the LLM key was sent upstream
    text = secure.proc.stderr()
    assert LLM_KEY not in text
    for token in secure.tokens.values():
        assert token not in text
        assert token[len("wa_"):] not in text
    log = secure.log()  # every line is JSON
    requests = [line for line in log if line.get("event") == "request"]
    assert requests, text
    for line in requests:
        assert {"request_id", "client", "type", "ms", "outcome"} <= set(line), line
    assert {line["client"] for line in requests} >= {"alice", "ratews", "sizes"}
    stages = [line for line in log if line.get("event") == "stage"]
    assert stages
    for line in stages:
        assert {"request_id", "stage", "ms"} <= set(line), line


def test_the_shared_server_logs_json_lines_without_the_key(server: Server) -> None:
    assert LLM_KEY not in server.proc.stderr()
    log = server.log()
    assert any(line.get("event") == "server_ready" for line in log)
    assert all(isinstance(line.get("ts"), float | int) for line in log)
