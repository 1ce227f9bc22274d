"""Error shapes and an honest OpenAPI document (issue 15, item 9), on a real server process with
tokens, one allowed origin and a small message limit:

- every HTTP error is `{"error": {"code", "message", "type"}}` with a protocol code: also Starlette's
  own 404 and 405, a body that is not JSON, not UTF-8 or nested too deeply for `json.loads`,
  and a bug (500 `internal`, no traceback in the body: checked in-process, with a route that
  raises);
- for every operation of `/openapi.json`, each status the server gives to requests generated
  from the document (valid and broken bodies, no or a bad token, foreign origins, oversized
  bodies) is one the document declares for it, and error bodies have the declared shape;
- schemathesis (`st run --checks all`, pinned in requirements-dev.txt) finds nothing, within a
  bounded number of examples and time.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wasmagent.errors import ErrorCode
from wasmagent.hosts.server.app import create_app
from wasmagent.hosts.server.config import ServerConfig
from wasmagent.hosts.server.http_guard import ERROR_TYPES

from ..support.processes import Server, bearer_headers, token_server
from .conftest import RECV_TIMEOUT_S

GOOD = "http://good.test"
EVIL = "http://evil.test"
LIMIT = 16384
DEEP = 5000
"""Nesting depth of the over-deep body: past `json.loads`'s recursion limit, under `LIMIT`."""
SCHEMATHESIS_EXAMPLES = 20
SCHEMATHESIS_TIMEOUT_S = 120.0
"""A safety net: the run takes ~10 s on a quiet 2-core machine, ~30 s on a loaded one."""
ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with tokens, one allowed origin and a small body limit; no LLM, no rate limit
    (the generated requests come fast)."""
    with token_server(tmp_path_factory.mktemp("openapi"), ["alice"], "--allow-origin", GOOD,
                      "--rate", "0", "--max-message-bytes", str(LIMIT), upstream=False) as srv:
        yield srv



@pytest.fixture(scope="module")
def document(guarded: Server) -> dict[str, Any]:
    response = httpx.get(f"{guarded.http}/openapi.json", timeout=RECV_TIMEOUT_S)
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> str:
    """`response` is the error shape with `status` (and `code`); returns its code."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert list(body) == ["error"], body
    assert sorted(body["error"]) == ["code", "message", "type"], body
    assert body["error"]["code"] in {c.value for c in ErrorCode}, body
    # OpenAI's error type for the status: OpenAI clients raise their own matching exception
    assert body["error"]["type"] == ERROR_TYPES.get(status, "server_error"), body
    assert isinstance(body["error"]["message"], str), body
    assert body["error"]["message"], body
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    got: str = body["error"]["code"]
    return got


# ---- (a) Starlette's and FastAPI's own errors have the error shape --------------------------


def test_an_unknown_route_is_404_not_found(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.http, timeout=RECV_TIMEOUT_S) as client:
        assert_error(client.get("/nope"), 404, "not_found")
        assert_error(client.get("/v1/nope", headers=bearer_headers(guarded)), 404, "not_found")
        assert_error(client.post("/nope", json={"text": "x"}, headers=bearer_headers(guarded)), 404,
                     "not_found")


def test_a_method_a_route_does_not_take_is_405_with_allow(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.http, timeout=RECV_TIMEOUT_S) as client:
        response = client.delete("/healthz")
        assert_error(response, 405, "bad_message")
        assert response.headers["allow"] == "GET"
        response = client.get("/v1/ask", headers=bearer_headers(guarded))
        assert_error(response, 405, "bad_message")
        assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("body", [
    b'{"text": ' + b"[" * DEEP + b"]" * DEEP + b"}",  # RecursionError in json.loads
    b"[" * DEEP + b"]" * DEEP,
    b'{"text": "\xff\xfe"}',  # not UTF-8
    b'{"text": "unterminated',
    b"{bad",
], ids=["deep-field", "deep", "not-utf8", "unterminated", "syntax"])
def test_a_body_that_is_not_json_is_400_bad_json(guarded: Server, body: bytes) -> None:
    assert len(body) <= LIMIT
    response = httpx.post(f"{guarded.http}/v1/ask", content=body, timeout=RECV_TIMEOUT_S,
                          headers={**bearer_headers(guarded), "Content-Type": "application/json"})
    assert_error(response, 400, "bad_json")


def test_a_body_that_does_not_fit_is_400_bad_message_never_422(guarded: Server) -> None:
    for body in ({}, {"text": ""}, {"text": "x", "top_k": 0}, {"text": "x", "mode": "nope"}, []):
        response = httpx.post(f"{guarded.http}/v1/ask", json=body, headers=bearer_headers(guarded),
                              timeout=RECV_TIMEOUT_S)
        assert_error(response, 400, "bad_message")


async def test_a_bug_is_500_internal_without_its_traceback() -> None:
    """In-process (a real server has no route that fails on purpose): a route that raises."""
    app = create_app(ServerConfig())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail of a bug")

    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom")
    assert_error(response, 500, "internal")
    assert "secret detail" not in response.text


# ---- (b) every status the server gives is one the document declares -------------------------


def test_the_document_declares_the_error_statuses(document: dict[str, Any]) -> None:
    paths = document["paths"]
    ask = paths["/v1/ask"]["post"]["responses"]
    assert set(ask) == {"200", "400", "401", "403", "413", "429", "500", "503"}
    assert "text/event-stream" in ask["200"]["content"]
    assert set(paths["/metrics"]["get"]["responses"]) == {"200", "401", "500", "503"}
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "500", "503"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                if int(status) >= 400 and (path, status) != ("/readyz", "503"):
                    assert response["content"] == {
                        "application/json": {"schema": {"$ref": ERROR_REF}}}, (path, status)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["required"]) == {"code", "message", "type"}
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert paths["/v1/ask"]["post"]["security"] == [{"bearer": []}]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _wrong_values(prop: dict[str, Any]) -> list[Any]:
    """Values a property's schema refuses: past its bounds, off its enum, of another type."""
    out: list[Any] = [None, {"nested": True}] if "anyOf" not in prop else [{"nested": True}]
    for option in prop.get("anyOf", [prop]):
        kind = option.get("type")
        if kind == "string":
            out.append(12345)
            if "minLength" in option:
                out.append("x" * (option["minLength"] - 1))
            if "maxLength" in option:
                out.append("x" * (option["maxLength"] + 1))
            if "enum" in option:
                out.append("not-" + option["enum"][0])
        elif kind == "integer":
            out += ["five", 2.5]
            if "minimum" in option:
                out.append(option["minimum"] - 1)
            if "maximum" in option:
                out.append(option["maximum"] + 1)
    return out


def _bodies(document: dict[str, Any], schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """(what, JSON body) pairs from a request body's schema: a valid one, each property
    missing (when required) or wrong, and bodies of the wrong JSON type."""
    schema = _resolve(document, schema)
    props = {name: _resolve(document, p) for name, p in schema.get("properties", {}).items()}
    valid: dict[str, Any] = dict(schema.get("examples", [{}])[0])
    for name in schema.get("required", []):
        if name in valid:
            continue
        prop = props[name]
        assert prop.get("type") == "string", (name, prop)
        valid[name] = "does the app work offline?"
    out: list[tuple[str, Any]] = [("valid", valid), ("array", [valid]), ("string", "text"),
                                  ("null", None)]
    for name in schema.get("required", []):
        out.append((f"no {name}", {k: v for k, v in valid.items() if k != name}))
    for name, prop in props.items():
        out += [(f"{name}={value!r:.20}", {**valid, name: value})
                for value in _wrong_values(prop)]
        if "enum" in prop:
            out += [(f"{name}={value}", {**valid, name: value}) for value in prop["enum"]]
    return out


def _requests(srv: Server, document: dict[str, Any], path: str, method: str,
              operation: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(what, httpx request arguments) for one operation."""
    token = bearer_headers(srv)
    plain: list[tuple[str, dict[str, Any]]] = [
        ("token", {"headers": token}),
        ("no token", {}),
        ("bad token", {"headers": {"Authorization": "Bearer nope"}}),
        ("not bearer", {"headers": {"Authorization": "Basic eDp5"}}),
        ("good origin", {"headers": {**token, "Origin": GOOD}}),
        ("foreign origin", {"headers": {**token, "Origin": EVIL}}),
        ("query", {"headers": token, "params": {"x": "1"}}),
    ]
    body = operation.get("requestBody")
    if body is None:
        return plain
    schema = body["content"]["application/json"]["schema"]
    out: list[tuple[str, dict[str, Any]]] = [
        (what, {"headers": token, "json": value}) for what, value in _bodies(document, schema)]
    valid = out[0][1]["json"]
    raw = {**token, "Content-Type": "application/json"}
    out += [(f"{what} + valid body", {**args, "json": valid}) for what, args in plain]
    out += [
        ("no body", {"headers": token}),
        ("too large", {"headers": token, "json": {**valid, "text": "x" * LIMIT}}),
        ("too large, no token", {"json": {**valid, "text": "x" * LIMIT}}),
        ("not JSON", {"headers": raw, "content": b"{bad"}),
        ("deep JSON", {"headers": raw, "content": b"[" * DEEP + b"]" * DEEP}),
        ("not UTF-8", {"headers": raw, "content": b'{"text": "\xff"}'}),
        ("text/plain", {"headers": {**token, "Content-Type": "text/plain"},
                        "content": json.dumps(valid).encode()}),
    ]
    return out


def test_every_status_the_server_gives_is_documented(guarded: Server,
                                                     document: dict[str, Any]) -> None:
    codes = set(_resolve(document, {"$ref": "#/components/schemas/ErrorCode"})["enum"])
    seen: dict[str, set[int]] = {}
    with httpx.Client(base_url=guarded.http, timeout=RECV_TIMEOUT_S) as client:
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                declared = operation["responses"]
                for what, args in _requests(guarded, document, path, method, operation):
                    response = client.request(method.upper(), path, **args)
                    where = f"{method.upper()} {path} ({what}): {response.status_code}"
                    status = str(response.status_code)
                    assert status in declared, f"{where} is not documented: {response.text}"
                    seen.setdefault(f"{method} {path}", set()).add(response.status_code)
                    media = response.headers["content-type"].split(";")[0]
                    assert media in declared[status].get("content", {media: None}), where
                    if response.status_code >= 400:
                        schema = declared[status]["content"][media]["schema"]
                        if schema == {"$ref": ERROR_REF}:
                            code = assert_error(response, response.status_code)
                            assert code in codes, where
    # the generated requests reach every documented error a healthy server can give here
    assert seen["post /v1/ask"] == {200, 400, 401, 403, 413}, seen
    assert seen["get /metrics"] == {200, 401}, seen
    assert seen["get /healthz"] == seen["get /readyz"] == {200}, seen


# ---- (c) schemathesis ---------------------------------------------------------------------


def test_schemathesis_finds_nothing(guarded: Server, tmp_path: Path) -> None:
    """`st run --checks all` against the document: status codes, content types, response
    schemas (the SSE events too), negative data rejected with 4xx, positive data accepted,
    unsupported methods (405 with `Allow`), ignored auth (401 without the token)."""
    if importlib.util.find_spec("schemathesis") is None:
        pytest.fail("schemathesis is not installed: ./build.sh installs requirements-dev.txt")
    st = Path(sys.executable).with_name("st")
    args = [str(st), "run", f"{guarded.http}/openapi.json", "--checks", "all",
            "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--seed", "15",
            "--workers", "1", "--generation-database", "none", "--request-timeout", "30",
            "--no-color", "-H", f"Authorization: Bearer {guarded.tokens['alice']}"]
    # For chat completions: a body over the server's limit is refused as `too_large` (413)
    # before it is read, valid or not (its messages have no size the schema could state below
    # the limit); and a random `model` names a knowledge base that does not exist (404) by
    # design, so "most requests hit a missing resource" is no news there; and a conversation
    # must hold a question (a user message with text), which JSON Schema cannot say: a
    # schema-valid body without one is refused with 400 `bad_message`, as OpenAI's API does.
    (tmp_path / "schemathesis.toml").write_text(
        '[[operations]]\ninclude-name = "POST /v1/chat/completions"\nwarnings = false\n'
        'checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "404", '
        '"405", "406", "409", "413", "415", "422", "428", "429", "5xx"]\n'
        'checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", '
        '"403", "404", "409", "413", "429", "5xx"]\n')
    # run in tmp_path: any report or cassette stays out of the work tree
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True,
                          timeout=SCHEMATHESIS_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout, done.stdout[-3000:]
