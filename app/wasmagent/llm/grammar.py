"""A llama.cpp grammar (GBNF) that only lets a model write tool calls that fit the tools.

`tool_grammar(tools)` turns the registered tools' JSON Schemas into a grammar for one compact
JSON object, `{"tool_calls":[{"name":"<tool>","arguments":{...}}, ...]}`: each name is one of
the tools, and each call's arguments are that tool's, in their declared order (optional ones
may be left out), with values of their types. The local model decodes under it, so every
call it writes parses and fits (`json_tools.py`).

Why not llama.cpp's own JSON-Schema grammar (`response_format`): it allows whitespace between
every token, and the 135M model used it — two pretty-printed calls took 92 tokens where the
compact form needs about 45, and with up to three calls it ran past 200 tokens and was cut
off. At ~5 decoded tokens a second in wasm, every token saved is time the user waits less.

Covered: string, integer, number, boolean, null, `enum`, `anyOf`, arrays of those; anything
else (a nested object) takes any compact JSON value, which the registry's checks then judge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

MAX_CALLS: Final = 2
"""Calls one turn may ask for: a bound on what a looping small model can queue at once."""
MAX_STRING: Final = 40
"""Characters of a string argument: a looping model ("10.1.2026.17.17.17...", measured) must
not run the turn past its token budget, where the call would be cut off and lost."""
MAX_ITEMS: Final = 10

BASE: Final = (
    r'string ::= "\"" char{0,MAX_STRING} "\""' "\n"
    r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})' "\n"
    r'integer ::= "-"? [0-9]{1,15}' "\n"
    r'number ::= "-"? [0-9]{1,15} ("." [0-9]{1,10})?' "\n"
    r'boolean ::= "true" | "false"' "\n"
    r'null ::= "null"' "\n"
    r"value ::= string | number | boolean | null | array | object" "\n"
    r'array ::= "[" (value ("," value){0,MORE})? "]"' "\n"
    r'object ::= "{" (string ":" value ("," string ":" value){0,MORE})? "}"' "\n"
).replace("MAX_STRING", str(MAX_STRING)).replace("MORE", str(MAX_ITEMS - 1))
"""Compact JSON values (llama.cpp's own json.gbnf, without whitespace)."""

SIMPLE: Final = {"string": "string", "integer": "integer", "number": "number",
                 "boolean": "boolean", "null": "null"}


def tool_grammar(tools: Sequence[Mapping[str, Any]]) -> str:
    """The GBNF of one tool turn; see the module docstring."""
    rules = [f'root ::= "{{\\"tool_calls\\":[" call ("," call){{0,{MAX_CALLS - 1}}} "]}}"',
             "call ::= " + " | ".join(f"t{i}" for i in range(len(tools)))]
    for i, tool in enumerate(tools):
        name = _literal(json.dumps(tool["name"]))
        members, entry = _members(f"t{i}", tool.get("parameters") or {})
        rules.append(f't{i} ::= "{{\\"name\\":" {name} ",\\"arguments\\":{{" {entry} "}}}}"')
        rules.extend(members)
    return "\n".join(rules) + "\n" + BASE


def _members(prefix: str, params: Mapping[str, Any]) -> tuple[list[str], str]:
    """Rules `<prefix>-m<i>-first|rest` (the object's members from the i-th on, written first,
    with no leading comma, or after another one) and the object's entry rule ("" when it has
    no members). Linear in the number of members, however many are optional."""
    props: list[tuple[str, Any]] = list((params.get("properties") or {}).items())
    required = set(params.get("required") or ())
    rules = []

    def name(i: int, first: bool) -> str:
        return f"{prefix}-m{i}-{'first' if first else 'rest'}" if i < len(props) else ""

    for i, (key, spec) in enumerate(props):
        member = f'{_literal(json.dumps(key) + ":")} {_value(spec)}'
        for first in (True, False):
            taken = " ".join(filter(None, (member if first else f'"," {member}',
                                           name(i + 1, False))))
            if key in required:
                body = taken
            elif skipped := name(i + 1, first):
                body = f"({taken}) | {skipped}"
            else:
                body = f"({taken})?"
            rules.append(f"{name(i, first)} ::= {body}")
    return rules, name(0, True)


def _value(spec: Any) -> str:
    if not isinstance(spec, Mapping):
        return "value"
    if "enum" in spec:
        return "(" + " | ".join(_literal(json.dumps(v)) for v in spec["enum"]) + ")"
    if "anyOf" in spec:
        return "(" + " | ".join(_value(s) for s in spec["anyOf"]) + ")"
    kind = spec.get("type")
    if kind == "array":
        item = _value(spec.get("items"))
        return f'("[" ({item} ("," {item}){{0,{MAX_ITEMS - 1}}})? "]")'
    return SIMPLE.get(kind, "value") if isinstance(kind, str) else "value"


def _literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
