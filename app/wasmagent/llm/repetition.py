"""Stop a small model that has started saying the same sentence again.

Greedy decoding makes a 135M model loop ("The model is X. The model is X. The model is X.")
until it runs out of tokens: seconds of decoding the reader must scroll past. `until_repeat`
passes a stream of text pieces through unchanged, except that a sentence the stream already
said is held back while it is being repeated, and the stream ends (closing the source, which
stops decoding) as soon as such a repeat is complete. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import aclosing

_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
"""Where a sentence ends: after . ! or ?, or at a line break (a list the model writes as lines
without full stops loops the same way: "f-string debugging with =" eight times, measured)."""
MIN_SENTENCE = 12
"""Shorter sentences ("Yes.", "[1].") may fairly recur; they never stop the stream."""


def _key(sentence: str) -> str:
    return " ".join(sentence.lower().split())


def _repeats(key: str, said: set[str]) -> bool:
    return len(key) >= MIN_SENTENCE and key in said


def _may_repeat(key: str, said: set[str]) -> bool:
    return bool(key) and any(len(s) >= MIN_SENTENCE and s.startswith(key) for s in said)


async def until_repeat(pieces: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    """`pieces` until it begins saying a sentence (of `MIN_SENTENCE` characters or more) for
    the second time; the repeat itself is never yielded."""
    said: set[str] = set()
    sentence = ""  # the sentence being written (its start may already be yielded)
    held = ""  # text not yielded yet: it may be the start of a repeat, or only whitespace
    async with aclosing(pieces) as source:
        async for piece in source:
            sentence += piece
            held += piece
            *done, sentence = _END.split(sentence)
            for finished in done:
                key = _key(finished)
                if _repeats(key, said):
                    before = held[:held.find(finished)]
                    if before.strip():
                        yield before.rstrip()
                    return
                said.add(key)
            # Hold the sentence being written while it could still turn out to be a repeat.
            keep = len(sentence) if _may_repeat(_key(sentence), said) else 0
            out = held[:len(held) - keep]
            if out.strip():
                held = held[len(out):]
                yield out
        if _repeats(_key(sentence), said):
            held = held[:len(held) - len(sentence)].rstrip()
        if held.strip():
            yield held
