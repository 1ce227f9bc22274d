"""Ingestion as a sequence of journaled steps: documents -> chunks -> vectors -> segments.

Each step takes the next batch of about `EMBED_GROUP` new chunks, starting at a cursor
(document, chunk) that the previous step's recorded result names, so a resumed job replays
the same cursor positions and continues exactly where the last committed step ended. A step
embeds its chunks at background priority (questions asked meanwhile go first) and stages the
knowledge base segment; the step runner commits it atomically with the step's journal record.
A last step saves the BM25 index. A document that cannot be read is skipped and reported,
never fatal; duplicates (by normalised text) are counted, not stored.

`step` is either a durable job's `Run.step` (the `ingest` job) or `direct_step(store)` (the
CLI and benchmarks, which need no journal).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import AgentError, ErrorCode
from ..ports import Store
from ..protocol import DocumentIn
from ..workflow import Tx

if TYPE_CHECKING:
    from .library import Library

Progress = Callable[[int, int, str], None]
StepFn = Callable[[Tx], Awaitable[Any]]
Step = Callable[[str, StepFn], Awaitable[Any]]
EMBED_GROUP = 64


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
                 progress: Progress | None = None) -> IngestReport:
    """Add `documents` to knowledge base `name` (created if missing), one step per batch."""
    notify = progress or (lambda done, total, message: None)
    report = IngestReport(name)
    cursor = (0, 0)
    n = 0
    while cursor[0] < len(documents):
        result = await step(f"batch {n}", partial(library.add_batch, name, documents, cursor))
        report.add(result)
        cursor = (int(result["next"][0]), int(result["next"][1]))
        n += 1
        notify(cursor[0], len(documents), f"indexed {report.chunks_added} passages")
        await asyncio.sleep(0)  # let questions through between batches

    await step("index", partial(library.stage_index, name))
    report.documents = len(documents)
    notify(len(documents), len(documents), f"indexed {report.chunks_added} passages")
    return report


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
