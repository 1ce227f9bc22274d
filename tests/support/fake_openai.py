"""A local OpenAI-compatible Chat Completions server for tests and benchmarks (no network).

It streams real `chat.completion.chunk` events (the official `openai` client accepts them; a
test proves it) and can misbehave on request, so tests can prove retries, the circuit breaker
and deadlines. `POST /control {"script": [...], "delay": s}` queues one behaviour per coming
request (`ok`, `fail500`, `fail503`, `fail400`, `drop` — three chunks then a broken
connection, `slow` — `delay` seconds between chunks, `hang` — headers never come, `call:` +
a JSON list of `{"name", "arguments"}` — a turn that calls those tools, streamed in pieces as
OpenAI does); requests beyond the script behave `ok`. `GET /control` tells how many requests
arrived and keeps the last request's messages.

The answer quotes the first passage it was given: "According to [1], <its first words>."

    python tests/support/fake_openai.py --port 9000 [--key KEY] [--delay 0.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STATE: dict[str, Any] = {"script": deque(), "delay": 0.0, "requests": 0, "key": None}


def answer_for(messages: list[dict[str, Any]]) -> str:
    user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    match = re.search(r"^\[1\][^\n]*\n(.+)$", user, re.MULTILINE)
    if not match:
        return "I don't know: no passages were given."
    words = match.group(1).split()[:24]
    text = "According to [1], " + " ".join(words).rstrip(".") + "."
    earlier = [m["content"] for m in messages if m.get("role") == "user"][:-1]
    if earlier:  # shows the conversation reached the model
        text += f" (Earlier you asked: {earlier[-1][:80]})"
    results = [m["content"] for m in messages if m.get("role") == "tool"]
    if results:  # shows the tools' results reached the model
        text = "The tools say: " + "; ".join(results) + ". " + text
    return text


def chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n"


async def tool_calls(calls: list[dict[str, Any]], model: str) -> AsyncIterator[str]:
    """A turn that calls `calls`, each call's arguments in two pieces."""
    cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    yield chunk(cid, model, {"role": "assistant", "content": None})
    for i, c in enumerate(calls):
        args = c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])
        half = len(args) // 2
        yield chunk(cid, model, {"tool_calls": [
            {"index": i, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "function",
             "function": {"name": c["name"], "arguments": args[:half]}}]})
        yield chunk(cid, model, {"tool_calls": [
            {"index": i, "function": {"arguments": args[half:]}}]})
    yield chunk(cid, model, {}, "tool_calls")
    yield "data: [DONE]\n\n"


async def stream(text: str, model: str, behaviour: str, delay: float) -> AsyncIterator[str]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    yield chunk(cid, model, {"role": "assistant", "content": ""})
    for n, word in enumerate(re.findall(r"\S+\s*", text)):
        if behaviour == "drop" and n == 3:
            raise ConnectionResetError("fake upstream dropped the stream on request")
        if delay:
            await asyncio.sleep(delay)
        yield chunk(cid, model, {"content": word})
    yield chunk(cid, model, {}, "stop")
    yield "data: [DONE]\n\n"


def error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None,
                                   "code": None}}, status_code=status)


async def completions(request: Request) -> Response:
    STATE["requests"] += 1
    if STATE["key"] and request.headers.get("authorization") != f"Bearer {STATE['key']}":
        return error(401, "Incorrect API key provided", "invalid_request_error")
    body = await request.json()
    behaviour = STATE["script"].popleft() if STATE["script"] else "ok"
    if behaviour.startswith("fail"):
        return error(int(behaviour[4:]), f"fake upstream failure {behaviour}", "server_error")
    if behaviour == "hang":
        await asyncio.sleep(3600)
    STATE["last"] = body.get("messages", [])
    if behaviour.startswith("call:"):
        return StreamingResponse(tool_calls(json.loads(behaviour[5:]), body.get("model", "fake")),
                                 media_type="text/event-stream")
    delay = STATE["delay"] if behaviour in ("ok", "drop") else max(STATE["delay"], 0.5)
    text = answer_for(body.get("messages", []))
    model = body.get("model", "fake")
    if body.get("stream"):
        return StreamingResponse(stream(text, model, behaviour, delay),
                                 media_type="text/event-stream")
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
        "created": int(time.time()), "model": model, "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()),
                  "total_tokens": 10 + len(text.split())}})


async def control(request: Request) -> Response:
    if request.method == "POST":
        body = await request.json()
        STATE["script"] = deque(body.get("script", []))
        STATE["delay"] = float(body.get("delay", STATE["delay"]))
    return JSONResponse({"requests": STATE["requests"], "script": list(STATE["script"]),
                         "last": STATE.get("last", []),
                         "delay": STATE["delay"]})


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [
        {"id": "fake", "object": "model", "created": 0, "owned_by": "wasmagent-tests"}]})


app = Starlette(routes=[
    Route("/v1/chat/completions", completions, methods=["POST"]),
    Route("/v1/models", models),
    Route("/control", control, methods=["GET", "POST"]),
])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--key", default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    STATE["key"], STATE["delay"] = args.key, args.delay
    # asyncio and h11 even where uvloop and httptools are installed (the agent server's
    # optional speed-ups): the load benchmark's upstream costs what it always did, so figures
    # before and after those were added compare. Idle connections are kept 75 s, as hosted
    # LLM APIs do: with uvicorn's 5 s default a loaded machine's client could reuse a connection
    # the upstream was closing at that moment (httpx ReadError in the load bench's baseline).
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", backlog=4096,
                loop="asyncio", http="h11", timeout_keep_alive=75)


if __name__ == "__main__":
    main()
