"""Hardening of the server's edges (issue 15, items 3, 7, 8 and 11), on a real server process
with tokens, one allowed origin and a small message limit:

- request bodies are authenticated and size-checked before they are read, and read only up to
  the limit, chunked ones too (an unauthenticated 100 MB body does not grow the server);
- a token in a WebSocket query string never reaches the logs;
- CORS: preflights for allowed origins are answered, responses to them carry
  `Access-Control-Allow-Origin`, other origins are refused;
- a request reusing a running request's id is refused with an `error` that is not attributed
  to that id, so the running request still has exactly one terminal event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from ..support.processes import FakeUpstream, Server, bearer_headers, token_server
from .conftest import QUESTION, RECV_TIMEOUT_S, sse_events, ws_client

GOOD = "http://good.test"
EVIL = "http://evil.test"
LIMIT = 4096
MB = 1 << 20
QUERY_SECRET = "SECRET123"


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with token_server(tmp_path_factory.mktemp("hardened"), ["alice"], "--allow-origin", GOOD,
                      "--rate", "0", "--max-message-bytes", str(LIMIT)) as srv:
        yield srv


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# ---- item 3: bodies are guarded before they are read -------------------------------------


def proc_status(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` memory field (`VmRSS`, `VmHWM`), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's peak RSS (`VmHWM`) to its current RSS (Linux 4.0+)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """`total` bytes as a generator: httpx sends it chunked, without a Content-Length."""
    piece = b"x" * size
    for _ in range(total // size):
        yield piece


def test_an_unauthenticated_big_body_is_refused_without_reading_it(hardened: Server) -> None:
    pid = hardened.proc.popen.pid
    before = proc_status(pid, "VmRSS")
    peak_reset = reset_peak_rss(pid)
    t0 = time.monotonic()
    for headers in ({"Content-Length": str(100 * MB)}, {}):  # declared, then chunked
        response = httpx.post(f"{hardened.http}/v1/ask", content=chunks(100 * MB),
                              headers=headers, timeout=RECV_TIMEOUT_S)
        assert response.status_code == 401
        assert error_code(response) == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert time.monotonic() - t0 < RECV_TIMEOUT_S
    growth = proc_status(pid, "VmHWM" if peak_reset else "VmRSS") - before
    # reading either body whole would have grown the server by at least 100 MB
    assert growth < 50 * MB, f"the server grew by {growth / MB:.0f} MB"
    assert hardened.readyz()["ready"] is True


def test_a_declared_oversized_body_is_too_large_before_it_is_read(hardened: Server) -> None:
    response = httpx.post(f"{hardened.http}/v1/ask", content=b"x" * (LIMIT + 1),
                          headers={**bearer_headers(hardened), "Content-Type": "application/json"},
                          timeout=RECV_TIMEOUT_S)
    assert response.status_code == 413
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "type"}
    assert body["error"]["code"] == "too_large"
    assert str(LIMIT) in body["error"]["message"]


def test_a_chunked_oversized_body_is_too_large(hardened: Server) -> None:
    response = httpx.post(f"{hardened.http}/v1/ask", content=chunks(MB, 1024),
                          headers={**bearer_headers(hardened), "Content-Type": "application/json"},
                          timeout=RECV_TIMEOUT_S)
    assert "content-length" not in response.request.headers  # it was sent chunked
    assert response.status_code == 413
    assert error_code(response) == "too_large"


def test_a_chunked_body_within_the_limit_is_answered(hardened: Server) -> None:
    body = json.dumps({"text": QUESTION, "mode": "local"}).encode()
    response = httpx.post(f"{hardened.http}/v1/ask", content=iter([body[:10], body[10:]]),
                          headers={**bearer_headers(hardened), "Content-Type": "application/json"},
                          timeout=RECV_TIMEOUT_S)
    assert "content-length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert sse_events(response.text)[-1][0] in ("done", "error")
    # and the body still reaches validation: a bad one is a protocol error, not a 500
    response = httpx.post(f"{hardened.http}/v1/ask", content=b"{", headers={
        **bearer_headers(hardened), "Content-Type": "application/json"}, timeout=RECV_TIMEOUT_S)
    assert (response.status_code, error_code(response)) == (400, "bad_json")


def test_a_body_from_a_foreign_origin_is_refused_before_it_is_read(hardened: Server) -> None:
    response = httpx.post(f"{hardened.http}/v1/ask", content=b"x" * (LIMIT + 1),
                          headers={**bearer_headers(hardened), "Origin": EVIL}, timeout=RECV_TIMEOUT_S)
    assert response.status_code == 403  # not 413: the origin is checked first
    assert error_code(response) == "forbidden_origin"


# ---- item 7: tokens in a query string stay out of the logs -------------------------------


async def test_a_token_in_the_ws_query_string_never_reaches_the_logs(hardened: Server) -> None:
    url = f"{hardened.ws_url}?token={QUERY_SECRET}"
    # refused (the query is not a place for tokens) and accepted with one: both are logged
    for offered in ([], [Subprotocol(f"bearer.{hardened.tokens['alice']}")]):
        conn = await asyncio.wait_for(connect(url, subprotocols=offered or None,
                                              open_timeout=RECV_TIMEOUT_S), RECV_TIMEOUT_S)
        try:
            if not offered:
                event = json.loads(await asyncio.wait_for(conn.recv(), RECV_TIMEOUT_S))
                assert event["code"] == "unauthorized"
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(conn.recv(), RECV_TIMEOUT_S)
        finally:
            await conn.close()
    async with httpx.AsyncClient(timeout=RECV_TIMEOUT_S) as client:
        response = await client.get(f"{hardened.http}/healthz?token={QUERY_SECRET}")
    assert response.status_code == 200
    deadline = time.monotonic() + RECV_TIMEOUT_S  # a safety net: the lines are written at once
    while True:
        accepted = [line["message"] for line in hardened.log()
                    if "WebSocket /v1/ws" in line.get("message", "")]
        if len(accepted) >= 2:
            break
        assert time.monotonic() < deadline, accepted
        await asyncio.sleep(0.05)
    assert all("/v1/ws?[redacted]" in message for message in accepted), accepted
    assert QUERY_SECRET not in hardened.proc.stderr()


# ---- item 8: CORS ------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered(hardened: Server) -> None:
    response = httpx.options(f"{hardened.http}/v1/ask", headers={
        "Origin": GOOD, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"},
        timeout=RECV_TIMEOUT_S)
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == GOOD
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip().lower()
               for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "origin" in response.headers["vary"].lower()


def test_a_preflight_from_a_foreign_origin_is_forbidden(hardened: Server) -> None:
    response = httpx.options(f"{hardened.http}/v1/ask", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST"}, timeout=RECV_TIMEOUT_S)
    assert response.status_code == 403
    assert error_code(response) == "forbidden_origin"
    assert "access-control-allow-origin" not in response.headers


def test_responses_to_an_allowed_origin_carry_cors_headers(hardened: Server) -> None:
    response = httpx.post(f"{hardened.http}/v1/ask", json={"text": QUESTION, "mode": "local"},
                          headers={**bearer_headers(hardened), "Origin": GOOD}, timeout=RECV_TIMEOUT_S)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == GOOD
    assert "origin" in response.headers["vary"].lower()
    # a refusal too, so the page can read why
    refused = httpx.post(f"{hardened.http}/v1/ask", json={"text": QUESTION},
                         headers={"Origin": GOOD}, timeout=RECV_TIMEOUT_S)
    assert (refused.status_code, error_code(refused)) == (401, "unauthorized")
    assert refused.headers["access-control-allow-origin"] == GOOD
    # a foreign origin gets no CORS header, and no answer
    evil = httpx.post(f"{hardened.http}/v1/ask", json={"text": QUESTION, "mode": "local"},
                      headers={**bearer_headers(hardened), "Origin": EVIL}, timeout=RECV_TIMEOUT_S)
    assert (evil.status_code, error_code(evil)) == (403, "forbidden_origin")
    assert "access-control-allow-origin" not in evil.headers


# ---- item 11: a duplicate id does not end the running request ----------------------------


async def test_a_duplicate_id_in_flight_leaves_one_terminal_event_for_that_id(
        hardened: Server) -> None:
    fake = hardened.fake
    assert isinstance(fake, FakeUpstream)
    fake.control(delay=0.05)  # the first answer takes a while to stream
    try:
        async with ws_client(hardened, token=hardened.tokens["alice"]) as ws:
            message = {"v": 1, "type": "ask", "id": "same", "text": QUESTION, "mode": "llm"}
            await ws.send(message)
            await ws.send(message)
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1].get("id") != "same" or seen[-1]["type"] not in (
                    "done", "error"):
                seen.append(await ws.recv())
            # the running request's end, and its log line, are its own
            status = await ws.status()
    finally:
        fake.control()
    refusals = [e for e in seen if e["id"] is None]
    assert [(e["type"], e["code"]) for e in refusals] == [("error", "bad_message")], seen
    assert "'same'" in refusals[0]["message"]
    terminal = [e for e in seen if e["id"] == "same" and e["type"] in ("done", "error")]
    assert [e["type"] for e in terminal] == ["done"], seen
    assert status["protocol"] == 1
    deadline = time.monotonic() + RECV_TIMEOUT_S  # a safety net: logged as the done went out
    while True:
        outcomes = [line["outcome"] for line in hardened.log()
                    if line.get("event") == "request" and line.get("request_id") == "same"]
        if outcomes:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert outcomes == ["ok"]  # the refusal was not logged as the request's end
