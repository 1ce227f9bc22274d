"""`OpenAIChat` over a scripted `HttpStream` handler and a fake clock: retries, the circuit
breaker and backoff, with no sockets and no real waiting."""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, cast

import pytest

from wasmagent.errors import AgentError, ErrorCode, UpstreamError
from wasmagent.llm.chat import ChatConfig, OpenAIChat
from wasmagent.llm.resilience import CircuitBreaker, RetryPolicy
from wasmagent.protocol import PassageIn
from wasmagent.runtime.context import Context

PASSAGES = [PassageIn("guide/offline.md", "Offline", "offline", "A service worker caches it.")]
HANG = object()
"""A script step that never completes (an upstream that stops sending)."""


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def sse(*words: str, done: bool = True) -> bytes:
    """A streamed completion as an OpenAI-compatible upstream sends it."""
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in words]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    return (body + ("data: [DONE]\n\n" if done else "")).encode()


Step = bytes | BaseException | object


class ScriptedHttp:
    """The `HttpStream` port as a handler: each call plays the next script (a list of byte
    pieces to yield, exceptions to raise, or `HANG`); calls beyond the script answer `ok`."""

    def __init__(self, *scripts: Sequence[Step]) -> None:
        self.scripts: deque[Sequence[Step]] = deque(scripts)
        self.calls: list[dict[str, Any]] = []
        self.closed = 0
        self.read_to_end = 0
        self.hanging = asyncio.Event()
        """Set when a call reaches `HANG` (a test clears it to wait for the next one)."""

    async def post_stream(self, url: str, headers: Mapping[str, str], body: bytes, *,
                          timeout: float) -> AsyncIterator[bytes]:  # noqa: ASYNC109
        self.calls.append({"url": url, "headers": dict(headers), "body": json.loads(body),
                           "timeout": timeout})
        script = self.scripts.popleft() if self.scripts else [sse("ok")]
        try:
            for step in script:
                if isinstance(step, BaseException):
                    raise step
                if step is HANG:
                    self.hanging.set()
                    await asyncio.Event().wait()
                assert isinstance(step, bytes)
                yield step
            self.read_to_end += 1  # a body read to its end: its connection can be reused
        finally:
            self.closed += 1


def fail(status: int) -> UpstreamError:
    return UpstreamError(f"HTTP {status}", status=status, retryable=status >= 500)


def make(http: ScriptedHttp, *, attempts: int = 3, threshold: int = 5, reset_after: float = 30.0,
         timeout_s: float = 30.0, key: str | None = None, drain_s: float = 1.0
         ) -> tuple[OpenAIChat, FakeClock, list[str]]:
    clock = FakeClock()
    failures: list[str] = []
    config = ChatConfig("http://127.0.0.1:9/v1/", "fake-model", api_key=key, timeout_s=timeout_s,
                        retry=RetryPolicy(attempts=attempts, base_s=0.2, cap_s=2.0),
                        drain_s=drain_s)
    chat = OpenAIChat(http, config, clock, rng=random.Random(7), on_failure=failures.append,
                      breaker=CircuitBreaker(clock, threshold=threshold, reset_after=reset_after))
    return chat, clock, failures


async def collect(chat: OpenAIChat, ctx: Context | None = None) -> list[str]:
    ctx = ctx or Context("r1", clock=chat._clock)
    return [piece async for piece in chat.stream("does it work offline?", PASSAGES, ctx)]


async def test_a_streamed_answer_arrives_piece_by_piece_with_the_key_and_passages() -> None:
    http = ScriptedHttp([sse("According ", "to ", "[1].")[:40], sse("According ", "to ", "[1].")[40:]])
    chat, _, failures = make(http, key="sk-test")
    assert await collect(chat) == ["According ", "to ", "[1]."]
    (call,) = http.calls
    assert call["url"] == "http://127.0.0.1:9/v1/chat/completions"
    assert call["headers"]["Authorization"] == "Bearer sk-test"
    assert call["body"]["model"] == "fake-model"
    assert call["body"]["stream"] is True
    assert "A service worker caches it." in call["body"]["messages"][1]["content"]
    assert failures == []
    assert chat.breaker.state == "closed"
    assert "sk-test" not in repr(chat.config)


async def test_the_body_after_done_is_read_to_its_end_so_the_connection_is_reused() -> None:
    # the end of a chunked body often arrives after the [DONE] event, in a read of its own
    http = ScriptedHttp([sse("one ", "two"), b"", b": trailing comment\n\n"])
    chat, _, _ = make(http)
    assert await collect(chat) == ["one ", "two"]
    assert http.read_to_end == 1
    assert http.closed == 1


async def test_an_upstream_that_stays_open_after_done_costs_only_the_grace() -> None:
    http = ScriptedHttp([sse("one ", "two"), HANG])
    chat, _, failures = make(http, drain_s=0.05)  # the grace runs on the real loop clock
    assert await asyncio.wait_for(collect(chat), 60) == ["one ", "two"]
    assert (http.read_to_end, http.closed) == (0, 1)  # given up on: its connection closes
    assert failures == []
    assert chat.breaker.state == "closed"


async def test_a_cancel_while_draining_still_cancels() -> None:
    http = ScriptedHttp([sse("one"), HANG])
    chat, clock, _ = make(http, drain_s=30.0)
    ctx = Context("c", clock=clock)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in chat.stream("q", PASSAGES, ctx):
            first.set()

    task = asyncio.ensure_future(consume())
    await first.wait()
    for _ in range(5):  # on into the drain, which hangs
        await asyncio.sleep(0)
    ctx.cancel("the client left")
    with pytest.raises(AgentError) as info:
        await asyncio.wait_for(task, 5)
    assert info.value.code is ErrorCode.CANCELLED
    assert http.closed == 1


async def test_a_failed_call_is_retried_and_then_succeeds() -> None:
    http = ScriptedHttp([fail(503)], [fail(502)], [sse("fine")])
    chat, clock, failures = make(http)
    assert await collect(chat) == ["fine"]
    assert len(http.calls) == 3
    assert chat.retries == 2
    assert len(clock.sleeps) == 2
    assert failures == ["request", "request"]
    assert chat.breaker.failures == 0  # success resets the count


async def test_a_connection_failure_before_any_text_is_retried() -> None:
    http = ScriptedHttp([sse("lost", done=False)[:30], UpstreamError("connection reset")],
                        [sse("again")])
    chat, _, _ = make(http)
    assert await collect(chat) == ["again"]
    assert len(http.calls) == 2


async def test_no_retry_once_pieces_were_streamed() -> None:
    http = ScriptedHttp([sse("one ", "two ", done=False), UpstreamError("connection reset")])
    chat, clock, failures = make(http)
    got: list[str] = []

    async def consume() -> None:
        async for piece in chat.stream("q", PASSAGES, Context("r", clock=clock)):
            got.append(piece)

    with pytest.raises(UpstreamError) as info:
        await consume()
    assert got == ["one ", "two "]
    assert info.value.retryable is False
    assert "after 2 pieces" in info.value.message
    assert len(http.calls) == 1
    assert clock.sleeps == []
    assert failures == ["midstream"]


async def test_a_stream_that_ends_without_done_after_text_is_an_error_not_a_repeat() -> None:
    http = ScriptedHttp([sse("half ", done=False)])
    chat, _, _ = make(http)
    with pytest.raises(UpstreamError):
        await collect(chat)
    assert len(http.calls) == 1


async def test_an_error_chunk_before_any_text_is_retried() -> None:
    error = b'data: {"error": {"message": "overloaded"}}\n\n'
    http = ScriptedHttp([error], [sse("recovered")])
    chat, _, _ = make(http)
    assert await collect(chat) == ["recovered"]
    assert len(http.calls) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_a_client_error_is_not_retried(status: int) -> None:
    http = ScriptedHttp([fail(status)])
    chat, clock, _ = make(http)
    with pytest.raises(UpstreamError) as info:
        await collect(chat)
    assert info.value.code is ErrorCode.UPSTREAM
    assert info.value.status == status
    assert len(http.calls) == 1
    assert clock.sleeps == []


async def test_retries_stop_after_the_policy_attempts() -> None:
    http = ScriptedHttp(*[[fail(500)]] * 10)
    chat, clock, _ = make(http, attempts=4, threshold=100)
    with pytest.raises(UpstreamError):
        await collect(chat)
    assert len(http.calls) == 4
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize("seed", range(20))
async def test_backoff_waits_stay_within_the_policy(seed: int) -> None:
    policy = RetryPolicy(attempts=6, base_s=0.2, cap_s=1.0)
    http = ScriptedHttp(*[[fail(503)]] * 10)
    clock = FakeClock()
    config = ChatConfig("http://127.0.0.1:9/v1", "m", retry=policy)
    chat = OpenAIChat(http, config, clock, rng=random.Random(seed),
                      breaker=CircuitBreaker(clock, threshold=100))
    with pytest.raises(UpstreamError):
        await collect(chat)
    assert len(clock.sleeps) == 5
    for n, wait in enumerate(clock.sleeps, 1):
        assert 0 <= wait <= min(policy.cap_s, policy.base_s * 2 ** (n - 1))


async def test_the_breaker_opens_after_the_threshold_and_fails_fast() -> None:
    http = ScriptedHttp(*[[fail(500)]] * 10)
    chat, _, _ = make(http, attempts=1, threshold=3)
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await collect(chat)
    assert chat.breaker.state == "open"
    assert not chat.available()
    with pytest.raises(AgentError) as info:
        await collect(chat)
    assert info.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert len(http.calls) == 3  # the refused call never reached the upstream
    assert chat.breaker.trips == 1


async def test_retries_stop_when_the_breaker_opens() -> None:
    http = ScriptedHttp(*[[fail(503)]] * 10)
    chat, _, _ = make(http, attempts=5, threshold=2)
    with pytest.raises(AgentError) as info:
        await collect(chat)
    assert info.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert len(http.calls) == 2


async def test_half_open_lets_one_trial_through_and_success_closes_the_breaker() -> None:
    http = ScriptedHttp([fail(500)], [fail(500)])
    chat, clock, _ = make(http, attempts=1, threshold=2, reset_after=10.0)
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await collect(chat)
    clock.now += 9.9
    assert chat.breaker.state == "open"
    clock.now += 0.1
    assert chat.breaker.state == "half_open"
    assert chat.available()
    assert await collect(chat) == ["ok"]
    assert chat.breaker.state == "closed"
    assert await collect(chat) == ["ok"]


async def test_a_failed_trial_opens_the_breaker_again() -> None:
    http = ScriptedHttp([fail(500)], [fail(500)], [fail(500)])
    chat, clock, _ = make(http, attempts=3, threshold=2, reset_after=10.0)
    with pytest.raises(AgentError):
        await collect(chat)
    clock.now += 10.0
    with pytest.raises(AgentError) as info:
        await collect(chat)  # the trial fails; its retry is refused by the re-opened breaker
    assert info.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert len(http.calls) == 3
    assert chat.breaker.state == "open"
    assert chat.breaker.trips == 2


async def test_only_one_trial_runs_while_half_open() -> None:
    http = ScriptedHttp([fail(500)], [sse("trial ", done=False), HANG])
    chat, clock, _ = make(http, attempts=1, threshold=1, reset_after=5.0)
    with pytest.raises(UpstreamError):
        await collect(chat)
    clock.now += 5.0
    trial = cast(AsyncGenerator[str, None], chat.stream("q", PASSAGES, Context("t", clock=clock)))
    assert await trial.__anext__() == "trial "
    with pytest.raises(AgentError) as info:
        await collect(chat)
    assert info.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    await trial.aclose()


async def test_a_cancelled_caller_does_not_count_against_the_breaker() -> None:
    http = ScriptedHttp(*[[sse("a ", done=False), HANG]] * 3)
    chat, clock, _ = make(http, attempts=1, threshold=2)
    for n in range(3):
        ctx = Context(f"c{n}", clock=clock)

        async def consume(ctx: Context = ctx) -> list[str]:
            return [p async for p in chat.stream("q", PASSAGES, ctx)]

        task = asyncio.create_task(consume())
        await asyncio.wait_for(http.hanging.wait(), 60)  # mid-answer: the upstream went quiet
        http.hanging.clear()
        ctx.cancel("the user closed the tab")
        with pytest.raises(AgentError) as info:
            await task
        assert info.value.code is ErrorCode.CANCELLED
    assert chat.breaker.state == "closed"
    assert chat.breaker.failures == 0
    assert http.closed == 3  # every upstream response was released


async def test_a_cancelled_trial_frees_the_half_open_slot() -> None:
    http = ScriptedHttp([fail(500)], [sse("t ", done=False), HANG])
    chat, clock, _ = make(http, attempts=1, threshold=1, reset_after=5.0)
    with pytest.raises(UpstreamError):
        await collect(chat)
    clock.now += 5.0
    task = asyncio.create_task(collect(chat))
    await asyncio.wait_for(http.hanging.wait(), 60)  # the trial call is under way
    task.cancel()  # the client went away mid-trial (task cancellation, not a context)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert chat.breaker.state == "half_open"
    assert await collect(chat) == ["ok"]  # the next call may be the trial
    assert chat.breaker.state == "closed"


async def test_a_deadline_while_waiting_counts_as_a_failure() -> None:
    http = ScriptedHttp([HANG])
    chat, _, _ = make(http, attempts=1, threshold=5)
    ctx = Context("d", timeout=0.05)  # the real loop clock: a deadline must fire on its own
    with pytest.raises(AgentError) as info:
        await collect(chat, ctx)
    assert info.value.code is ErrorCode.DEADLINE
    assert chat.breaker.failures == 1


async def test_the_read_timeout_never_exceeds_the_time_left() -> None:
    http = ScriptedHttp([sse("x")], [sse("y")])
    chat, clock, _ = make(http, timeout_s=30.0)
    await collect(chat, Context("a", timeout=4.0, clock=clock))
    await collect(chat, Context("b", clock=clock))
    assert [c["timeout"] for c in http.calls] == [4.0, 30.0]


def test_retry_policy_delay_bounds() -> None:
    policy = RetryPolicy(attempts=5, base_s=0.5, cap_s=3.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        waits = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # full jitter spreads over the whole range


def tool_sse() -> bytes:
    """A streamed turn that says a few words, then calls two tools, each call's arguments
    split over several chunks, as OpenAI's API sends them."""
    first = {"index": 0, "id": "call_a", "type": "function",
             "function": {"name": "calculator", "arguments": ""}}
    second = {"index": 1, "id": "call_b", "type": "function",
              "function": {"name": "days_until", "arguments": '{"da'}}
    events: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Checking. "}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": '{"expression": '}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [second]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": '"17 * 23"}'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "function": {"arguments": 'te": "2026-12-25"}'}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    return ("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n").encode()


async def test_tool_calls_stream_in_pieces_and_arrive_whole() -> None:
    from wasmagent.ports import ToolCallRequest

    body = tool_sse()
    http = ScriptedHttp([body[:37], body[37:200], body[200:]])
    chat, _, _ = make(http)
    tools = [{"name": "calculator", "description": "math", "parameters": {"type": "object"}}]
    parts = [p async for p in chat.chat([{"role": "user", "content": "q"}], tools, Context("r"))]
    assert parts == ["Checking. ",
                     ToolCallRequest("call_a", "calculator", '{"expression": "17 * 23"}'),
                     ToolCallRequest("call_b", "days_until", '{"date": "2026-12-25"}')]
    sent = http.calls[0]["body"]
    assert sent["tools"] == [{"type": "function", "function": tools[0]}]
    assert sent["stream"] is True
