"""Fuzzing the protocol's input edge with malformed messages (Hypothesis).

(a) In-process: 10,000 malformed messages to `Agent.submit` over a small in-memory host. Each
    gets exactly one `error` event, with the code the kind of damage calls for and the request
    id when the message had a usable one; nothing raises.
(b) Over a real WebSocket to the running server: a few hundred malformed frames, each answered
    by a typed `error`, and the same connection still answers `status` after every one.

Every strategy below produces only invalid messages, and says which error code it must get.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.aio import collect
from wasmagent.agent import Agent
from wasmagent.errors import ErrorCode
from wasmagent.ports import Host, LoopClock
from wasmagent.protocol import MAX_MESSAGE_BYTES, REQUEST_TYPES, parse_request

from ..support.processes import Server
from .conftest import ws_client

CODES = {c.value for c in ErrorCode}
Case = tuple[str | bytes, str, str | None]
"""A raw message, the error code it must get, and the request id the error must carry."""

TEMPLATES: dict[str, dict[str, Any]] = {
    "status": {},
    "ask": {"text": "does it work offline?", "kb": "docs", "top_k": 5, "mode": "auto"},
    "embed": {"texts": ["a", "b"]},
    "ingest": {"kb": "docs", "documents": [{"source": "a.md", "text": "# A\n\nText.",
                                            "kind": "markdown"}]},
    "cancel": {"target": "r1"},
    "kb.list": {},
    "kb.delete": {"kb": "docs"},
    "kb.passage": {"kb": "docs", "source": "a.md", "anchor": "a"},
    "history.list": {"limit": 10},
    "data.clear": {},
}
FIELDS = {"text": "str", "kb": "str", "mode": "str", "target": "str", "source": "str",
          "anchor": "str", "top_k": "int", "limit": "int", "texts": "list", "documents": "list"}
"""The JSON type of each template field; `OPTIONAL` lists where null is valid too."""
OPTIONAL = {("ask", "kb")}
REQUIRED = {"ask": ["text"], "embed": ["texts"], "ingest": ["kb", "documents"],
            "cancel": ["target"], "kb.delete": ["kb"], "kb.passage": ["kb", "source"]}
EDGES: dict[str, list[Any]] = {
    "text": ["", "x" * 4001], "kb": ["", "k" * 129], "mode": ["", "AUTO", "fast"],
    "target": ["", "t" * 129], "source": ["", "s" * 1025], "anchor": ["a" * 1025],
    "top_k": [0, 51, -1, 2**63, 10**30, -(10**30)], "limit": [0, 501, -5, 10**20],
    "texts": [[], ["t"] * 257], "documents": [[], [{"source": "a", "text": "b"}] * 1001],
}

def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def _not_object(text: str) -> bool:
    return not _is_object(text)


def _not_one(value: float) -> bool:
    return value != 1


def _unknown_type(kind: str) -> bool:
    return kind not in REQUEST_TYPES


# Every strategy is built once, here: a strategy made inside a draw (worse, one with a lambda
# filter, which Hypothesis describes by compiling its source) costs more than the draw itself.
BOOL = st.booleans()
IDS = st.one_of(
    st.text(min_size=1, max_size=12),
    st.text(st.characters(categories=["Cs", "Co", "Cc", "So"]), min_size=1, max_size=6),
    st.just("x" * 128),
)

SCALARS = st.one_of(st.none(), BOOL, st.integers(), st.floats(), st.text(max_size=8))
JSON = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                 st.dictionaries(st.text(max_size=5), SCALARS, max_size=3))
NOT_OBJECTS = st.one_of(SCALARS, st.lists(JSON, max_size=3))
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "str": st.one_of(st.integers(), st.floats(), BOOL, st.lists(SCALARS, max_size=2),
                     st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)),
    "int": st.one_of(st.text(max_size=5), st.floats(), BOOL,
                     st.lists(st.integers(), max_size=2), st.just({"n": 5})),
    "list": st.one_of(st.text(max_size=5), st.integers(), BOOL,
                      st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)),
}
WRONG_OR_NULL = {kind: st.one_of(wrong, st.none()) for kind, wrong in WRONG.items()}
BAD_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\x80", b"\xc3(", b"\xc0\xaf",
                            b"\xe2\x28\xa1", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80"])
POSITION = st.integers(min_value=0, max_value=1 << 20)
"""A cut or insertion point, taken modulo the length of what it cuts."""
GARBAGE = st.text(max_size=40).filter(_not_object)
DEPTHS = st.integers(1_000, 20_000)  # under the shared server's 1 MiB message limit
OPENERS = st.sampled_from(["[", '{"a":', '{"v":1,"type":"ask","id":"d","text":'])
DIGITS = st.integers(4_400, 20_000)  # past Python's 4,300-digit int parsing limit
VERSIONS = st.one_of(st.integers().filter(_not_one), st.floats().filter(_not_one), BOOL,
                     st.none(), st.text(max_size=4), st.just([1]), st.just("1"))
BAD_TYPES = st.one_of(st.text(max_size=12).filter(_unknown_type), st.integers(), st.none(),
                      st.lists(st.just("ask"), max_size=2))
ID_DAMAGE = st.integers(0, 2)
NOT_STR_IDS = st.one_of(st.integers(), st.none(), BOOL, st.just(["a"]))
OUT_OF_RANGE_IDS = st.sampled_from(["", "i" * 129])
DOC_FIELDS = st.sampled_from(["source", "text", "kind"])
def _unknown_to(kind: str) -> Callable[[str], bool]:
    known = {*REQUEST_TYPES[kind].__dataclass_fields__, "v", "type"}
    return lambda key: key not in known


KEYS = {kind: st.text(min_size=1, max_size=10).filter(_unknown_to(kind)) for kind in REQUEST_TYPES}
REQUIRED_OF = {kind: st.sampled_from(names) for kind, names in REQUIRED.items()}
TYPED_OF = {kind: st.sampled_from(sorted(set(f) & set(FIELDS))) for kind, f in TEMPLATES.items()
            if set(f) & set(FIELDS)}
EDGE_FIELDS_OF = {kind: st.sampled_from(sorted(set(f) & set(EDGES)))
                  for kind, f in TEMPLATES.items() if set(f) & set(EDGES)}
EDGE_VALUES = {name: st.sampled_from(values) for name, values in EDGES.items()}


def dumps(message: Any, ascii_only: bool) -> str:
    return json.dumps(message, ensure_ascii=ascii_only, allow_nan=True)


@st.composite
def valid(draw: st.DrawFn, kinds: st.SearchStrategy[str]) -> dict[str, Any]:
    kind = draw(kinds)
    return {"v": 1, "type": kind, "id": draw(IDS), **copy.deepcopy(TEMPLATES[kind])}


VALID = valid(st.sampled_from(sorted(TEMPLATES)))
WITH_TYPED_FIELDS = valid(st.sampled_from(sorted(TYPED_OF)))
WITH_EDGES = valid(st.sampled_from(sorted(EDGE_FIELDS_OF)))
WITH_REQUIRED = valid(st.sampled_from(sorted(REQUIRED)))


def as_raw(draw: st.DrawFn, message: Any) -> str | bytes:
    """The message as JSON text, ASCII-escaped or not, sent as text or as UTF-8 bytes."""
    text = dumps(message, draw(BOOL))
    return text.encode("utf-8", "surrogatepass") if draw(BOOL) else text


@st.composite
def truncated(draw: st.DrawFn) -> Case:
    text = dumps(draw(VALID), draw(BOOL))
    return text[:draw(POSITION) % len(text)], "bad_json", None


@st.composite
def garbage(draw: st.DrawFn) -> Case:
    return draw(GARBAGE), "bad_json", None


@st.composite
def not_an_object(draw: st.DrawFn) -> Case:
    return as_raw(draw, draw(NOT_OBJECTS)), "bad_json", None


@st.composite
def bad_utf8(draw: st.DrawFn) -> Case:
    data = dumps(draw(VALID), False).encode("utf-8", "surrogatepass")
    at = 1 + draw(POSITION) % len(data)  # not first: a leading byte could pass for a BOM
    return data[:at] + draw(BAD_UTF8) + data[at:], "bad_json", None


@st.composite
def deep_nesting(draw: st.DrawFn) -> Case:
    return draw(OPENERS) * draw(DEPTHS), "bad_json", None


@st.composite
def huge_number(draw: st.DrawFn) -> Case:
    return ('{"v":1,"type":"ask","id":"n","text":"q","top_k":' + "9" * draw(DIGITS) + "}",
            "bad_json", None)


@st.composite
def bad_version(draw: st.DrawFn) -> Case:
    message = draw(VALID)
    message["v"] = draw(VERSIONS)
    if draw(BOOL) and draw(BOOL):
        del message["v"]
    return as_raw(draw, message), "unsupported_version", _usable(message["id"])


@st.composite
def bad_type(draw: st.DrawFn) -> Case:
    message = draw(VALID)
    if draw(BOOL):
        message["type"] = draw(BAD_TYPES)
    else:
        del message["type"]
    return as_raw(draw, message), "bad_message", _usable(message["id"])


@st.composite
def bad_id(draw: st.DrawFn) -> Case:
    message = draw(VALID)
    damage = draw(ID_DAMAGE)
    if damage == 0:
        del message["id"]
    else:
        message["id"] = draw(NOT_STR_IDS if damage == 1 else OUT_OF_RANGE_IDS)
    return as_raw(draw, message), "bad_message", None


@st.composite
def unknown_field(draw: st.DrawFn) -> Case:
    message = draw(VALID)
    message[draw(KEYS[message["type"]])] = draw(JSON)
    return as_raw(draw, message), "bad_message", _usable(message["id"])


@st.composite
def missing_field(draw: st.DrawFn) -> Case:
    message = draw(WITH_REQUIRED)
    del message[draw(REQUIRED_OF[message["type"]])]
    return as_raw(draw, message), "bad_message", _usable(message["id"])


@st.composite
def wrong_type(draw: st.DrawFn) -> Case:
    message = draw(WITH_TYPED_FIELDS)
    kind = message["type"]
    if kind == "ingest" and draw(BOOL):
        message["documents"][0][draw(DOC_FIELDS)] = draw(WRONG["str"])  # `kind` may be null
    elif kind == "embed" and draw(BOOL):
        message["texts"] = [draw(WRONG_OR_NULL["str"])]
    else:
        name = draw(TYPED_OF[kind])
        json_type = FIELDS[name]
        optional = (kind, name) in OPTIONAL  # null is a valid value there
        message[name] = draw(WRONG[json_type] if optional else WRONG_OR_NULL[json_type])
    return as_raw(draw, message), "bad_message", _usable(message["id"])


@st.composite
def edge_value(draw: st.DrawFn) -> Case:
    message = draw(WITH_EDGES)
    name = draw(EDGE_FIELDS_OF[message["type"]])
    message[name] = draw(EDGE_VALUES[name])
    return as_raw(draw, message), "bad_message", _usable(message["id"])


MALFORMED = st.one_of(truncated(), garbage(), not_an_object(), bad_utf8(), deep_nesting(),
                      huge_number(), bad_version(), bad_type(), bad_id(), unknown_field(),
                      missing_field(), wrong_type(), edge_value())


def _usable(rid: Any) -> str | None:
    return rid if isinstance(rid, str) and 0 < len(rid) <= 128 else None


def _agent() -> tuple[Agent, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    agent = Agent(Host(name="fuzz", clock=LoopClock()),
                  collect(events))
    return agent, events


def test_the_templates_are_valid_so_every_mutation_breaks_exactly_one_thing() -> None:
    for kind, fields in TEMPLATES.items():
        parse_request({"v": 1, "type": kind, "id": "t", **fields})


# ---- (a) in-process -------------------------------------------------------------------------


@settings(max_examples=10_000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much, HealthCheck.large_base_example])
@given(case=MALFORMED)
def test_every_malformed_message_gets_exactly_one_typed_error(case: Case) -> None:
    raw, code, rid = case
    agent, events = _agent()
    agent.submit(raw)  # no event loop is running: a message taken as valid would raise here
    assert len(events) == 1, events
    (event,) = events
    assert event["type"] == "error"
    assert event["code"] in CODES
    assert (event["code"], event["id"]) == (code, rid), event["message"]
    assert isinstance(event["message"], str)
    assert event["message"]
    assert agent.in_flight == 0


def test_oversized_and_pathological_messages_get_typed_errors() -> None:
    agent, events = _agent()
    cases: list[tuple[str | bytes, str]] = [
        ("x" * (MAX_MESSAGE_BYTES + 1), "too_large"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "too_large"),
        ("[" * 1_000_000, "bad_json"),
        ('{"v": 1, "type": "ask", "id": "f", "text": "q", "top_k": 1e999}', "bad_message"),
        ('{"v": 1, "type": "ask", "id": "f", "text": "q", "top_k": NaN}', "bad_message"),
        ('{"v": NaN, "type": "status", "id": "n"}', "unsupported_version"),
        ("\ufeff{}", "bad_json"),
        ("", "bad_json"),
        (b"", "bad_json"),
    ]
    for raw, code in cases:
        events.clear()
        agent.submit(raw)
        assert [(e["type"], e["code"]) for e in events] == [("error", code)], repr(raw)[:60]


# ---- (b) over a real WebSocket --------------------------------------------------------------

FRAMES_PER_CONNECTION = 40


@settings(max_examples=10, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much, HealthCheck.large_base_example])
@given(frames=st.lists(MALFORMED, min_size=FRAMES_PER_CONNECTION,
                       max_size=FRAMES_PER_CONNECTION))
def test_malformed_frames_over_a_websocket_get_typed_errors_and_the_connection_lives(
        server: Server, frames: list[Case]) -> None:
    asyncio.run(_exchange(server, frames))


async def _exchange(server: Server, frames: list[Case]) -> None:
    async with ws_client(server) as ws:
        for n, (raw, code, rid) in enumerate(frames):
            await ws.send(_sendable(raw))
            event = await ws.recv()
            assert event["type"] == "error", (raw, event)
            assert (event["code"], event["id"]) == (code, rid), (repr(raw)[:200], event)
            status = await ws.request({"type": "status", "id": f"alive-{n}"})
            assert [e["type"] for e in status] == ["result", "done"]


def _sendable(raw: str | bytes) -> str | bytes:
    """A text frame must be valid UTF-8: text holding lone surrogates goes as bytes."""
    if isinstance(raw, str):
        try:
            raw.encode()
        except UnicodeEncodeError:
            return raw.encode("utf-8", "surrogatepass")
    return raw

