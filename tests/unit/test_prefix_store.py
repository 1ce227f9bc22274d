"""`PrefixStore`'s contract (`tenancy.py`): every key it touches is under its prefix, listing
never shows or reaches a key outside it, and a commit (expectations included) is the wrapped
store's one atomic commit with every key prefixed. Tenant names are checked before they
become prefixes. A tenant's library (direct and journaled ingestion) writes only under its
prefix, and durable jobs are listed and pruned per tenant."""

from __future__ import annotations

import asyncio

import pytest

from wasmagent.errors import AgentError, ErrorCode
from wasmagent.knowledge.ingest import ingest
from wasmagent.knowledge.library import Library
from wasmagent.ports import MemoryStore
from wasmagent.protocol import DocumentIn
from wasmagent.tenancy import PrefixStore, check_tenant, tenant_prefix
from wasmagent.workflow import Run, Workflows


@pytest.fixture
def inner() -> MemoryStore:
    store = MemoryStore()
    store.data.update({"kb/x/meta": b"root", "t/alice/kb/x/meta": b"alice",
                       "t/alice2/kb/y/meta": b"alice2", "t/bob/history/1": b"bob"})
    return store


async def test_reads_and_writes_land_under_the_prefix(inner: MemoryStore) -> None:
    alice = PrefixStore(inner, tenant_prefix("alice"))
    assert await alice.get("kb/x/meta") == b"alice"
    await alice.put("history/1", b"q")
    assert inner.data["t/alice/history/1"] == b"q"
    await alice.delete("kb/x/meta")
    assert "t/alice/kb/x/meta" not in inner.data
    assert inner.data["kb/x/meta"] == b"root"  # the un-prefixed key of the same name stays
    assert await alice.get("../bob/history/1") is None


async def test_keys_never_escape_the_prefix(inner: MemoryStore) -> None:
    alice = PrefixStore(inner, tenant_prefix("alice"))
    assert await alice.keys() == ["kb/x/meta"]  # not alice2's, though it starts with "alice"
    assert await alice.keys("kb/") == ["kb/x/meta"]
    assert await alice.keys("history/") == []
    assert await PrefixStore(inner, tenant_prefix("bob")).keys() == ["history/1"]
    # the operator's own listing of its prefixes does not show tenants' keys either
    assert await inner.keys("kb/") == ["kb/x/meta"]


async def test_commit_prefixes_puts_deletes_and_expectations(inner: MemoryStore) -> None:
    alice = PrefixStore(inner, tenant_prefix("alice"))
    await alice.commit({"a": b"1"}, ["kb/x/meta"], {"kb/x/meta": b"alice", "a": None})
    assert inner.data["t/alice/a"] == b"1"
    assert "t/alice/kb/x/meta" not in inner.data
    # the un-prefixed "a" is absent too, but the expectation is about alice's "a" only
    with pytest.raises(AgentError) as info:
        await alice.commit({"b": b"2"}, ["kb/x/meta"], {"a": None})
    assert info.value.code is ErrorCode.CONFLICT
    assert "t/alice/b" not in inner.data  # nothing of a refused commit lands
    # an expectation that holds only un-prefixed fails: the root's value is not alice's
    with pytest.raises(AgentError):
        await alice.commit({"c": b"3"}, expect={"kb/x/meta": b"root"})
    await alice.commit({"c": b"3"}, expect={"c": None})
    assert inner.data["t/alice/c"] == b"3"


@pytest.mark.parametrize("name", ["", "a/b", "../x", "a b", "tab\t", "nl\n", "x" * 129])
def test_unsafe_tenant_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot name a tenant"):
        tenant_prefix(name)
    with pytest.raises(ValueError, match="cannot name a tenant"):
        check_tenant(name)


def test_a_tenant_prefix_is_one_segment_under_t() -> None:
    assert tenant_prefix("alice") == "t/alice/"
    assert tenant_prefix("ops.team-1@example") == "t/ops.team-1@example/"
    with pytest.raises(ValueError, match="non-empty prefix"):
        PrefixStore(MemoryStore(), "")


# ---- a tenant's library and jobs over one store ---------------------------------------------

DOC = DocumentIn("a.md", "# A\n\nAlice's only note: the code is 4711.")


class _Clock:
    """Wall time that moves 1 s per reading (job ids sort by start time); heartbeats
    (seconds) wait, retries (milliseconds) pass."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        self.now += 1.0
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds if seconds < 0.1 else 3600)


async def test_a_tenants_ingestion_writes_only_under_its_prefix() -> None:
    root = MemoryStore()
    alice = Library(PrefixStore(root, tenant_prefix("alice")), None, None, refresh_s=0.0)
    await alice.ingest("notes", [DOC])  # direct steps
    engine = Workflows(root, _Clock(), lease_s=5.0)

    async def job(run: Run, data: dict[str, str]) -> dict[str, int]:
        report = await ingest(alice, "journaled", [DOC], step=run.step)
        return {"added": report.chunks_added}

    engine.register("ingest", job)
    job_id = await engine.start("ingest", {}, tenant="alice")
    async with asyncio.timeout(60):  # a safety net: the job takes milliseconds
        records = [record async for record in engine.watch(job_id, poll_s=0.01)]
    assert records[-1].result == {"added": 1}
    await engine.aclose()
    outside = [k for k in root.data if not k.startswith(("t/alice/", "wf/"))]
    assert outside == []
    assert await alice.names() == ["journaled", "notes"]
    # the operator's library over the same store sees none of it, nor does another tenant
    assert await Library(root, None, None).names() == []
    bob = Library(PrefixStore(root, tenant_prefix("bob")), None, None)
    assert await bob.names() == []
    # and alice's knowledge base loads back from the store alone
    fresh = Library(PrefixStore(root, tenant_prefix("alice")), None, None)
    assert len(await fresh.get("journaled")) == 1


async def test_jobs_are_listed_and_pruned_per_tenant() -> None:
    root = MemoryStore()
    engine = Workflows(root, _Clock(), lease_s=5.0, keep_finished=2)

    async def job(run: Run, data: dict[str, int]) -> dict[str, int]:
        return data

    engine.register("noop", job)
    ids: dict[str | None, list[str]] = {"alice": [], "bob": [], None: []}
    for n in range(3):
        for tenant, started in ids.items():
            job_id = await engine.start("noop", {"n": n}, tenant=tenant)
            async with asyncio.timeout(60):
                async for _ in engine.watch(job_id, poll_s=0.01):
                    pass
            started.append(job_id)
    await engine.aclose()
    for tenant, started in ids.items():
        listed = [r.id for r in await engine.recent(10, tenant=tenant)]
        # each tenant keeps its own newest `keep_finished`: nobody's jobs evicted another's
        assert listed == started[::-1][:2]
    assert [r.id for r in await engine.recent(1, tenant="alice")] == ids["alice"][-1:]
