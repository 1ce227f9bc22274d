"""Ingestion as a sequence of journaled steps: documents -> chunks -> vectors -> segments.

Each step takes the next batch of about `EMBED_GROUP` new chunks, starting at a cursor
(document, chunk) that the previous step's recorded result names, so a resumed job replays
the same cursor positions and continues exactly where the last committed step ended. A step
embeds its chunks at background priority (questions asked meanwhile go first) and stages the
knowledge base segment; the step runner commits it atomically with the step's journal record.
A last step saves the BM25 index. A document that cannot be read is skipped and reported,
never fatal; duplicates (by normalised text) are counted, not stored.

Progress counts passages: done is what committed steps added, total is what the documents are
expected to hold (passages so far scaled by the characters still unread; exact once the last
document is reached), and the message gives an ETA from the rate of the last few steps.

`step` is either a durable job's `Run.step` (the `ingest` job) or `direct_step(store)` (the
CLI and benchmarks, which need no journal).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from ..errors import AgentError, ErrorCode
from ..ports import Clock, LoopClock, Store
from ..protocol import DocumentIn
from ..workflow import Tx

Progress = Callable[[int, int, str], None]
StepFn = Callable[[Tx], Awaitable[Any]]
Step = Callable[[str, StepFn], Awaitable[Any]]
EMBED_GROUP = 64
"""New chunks per step (one commit). 128 cut commits and meta writes (10% of native ingestion
at 64, before per-document counts left the meta), but in the browser a step takes seconds:
the first progress, and a cancel, came too late, and a kill lost more work."""
RATE_STEPS = 8
"""Steps the ETA's rate is taken over: steps replayed from a journal after a resume are
instant, and must not make the estimate optimistic for long."""


class Library(Protocol):
    """What an ingestion needs of the knowledge library (`library.Library` is one): named
    here so that this module does not depend on the library that calls it."""

    async def add_batch(self, name: str, documents: Sequence[DocumentIn],
                        cursor: tuple[int, int], tx: Tx) -> dict[str, Any]: ...

    def consumed(self, documents: Sequence[DocumentIn], cursor: tuple[int, int]) -> int: ...

    async def drop_lookahead(self, name: str) -> None: ...

    async def stage_index(self, name: str, tx: Tx) -> None: ...


@dataclass(slots=True)
class IngestReport:
    """What an ingestion did, for the caller's `result` event and logs."""

    kb: str
    documents: int = 0
    chunks_added: int = 0
    duplicates: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def add(self, step: dict[str, Any]) -> None:
        self.chunks_added += int(step["added"])
        self.duplicates += int(step["duplicates"])
        self.skipped.extend(step["skipped"])

    def to_dict(self) -> dict[str, Any]:
        return {"kb": self.kb, "documents": self.documents, "chunks_added": self.chunks_added,
                "duplicates": self.duplicates, "skipped": self.skipped}


async def ingest(library: Library, name: str, documents: Sequence[DocumentIn], *, step: Step,
                 progress: Progress | None = None, index: bool = True,
                 clock: Clock | None = None) -> IngestReport:
    """Add `documents` to knowledge base `name` (created if missing), one step per batch;
    without `index`, the BM25 index is left for the caller to save (`Library.save_index`)."""
    notify = progress or (lambda done, total, message: None)
    estimate = _Estimate(documents, clock or LoopClock())
    report = IngestReport(name)
    cursor = (0, 0)
    n = 0
    try:
        while cursor[0] < len(documents):
            result = await step(f"batch {n}",
                                partial(library.add_batch, name, documents, cursor))
            report.add(result)
            cursor = (int(result["next"][0]), int(result["next"][1]))
            n += 1
            total = estimate.total(report, library.consumed(documents, cursor))
            notify(report.chunks_added, total, estimate.message(report.chunks_added, total))
            await asyncio.sleep(0)  # let questions through between batches
    finally:
        await library.drop_lookahead(name)
    if index:
        await step("index", partial(library.stage_index, name))
    report.documents = len(documents)
    notify(report.chunks_added, report.chunks_added,
           f"indexed {report.chunks_added} passages")
    return report


class _Estimate:
    """Expected passages and time left, from what the steps so far found and took."""

    def __init__(self, documents: Sequence[DocumentIn], clock: Clock) -> None:
        self._chars = sum(len(d.text) for d in documents)
        self._clock = clock
        self._recent: deque[tuple[float, int]] = deque([(clock.monotonic(), 0)],
                                                        maxlen=RATE_STEPS + 1)

    def total(self, report: IngestReport, consumed: int) -> int:
        done = report.chunks_added
        if consumed >= self._chars or consumed <= 0:
            return done
        return max(done, round(done * self._chars / consumed))

    def message(self, done: int, total: int) -> str:
        self._recent.append((self._clock.monotonic(), done))
        (t0, d0), (t1, d1) = self._recent[0], self._recent[-1]
        text = f"indexed {done} of about {total} passages"
        if d1 > d0 and t1 > t0 and total > done:
            text += f", {_duration((total - done) * (t1 - t0) / (d1 - d0))} left"
        return text


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def direct_step(store: Store, *, refused: Callable[[AgentError], None] | None = None,
                saving: bool = True) -> Step:
    """Run steps without a journal: each one's writes are still one atomic commit.

    With `refused`, a commit the store refuses with `storage_failed` (a full quota) is
    reported to it once, and from then on (or from the start, when not `saving`) steps only
    apply their effects in memory."""

    async def step(name: str, fn: StepFn) -> Any:
        nonlocal saving
        tx = Tx()
        result = await fn(tx)
        if saving:
            try:
                await store.commit(tx.puts, tx.deletes, tx.expect)
            except AgentError as exc:
                if refused is None or exc.code is not ErrorCode.STORAGE:
                    raise
                saving = False
                refused(exc)
        for after in tx.after:
            await after()
        return result

    return step
