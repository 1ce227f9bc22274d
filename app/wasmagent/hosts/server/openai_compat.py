"""OpenAI's Chat Completions API in front of the same agent: `POST /v1/chat/completions`
(streamed or not) and `GET /v1/models`, so any OpenAI client (the `openai` package, LangChain,
curl) can use wasmagent as a model.

A thin adapter, not a second pipeline: the last user message becomes an `ask` (earlier
user/assistant pairs its `history`), submitted to an input edge of the one core like a
WebSocket client's, with the same auth, rate limits, tenancy and typed errors. The model name
chooses the knowledge base: `wasmagent` (the default one) or `wasmagent:<kb>`. System
messages are not used: the agent answers from its knowledge base and tools.

The answer's text comes as the message content, followed by its numbered references
(`[1] title — source#anchor`); the same citations, the route and `confident` come in the
extension field `wasmagent` of the response (the last chunk, when streamed).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any, Literal

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ...errors import AgentError, ErrorCode
from ...handlers.knowledge import DEFAULT_KB
from ...protocol import (
    MAX_PASSAGE,
    MAX_QUESTION,
    MAX_TURNS,
    Answer,
    Ask,
    Delta,
    Error,
    Event,
    TurnIn,
    parse_request,
)
from .http_guard import STATUS, error_json
from .openapi import CHAT_SSE_EVENT, errors_doc
from .sessions import Outbox, connect, frames_until_done, hang_up
from .state import ServerState

MODEL = "wasmagent"


class ContentPart(BaseModel):
    """A part of a message's content; only text parts carry anything the agent reads."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's request body; sampling options (`temperature`, `max_tokens`...) are accepted
    and ignored: the agent decides how it answers."""

    # strict: a JSON `"stream": "yes"` or `1` is refused as the schema says, not coerced
    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={"examples": [
        {"model": MODEL, "messages": [{"role": "user", "content": "How do I install it?"}]}]})
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False


def ask_of(body: ChatRequest, request_id: str) -> Ask:
    """The `ask` a chat request stands for; raises `AgentError` (`bad_message`, `not_found`)
    for one the agent cannot take, checked as any client's message is."""
    kb = _kb_of(body.model)
    questions = [i for i, m in enumerate(body.messages) if m.role == "user"]
    if not questions or not body.messages[questions[-1]].text().strip():
        raise AgentError(ErrorCode.BAD_MESSAGE, "the last user message is the question: "
                         "send at least one user message with text")
    history: list[TurnIn] = []
    asked: str | None = None
    for message in body.messages[:questions[-1]]:
        if message.role == "user":
            asked = message.text()
        elif message.role == "assistant" and asked is not None:
            # (the last question and its limits are checked; what came before is context,
            # cut to the sizes an `ask` carries rather than refused)
            history.append(TurnIn(asked[:MAX_QUESTION], message.text()[:MAX_PASSAGE]))
            asked = None
    ask = Ask(request_id, body.messages[questions[-1]].text().strip(), kb=kb,
              history=history[-MAX_TURNS:] or None)
    checked = parse_request(ask.to_wire())
    assert isinstance(checked, Ask)
    return checked


def _kb_of(model: str) -> str | None:
    if model == MODEL:
        return None
    if model.startswith(MODEL + ":") and len(model) > len(MODEL) + 1:
        return model[len(MODEL) + 1:]
    raise AgentError(ErrorCode.NOT_FOUND, f"there is no model {model!r}: use {MODEL!r} or "
                     f"'{MODEL}:<knowledge base>' (GET /v1/models lists them)")


class Completion:
    """Turns one ask's events into OpenAI's response: chunks as they come (`stream`), or
    the whole response once the answer is complete."""

    def __init__(self, model: str, request_id: str, stream: bool) -> None:
        self.model = model
        self.id = f"chatcmpl-{request_id}"
        self.created = int(time.time())
        self.stream = stream
        self.answer: Answer | None = None
        self.error: Error | None = None
        self._started = False

    def frame(self, event: Event) -> str | None:
        if isinstance(event, Delta) and self.stream:
            return self._chunk({"content": event.text})
        if isinstance(event, Answer):
            self.answer = event
            if self.stream and references(event):
                return self._chunk({"content": references(event)})
        elif isinstance(event, Error):
            self.error = event
            return _sse(error_json(ErrorCode(event.code), event.message)) if self.stream else ""
        elif event.TERMINAL:
            return self._last() if self.stream else ""
        return None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None,
               extra: dict[str, Any] | None = None) -> str:
        if not self._started:
            delta = {"role": "assistant", **delta}
            self._started = True
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **(extra or {})}
        return _sse(body)

    def _last(self) -> str:
        return self._chunk({}, "stop", self._extension()) + "data: [DONE]\n\n"

    def _extension(self) -> dict[str, Any]:
        a = self.answer
        if a is None:
            return {}
        return {"wasmagent": {"citations": [asdict(c) for c in a.citations], "route": a.route,
                              "confident": a.confident, "timings_ms": a.timings_ms}}

    def response(self) -> tuple[int, dict[str, Any]]:
        """The status and body of a non-streamed answer, once its terminal event came."""
        if self.error is not None:
            code = ErrorCode(self.error.code)
            return STATUS.get(code, 500), error_json(code, self.error.message)
        text = "" if self.answer is None else self.answer.text + references(self.answer)
        return 200, {"id": self.id, "object": "chat.completion", "created": self.created,
                     "model": self.model,
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}],
                     **self._extension()}


def references(answer: Answer) -> str:
    """The numbered references an answer's text ends with, as OpenAI clients show text only."""
    lines = []
    for n, c in enumerate(answer.citations, 1):
        anchor = f"#{c.anchor}" if c.anchor else ""
        lines.append(f"[{n}] {c.title} — {c.source}{anchor}")
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


def _sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def complete(state: ServerState, body: ChatRequest, client: str
                   ) -> AsyncIterator[str] | tuple[int, dict[str, Any]]:
    """Answer one chat request: a stream of SSE chunks, or the finished (status, body)."""
    request_id = f"oa-{uuid.uuid4().hex[:16]}"
    ask = ask_of(body, request_id)
    completion = Completion(body.model, request_id, body.stream)
    outbox: Outbox[str] = Outbox(state.config.max_queued_events)
    agent, tracker = connect(state, client, outbox, charge=False, frame=completion.frame,
                             single=True)
    agent.submit(ask.to_wire())
    if body.stream:
        return frames_until_done(outbox, agent, tracker)
    try:
        while await outbox.take():
            pass
    finally:
        await hang_up(agent, tracker)
    if completion.error is None and completion.answer is None:
        raise AgentError(ErrorCode.OVERLOADED, "the answer outgrew this client's event queue")
    return completion.response()


async def models(state: ServerState, client: str) -> dict[str, Any]:
    """`wasmagent` and one `wasmagent:<kb>` per knowledge base this client can read."""
    config = state.config
    scope = state.service.scope(config.tenant(client), config.shared_kbs)
    names = set(await scope.library.names()) | {DEFAULT_KB}
    if scope.shared_library is not None:
        names |= {n for n in scope.shared if await scope.shared_library.fresh(n) is not None}
    ids = [MODEL, *(f"{MODEL}:{name}" for name in sorted(names))]
    return {"object": "list",
            "data": [{"id": i, "object": "model", "created": 0, "owned_by": "wasmagent"}
                     for i in ids]}


def add_routes(app: FastAPI, state: Callable[..., ServerState], client: Callable[..., str]
               ) -> None:
    """The two OpenAI routes, with the app's `state` and `client` (auth, rate) dependencies."""

    @app.post("/v1/chat/completions", summary="OpenAI-compatible chat completions",
              description=__doc__,
              responses={200: {"description": "OpenAI's `chat.completion` object, or with "
                                              "`stream: true` its `chat.completion.chunk` "
                                              "Server-Sent Events ending with `[DONE]`",
                               "content": {"text/event-stream": {"schema": CHAT_SSE_EVENT}}},
                         **errors_doc(400, 401, 403, 404, 413, 429, 503, 500)})
    async def chat_completions(body: ChatRequest,
                               st: ServerState = Depends(state),  # noqa: B008
                               who: str = Depends(client)) -> Response:
        result = await complete(st, body, who)
        if isinstance(result, tuple):
            status, payload = result
            return JSONResponse(payload, status_code=status)
        return StreamingResponse(result, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/models", summary="OpenAI-compatible model list: one per knowledge base",
             responses=errors_doc(401, 403, 429, 503, 500))
    async def list_models(st: ServerState = Depends(state),  # noqa: B008
                          who: str = Depends(client)) -> dict[str, Any]:
        return await models(st, who)
