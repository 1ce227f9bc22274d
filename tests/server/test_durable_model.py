"""A Hypothesis state machine against the real stores: random ingest / delete / ask / crash /
restart sequences, checked against a simple model (which documents each knowledge base holds).

A crash makes the store die at a chosen commit (just before it, or just after it is durable),
like a SIGKILL: from then on the "process" can do nothing, and a restart builds every in-memory
object anew on the same database and resumes the journal. Invariants after each restart and
each finished operation: every document the user added is there, each passage exactly once,
nothing that was deleted comes back, no job is left unfinished.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from wasmagent.hosts.sql import open_store
from wasmagent.knowledge.ingest import ingest
from wasmagent.knowledge.library import Library
from wasmagent.llm.resilience import RetryPolicy
from wasmagent.ports import MemoryStore, Store
from wasmagent.protocol import DocumentIn
from wasmagent.retrieval.chunking import chunk_document
from wasmagent.retrieval.extract import extract_sections
from wasmagent.workflow import JobStatus, Run, Workflows

from ..support.clock import ManualClock

KBS = ("alpha", "beta")
DOCS = [DocumentIn(f"doc{i}.md", f"# Doc {i}\n\n" + "\n\n".join(
    f"## Part {p}\n\n" + " ".join(f"Marker{i}x{p} sentence {s} about crate {i * 50 + p * 5 + s}."
                                  for s in range(10)) for p in range(12)), "markdown")
    for i in range(6)]
CHUNKS = [len(chunk_document(extract_sections(d.text, "markdown", source=d.source),
                             source=d.source)) for d in DOCS]


class Crash(BaseException):
    """The process died (a BaseException: nothing in the core catches it)."""


class DyingStore:
    """A store that dies at the `die_at`-th commit from now, before or after applying it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.dead = False
        self.die_at: int | None = None
        self.after = False

    def _alive(self) -> None:
        if self.dead:
            raise Crash

    async def get(self, key: str) -> bytes | None:
        self._alive()
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self._alive()
        await self.inner.put(key, value)

    async def delete(self, key: str) -> None:
        self._alive()
        await self.inner.delete(key)

    async def keys(self, prefix: str = "") -> list[str]:
        self._alive()
        return await self.inner.keys(prefix)

    async def commit(self, puts: Any, deletes: Any = (), expect: Any = None) -> None:
        self._alive()
        if self.die_at is not None:
            self.die_at -= 1
            if self.die_at == 0:
                self.dead = True
                if self.after:
                    await self.inner.commit(puts, deletes, expect)
                raise Crash
        await self.inner.commit(puts, deletes, expect)


class Process:
    """What one agent process holds in memory: its library and its job runner."""

    def __init__(self, store: DyingStore, clock: ManualClock) -> None:
        self.library = Library(store, None, None, clock=clock, refresh_s=0.0)
        self.jobs = Workflows(store, clock, lease_s=5.0,
                              retry=RetryPolicy(attempts=3, base_s=0.001, cap_s=0.001))
        self.jobs.register("ingest", self._ingest)

    async def _ingest(self, run: Run, job: dict[str, Any]) -> dict[str, Any]:
        docs = [DOCS[i] for i in job["docs"]]
        return (await ingest(self.library, job["kb"], docs, step=run.step)).to_dict()

    async def finish_all(self) -> None:
        """Wait for every job this process runs (or until the store dies under it)."""
        for job_id in self.jobs.running():
            task = self.jobs._local[job_id].task
            await asyncio.gather(task, return_exceptions=True)


def machine(open_backend: Any) -> type[RuleBasedStateMachine]:  # noqa: C901 - one class
    """The state machine on one backend (Hypothesis needs a class per configuration)."""

    class DurableStore(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.backend: Store = self.loop.run_until_complete(open_backend())
            self.store = DyingStore(self.backend)
            self.clock = ManualClock()
            self.process = Process(self.store, self.clock)
            self.model: dict[str, set[int]] = {}
            self.reports: dict[str, tuple[int, int]] = {}
            """Each job's expected (chunks added, duplicates): a step whose effect ran twice
            would count its passages as duplicates the second time."""
            self.crashed = False

        def run(self, aw: Any) -> Any:
            return self.loop.run_until_complete(aw)

        @precondition(lambda self: not self.crashed)
        @rule(kb=st.sampled_from(KBS), docs=st.lists(st.integers(0, len(DOCS) - 1),
                                                     min_size=1, max_size=4),
              die_at=st.none() | st.integers(1, 6), after=st.booleans())
        def ingest(self, kb: str, docs: list[int], die_at: int | None, after: bool) -> None:
            self.store.die_at, self.store.after = die_at, after
            title = f"job {len(self.reports)}"
            before = self.model.get(kb, set())
            added = sum(CHUNKS[i] for i in set(docs) - before)
            self.reports[title] = (added, sum(CHUNKS[i] for i in docs) - added)
            try:
                self.run(self.process.jobs.start("ingest", {"kb": kb, "docs": docs},
                                                 title=title))
            except Crash:
                # died while journaling the job itself: it was never accepted, unless the
                # journal write landed just before dying, in which case it must complete
                self.crashed = True
                if not after or die_at != 1:
                    return
            self.model.setdefault(kb, set()).update(docs)
            self.run(self.process.finish_all())
            self.crashed = self.crashed or self.store.dead
            self.store.die_at = None

        @precondition(lambda self: self.crashed)
        @rule()
        def restart(self) -> None:
            self.run(self.process.jobs.aclose())
            self.store.dead = False
            self.clock.now += 10  # past the dead process's leases
            self.process = Process(self.store, self.clock)
            self.run(self.process.jobs.resume())
            self.run(self.process.finish_all())
            self.crashed = False

        @precondition(lambda self: not self.crashed)
        @rule(kb=st.sampled_from(KBS))
        def delete(self, kb: str) -> None:
            self.run(self.process.library.delete(kb))
            self.model.pop(kb, None)

        @precondition(lambda self: not self.crashed)
        @rule(kb=st.sampled_from(KBS), doc=st.integers(0, len(DOCS) - 1))
        def ask(self, kb: str, doc: int) -> None:
            found = self.run(self.process.library.fresh(kb))
            if doc not in self.model.get(kb, set()):
                assert found is None or f"doc{doc}.md" not in found.sources
                return
            hits = self.run(found.search(f"Marker{doc}x3 crate", None, 3))
            assert hits[0].chunk.source == f"doc{doc}.md"

        @invariant()
        def nothing_lost_or_duplicated(self) -> None:
            if self.crashed:
                return
            fresh = Library(self.backend, None, None)
            assert set(self.run(fresh.names())) == {k for k, v in self.model.items() if v}
            for kb, docs in self.model.items():
                stored = self.run(fresh.fresh(kb))
                if not docs:
                    continue
                assert stored is not None
                assert stored.sources == {f"doc{i}.md": CHUNKS[i] for i in docs}
                texts = [c.text for c in stored.chunks]
                assert len(texts) == len(set(texts))
            assert self.run(self.backend.keys("wf/open/")) == []
            for job in self.run(self.process.jobs.recent(500)):
                assert job.status is JobStatus.DONE, job
                assert job.result is not None
                assert (job.result["chunks_added"], job.result["duplicates"]) == \
                    self.reports[job.title], job

        def teardown(self) -> None:
            self.run(self.process.jobs.aclose())
            self.run(self.backend.commit({}, self.run(self.backend.keys(""))))
            close = getattr(self.backend, "aclose", None)
            if close is not None:
                self.run(close())
            self.loop.close()

    return DurableStore


SETTINGS = settings(max_examples=25, stateful_step_count=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgresql"])
def test_random_crashes_and_restarts_lose_and_duplicate_nothing(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "memory":
        shared = MemoryStore()

        async def open_backend() -> Store:
            return shared
    elif backend == "sqlite":
        path = tmp_path / "model.sqlite"

        async def open_backend() -> Store:
            return await open_store(f"sqlite:///{path}")
    else:
        url = request.getfixturevalue("postgres").new_database()

        async def open_backend() -> Store:
            return await open_store(url)
    run_state_machine_as_test(machine(open_backend), settings=SETTINGS)
