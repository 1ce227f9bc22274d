"""`OpenAIChat`: streamed answers from any OpenAI-compatible Chat Completions endpoint.

Works over the host's `HttpStream` port (natively one pooled `aiohttp.ClientSession`). A call
retries only while nothing has been streamed yet — once text reached the user, a retry would
repeat or contradict it, so a mid-stream break is reported (`upstream_failed`) instead. Every
failure counts against the circuit breaker; its `open` state fails calls at once with
`upstream_unavailable` instead of hammering a failing upstream. The request's context bounds
everything, backoff waits included: nothing outlives its deadline.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from ..errors import AgentError, ErrorCode, UpstreamError
from ..ports import Clock, HttpStream, ToolCallRequest, Turn
from ..protocol import PassageIn
from ..runtime.context import Context
from ..telemetry import Log, fallback_log
from .resilience import CircuitBreaker, RetryPolicy
from .wire import (
    DONE,
    SseDecoder,
    ToolCalls,
    build_messages,
    chat_body,
    chunk_parts,
    text_parts,
)


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Where the upstream is and how to call it. `api_key` is never logged."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    max_tokens: int = 512
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    drain_s: float = 1.0
    """How long to keep reading after `[DONE]` for the end of the body (see `_once`)."""

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


class OpenAIChat:
    """The `Llm` seam over an OpenAI-compatible endpoint; see the module docstring."""

    name = "openai"

    def __init__(self, http: HttpStream, config: ChatConfig, clock: Clock, *,
                 breaker: CircuitBreaker | None = None, rng: random.Random | None = None,
                 on_failure: Callable[[str], None] | None = None,
                 log: Log = fallback_log) -> None:
        self._log = log
        self._http = http
        self.config = config
        self._clock = clock
        self.breaker = breaker or CircuitBreaker(clock)
        self._rng = rng or random.Random()
        self._on_failure = on_failure or (lambda kind: None)
        self.retries = 0

    def available(self) -> bool:
        return self.breaker.state != "open"

    def details(self) -> dict[str, Any]:
        return {"model": self.config.model, "breaker": self.breaker.state,
                "retries": self.retries, "trips": self.breaker.trips}

    def stream(self, question: str, passages: Sequence[PassageIn], ctx: Context, *,
               turns: Sequence[Turn] = (), conversation: str | None = None
               ) -> AsyncIterator[str]:
        body = chat_body(self.config.model, build_messages(question, passages, turns),
                         max_tokens=self.config.max_tokens)
        return text_parts(self._call(body, ctx))

    def chat(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
             ctx: Context) -> AsyncIterator[str | ToolCallRequest]:
        """One model turn offered `tools`: its text as it streams, then its tool calls."""
        body = chat_body(self.config.model, messages, max_tokens=self.config.max_tokens,
                         tools=tools)
        return self._call(body, ctx)

    async def _call(self, body: bytes, ctx: Context
                    ) -> AsyncGenerator[str | ToolCallRequest, None]:
        """One request with retries and the breaker (see the module docstring)."""
        attempt = 0
        while True:
            attempt += 1
            self.breaker.check()
            sent = 0
            try:
                async for piece in self._once(body, ctx):
                    sent += 1
                    yield piece
            except UpstreamError as exc:
                self.breaker.failure()
                self._on_failure("midstream" if sent else "request")
                if sent or not exc.retryable or attempt >= self.config.retry.attempts:
                    if sent:
                        raise UpstreamError(f"the LLM stream broke off after {sent} pieces: "
                                            f"{exc.message}", retryable=False) from None
                    raise
                self.retries += 1
                delay = self.config.retry.delay(attempt, self._rng)
                self._log("llm_retry", level="warning", error=exc.message, attempt=attempt,
                          delay_s=round(delay, 3))
                await ctx.run(self._clock.sleep(delay))
                continue
            except AgentError as exc:
                # A caller that cancels (a closed tab, a `cancel` message) says nothing about
                # the upstream: counting it would let a few impatient users open the breaker
                # for everyone. A deadline does count: the upstream was too slow.
                if exc.code is ErrorCode.CANCELLED:
                    self.breaker.release()
                else:
                    self.breaker.failure()
                raise
            except BaseException:
                # Task cancellation or the consumer closing this generator (GeneratorExit):
                # no verdict either, but a half-open trial must not stay taken forever.
                self.breaker.release()
                raise
            self.breaker.success()
            return

    async def _once(self, body: bytes, ctx: Context) -> AsyncIterator[str | ToolCallRequest]:
        """One streamed call: text pieces as they come, then the tool calls, complete, once
        the stream ends (`[DONE]`)."""
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        remaining = ctx.remaining()
        timeout = self.config.timeout_s if remaining is None else min(remaining,
                                                                      self.config.timeout_s)
        decoder = SseDecoder()
        calls = ToolCalls()
        source = self._http.post_stream(self.config.url, headers, body, timeout=timeout)
        async with aclosing(ctx.stream(source)) as pieces:
            async for raw in pieces:
                for payload in decoder.feed(raw):
                    text = chunk_parts(payload, calls)
                    if text == DONE:
                        await self._drain(pieces, ctx)
                        for call in calls.done():
                            yield call
                        return
                    if text:
                        yield text
        for payload in decoder.close():
            text = chunk_parts(payload, calls)
            if text and text != DONE:
                yield text
        raise UpstreamError("the LLM stream ended without [DONE]", retryable=True)

    async def _drain(self, pieces: AsyncIterator[bytes], ctx: Context) -> None:
        """Read what follows `[DONE]` — normally just the end of the chunked body, already on
        its way — so the pooled connection goes back to the pool: a stream closed before its
        end is a connection closed, and every answer paid for a new one (a TCP handshake,
        and the client's objects left for the cycle collector). An upstream that keeps the
        stream open after `[DONE]` costs at most `drain_s`, then only its connection."""
        grace = ctx.child(self.config.drain_s)
        try:
            while True:
                await grace.run(anext(pieces))
        except (StopAsyncIteration, AgentError):
            ctx.raise_if_done()  # the request's own cancellation or deadline still counts
        finally:
            grace.cancel("drained")
