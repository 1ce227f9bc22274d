"""Cancel a question at every await it passes through: nobody else may notice.

The workflow tests crash at every commit; these cancel at every suspension. A question is
sent, the event loop is stepped `k` times (each `sleep(0)` lets every ready task advance by
one await), then the question is cancelled, by the caller's `cancel` or by its client going
away (the server's `hang_up`: every request of that connection cancelled), for k = 0, 1, 2, ...
until the question completes before the cancel. After each cancellation the question has
exactly one terminal event, a fresh question (and a held companion, where there is one) is
answered exactly like an undisturbed run, every in-flight count is back to 0 and no task is
left behind. Where the question was at each k is recorded, and each scenario checks that it
visited every stage it is built to reach: router, batcher queue (also behind a running
batch), model run, intent head, pool queue, worker, aggregator and persistence.

Everything here is the real core (`Service`: pipeline, router, micro-batcher, worker pool,
library, persistence); only the host's ports are doubles: a model that takes a few loop turns
per run, brute-force vectors and the in-memory store. No timer decides anything: each run is
deterministic. Plain functions, no fixtures: the file also runs inside Pyodide.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tests.support.aio import collect
from wasmagent.agent import Agent
from wasmagent.ports import Clock, Host, LoopClock, MemoryStore, Tensor
from wasmagent.service import INTENT_LABELS, Service

DIM = 384
DOCS = [
    {"source": "ferry.md", "text": "# Ferry\n\nThe ferry to the island leaves at seven every "
     "morning from pier four. Tickets are sold on board."},
    {"source": "museum.md", "text": "# Museum\n\nThe museum opens at ten and closes at six. "
     "Entry is free on the first sunday of the month."},
    {"source": "bakery.md", "text": "# Bakery\n\nThe bakery sells bread, pastries and coffee "
     "from six in the morning."},
]
WORDS = sorted({w.strip(".,#?").lower() for d in DOCS for w in d["text"].split()}
               | {"when", "does", "the", "leave", "what", "time", "open", "is", "sold"})
VOCAB = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])
QUESTION = "when does the ferry leave?"
FRESH = "what time does the museum open?"
COMPANION = "what does the bakery sell?"
MAX_STEPS = 400
PARKED_STEPS = 5


class Model:
    """The inference port as a deterministic double: each run takes a few loop turns; an
    embedding is the normalised bag of its token ids. `gate` holds runs of the embedding
    model until it is set (a batch the test keeps running)."""

    def __init__(self) -> None:
        self.embedding = 0
        self.intent = 0
        self.gate: asyncio.Event | None = None

    async def run(self, model: str, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if model == "intent":
            self.intent += 1
            try:
                await asyncio.sleep(0)
                rows = feeds["embedding"].shape[0]
                return {"probabilities": Tensor.float32((rows, 4), [0.97, 0.01, 0.01, 0.01] * rows),
                        "label": Tensor.int64((rows,), [0] * rows)}
            finally:
                self.intent -= 1
        self.embedding += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return {"sentence_embedding": _embed(feeds["input_ids"], feeds["attention_mask"])}
        finally:
            self.embedding -= 1


def _embed(ids: Tensor, mask: Tensor) -> Tensor:
    rows, width = ids.shape
    out = array("f")
    for r in range(rows):
        vector = [0.0] * DIM
        for i in range(r * width, (r + 1) * width):
            if mask.data[i] and ids.data[i] > 4:
                vector[ids.data[i] % DIM] += 1.0
        norm = sum(x * x for x in vector) ** 0.5 or 1.0
        out.extend(x / norm for x in vector)
    return Tensor.float32((rows, DIM), out)


class Vectors:
    """Brute-force inner-product search; `gate` holds searches until set (a worker the test
    keeps busy)."""

    def __init__(self) -> None:
        self.spaces: dict[str, array[float]] = {}
        self.gate: asyncio.Event | None = None

    async def add(self, space: str, dim: int, rows: array[float]) -> int:
        self.spaces.setdefault(space, array("f")).extend(rows)
        return len(self.spaces[space]) // dim

    async def search(self, space: str, query: array[float], k: int) -> list[tuple[int, float]]:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # the real ports answer from a thread or from JS
        rows = self.spaces.get(space, array("f"))
        scores = [(i, sum(a * b for a, b in zip(query, rows[i * DIM:(i + 1) * DIM],
                                                strict=True)))
                  for i in range(len(rows) // DIM)]
        return sorted(scores, key=lambda s: -s[1])[:k]

    async def drop(self, space: str) -> None:
        self.spaces.pop(space, None)


class Store(MemoryStore):
    """The in-memory store, taking a loop turn inside each read and commit (as a real one
    would: SQLite in its thread, IndexedDB through JS)."""

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        super().__init__()
        self.data.update(data or {})
        self.committing = 0

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(0)
        return await super().get(key)

    async def commit(self, puts: Any, deletes: Any = (), expect: Any = None) -> None:
        self.committing += 1
        try:
            await asyncio.sleep(0)
            await super().commit(puts, deletes, expect)
        finally:
            self.committing -= 1


class Rig:
    """One freshly assembled agent on the double ports, and the events of each client."""

    def __init__(self, data: dict[str, bytes], clock: Clock | None = None,
                 model: Model | None = None) -> None:
        self.model = model or Model()
        self.vectors = Vectors()
        self.store = Store(data)
        self.events: list[dict[str, Any]] = []
        host = Host(name="test", clock=clock or LoopClock(), store=self.store, inference=self.model,
                    vectors=self.vectors, vocab=VOCAB)
        self.service = Service(host, collect(self.events),
                               intent_labels=INTENT_LABELS, pool_size=1)
        self.service.start()

    @property
    def agent(self) -> Agent:
        return self.service.agent

    def client(self) -> Agent:
        """Another connection onto the same core (the server makes one per WebSocket)."""
        return self.service.connect(collect(self.events))

    def of(self, rid: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("id") == rid]

    def counts(self) -> dict[str, int]:
        """How much work sits at each place of the pipeline, in pipeline order."""
        pipeline = self.service.pipeline
        assert self.service.embedder is not None
        batcher = self.service.embedder.batcher
        return {
            "inbox": len(pipeline.inbox),
            "batcher queue": batcher.pending,
            "model run": self.model.embedding,
            "intent head": self.model.intent,
            "router": pipeline._routing,
            "work channel": len(pipeline.work),
            "pool queue": pipeline.pool.queued,
            "worker": pipeline.pool.in_flight,
            "aggregator": len(pipeline.out),
            "persistence": len(pipeline.persist) + pipeline._saving + self.store.committing,
            # last: a worker's task lingers a turn after handing its job to the aggregator
            "worker task": len(pipeline._jobs),
        }

    def locate(self, held: dict[str, int]) -> str:
        """The first place holding more work than `held` (a companion's share): ours."""
        for place, count in self.counts().items():
            if count > held.get(place, 0):
                return place
        return "edge"

    def idle(self) -> bool:
        pipeline = self.service.pipeline
        assert self.service.embedder is not None
        batcher = self.service.embedder.batcher
        return (pipeline.in_flight == 0 and pipeline.pool.in_flight == 0
                and pipeline.pool.queued == 0 and batcher.pending == 0 and batcher.running == 0
                and not any(self.counts().values()))


async def settle(ready: Callable[[], bool], what: str, turns: int = 2000) -> None:
    """Let the loop run until `ready()`: counted in loop turns, never in seconds."""
    for _ in range(turns):
        if ready():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not reached after {turns} loop turns: {what}")


async def answered(rig: Rig, agent: Agent, rid: str, text: str) -> dict[str, Any]:
    agent.submit({"v": 1, "type": "ask", "id": rid, "text": text})
    await settle(lambda: any(e["type"] in ("done", "error") for e in rig.of(rid)),
                 f"an answer to {rid}")
    terminal = rig.of(rid)[-1]
    assert terminal["type"] == "done", terminal
    return next(e for e in rig.of(rid) if e["type"] == "answer")


def _shape(answer: dict[str, Any]) -> tuple[str, list[str], bool, str]:
    return (answer["text"], [c["source"] for c in answer["citations"]], answer["confident"],
            answer["route"])


_SEED: dict[str, Any] = {}


async def seeded() -> dict[str, bytes]:
    """A store holding the three documents (ingested once through the real protocol)."""
    if not _SEED:
        rig = Rig({})
        rig.agent.submit({"v": 1, "type": "ingest", "id": "i", "kb": "default",
                          "documents": DOCS})
        await rig.agent.drain()
        assert rig.of("i")[-1]["type"] == "done", rig.of("i")
        _SEED["data"] = dict(rig.store.data)
        await rig.service.aclose()
    data: dict[str, bytes] = _SEED["data"]
    return data


Holder = Callable[[Rig], Awaitable[Callable[[], Awaitable[None]]]]


async def _no_holder(rig: Rig) -> Callable[[], Awaitable[None]]:
    async def release() -> None:
        return None

    return release


async def _hold(rig: Rig, gate_of: Callable[[Rig], None], place: str
                ) -> Callable[[], Awaitable[None]]:
    """Send the companion question and keep it at `place` until `release()`, which then
    checks it is answered exactly like an undisturbed run."""
    gate_of(rig)
    rig.agent.submit({"v": 1, "type": "ask", "id": "companion", "text": COMPANION})
    await settle(lambda: rig.counts()[place] > 0, f"the companion held at {place}")

    async def release() -> None:
        for gate in (rig.model.gate, rig.vectors.gate):
            if gate is not None:
                gate.set()
        await settle(lambda: bool(rig.of("companion")) and rig.of("companion")[-1]["type"]
                     in ("done", "error"), "the companion's answer")
        assert rig.of("companion")[-1]["type"] == "done", rig.of("companion")
        answer = next(e for e in rig.of("companion") if e["type"] == "answer")
        assert _shape(answer) == _REFERENCE["companion"]

    return release


async def _hold_in_worker(rig: Rig) -> Callable[[], Awaitable[None]]:
    def gate(r: Rig) -> None:
        r.vectors.gate = asyncio.Event()

    return await _hold(rig, gate, "worker")


async def _hold_in_model(rig: Rig) -> Callable[[], Awaitable[None]]:
    def gate(r: Rig) -> None:
        r.model.gate = asyncio.Event()

    return await _hold(rig, gate, "model run")


_REFERENCE: dict[str, tuple[str, list[str], bool, str]] = {}


async def _references() -> None:
    if _REFERENCE:
        return
    rig = Rig(await seeded())
    for rid, text in (("companion", COMPANION), ("fresh", FRESH), ("target", QUESTION)):
        _REFERENCE[rid] = _shape(await answered(rig, rig.agent, rid, text))
    assert "seven" in _REFERENCE["target"][0]
    assert _REFERENCE["target"][1] == ["ferry.md"]
    await rig.service.aclose()


async def _cancel_at_every_step(how: str, *, warm: bool, holder: Holder = _no_holder,
                                parked: str | None = None) -> set[str]:
    """Run the scenario for k = 0, 1, ... until the question finishes first (or, behind a
    held companion, until it has waited at `parked` for a few steps); the places it was."""
    await _references()
    data = await seeded()
    baseline = asyncio.all_tasks()
    visited: set[str] = set()
    waited = 0
    for k in range(MAX_STEPS):
        rig = Rig(data)
        if warm:
            await answered(rig, rig.agent, "warm", FRESH)
        release = await holder(rig)
        held = rig.counts()
        before = asyncio.all_tasks()
        client = rig.client()
        client.submit({"v": 1, "type": "ask", "id": "target", "text": QUESTION})
        for _ in range(k):
            await asyncio.sleep(0)
        finished_first = any(e["type"] in ("done", "error") for e in rig.of("target"))
        place = rig.locate(held)
        visited.add(place)
        waited = waited + 1 if place == parked else 0
        if how == "cancel":
            client.submit({"v": 1, "type": "cancel", "id": "stop", "target": "target"})
        else:
            client.cancel_all()
        await client.drain()
        terminals = [e for e in rig.of("target") if e["type"] in ("done", "error")]
        assert len(terminals) == 1, (k, terminals)
        assert terminals[0]["type"] == "done" or terminals[0]["code"] == "cancelled", terminals
        await release()
        fresh = await answered(rig, rig.agent, "fresh", FRESH)
        assert _shape(fresh) == _REFERENCE["fresh"], (k, fresh)
        await settle(rig.idle, f"in-flight counts back to 0 after a cancel at step {k}")
        await settle(lambda b=before: not asyncio.all_tasks() - b,
                     f"no task left over after a cancel at step {k}")
        assert rig.service.health()["ok"], rig.service.health()
        await rig.service.aclose()
        await settle(lambda: not asyncio.all_tasks() - baseline, "the service's tasks gone")
        if finished_first or waited >= PARKED_STEPS:
            return visited
    raise AssertionError(f"the question did not finish within {MAX_STEPS} steps")


async def test_a_cold_question_cancelled_at_every_step() -> None:
    for how in ("cancel", "client gone"):
        visited = await _cancel_at_every_step(how, warm=False)
        expected = {"inbox", "batcher queue", "model run", "intent head", "router", "worker",
                    "aggregator", "persistence"}
        assert expected <= visited, (how, expected - visited)


async def test_a_warm_question_cancelled_at_every_step() -> None:
    for how in ("cancel", "client gone"):
        visited = await _cancel_at_every_step(how, warm=True)
        expected = {"inbox", "batcher queue", "model run", "intent head", "worker",
                    "aggregator", "persistence"}
        assert expected <= visited, (how, expected - visited)


async def test_a_question_cancelled_while_queued_behind_a_busy_worker() -> None:
    for how in ("cancel", "client gone"):
        visited = await _cancel_at_every_step(how, warm=True, holder=_hold_in_worker,
                                              parked="pool queue")
        assert "pool queue" in visited, visited


async def test_a_question_cancelled_while_queued_behind_a_running_batch() -> None:
    for how in ("cancel", "client gone"):
        visited = await _cancel_at_every_step(how, warm=True, holder=_hold_in_model,
                                              parked="batcher queue")
        assert "batcher queue" in visited, visited
