"""The watchdog: a stage with work waiting and no progress is named, logged and counted; a
slow stage that still finishes work, or an idle one, is not. Time is the test's to move."""

from __future__ import annotations

import asyncio

import pytest

from wasmagent.runtime.watchdog import Stall, Watchdog

from .test_cancellation import QUESTION, Rig, seeded, settle


class Clock:
    """The loop's time plus whatever the test adds: deadlines and the watchdog both see it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time() + self.offset

    def wall(self) -> float:
        return 1_000_000.0 + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(3600)  # periodic work waits for the test, which calls check()


class Stage:
    def __init__(self) -> None:
        self.backlog = 0
        self.done = 0


def _dog(stall_after_s: float = 10.0) -> tuple[Watchdog, Clock, Stage,
                                                list[tuple[str, bool]]]:
    clock = Clock()
    stage = Stage()
    changes: list[tuple[str, bool]] = []

    def on_change(stall: Stall, stalled: bool) -> None:
        changes.append((stall.stage, stalled))

    dog = Watchdog(clock, stall_after_s=stall_after_s, on_change=on_change)
    dog.watch("embed", backlog=lambda: stage.backlog, progress=lambda: stage.done)
    return dog, clock, stage, changes


async def test_work_waiting_without_progress_is_a_stall_only_after_the_threshold() -> None:
    dog, clock, stage, changes = _dog()
    stage.backlog = 3
    assert dog.check() == []
    clock.offset += 9.9
    assert dog.check() == []
    clock.offset += 0.2
    [stall] = dog.check()
    assert (stall.stage, stall.backlog) == ("embed", 3)
    assert stall.stalled_for_s >= 10.0
    assert changes == [("embed", True)]
    clock.offset += 30
    assert dog.check()[0].stalled_for_s >= 40.0
    assert changes == [("embed", True)], "a stall is reported once, not at every check"
    assert dog.stalls == 1


async def test_a_slow_stage_that_finishes_work_is_not_stuck() -> None:
    dog, clock, stage, changes = _dog()
    stage.backlog = 50
    dog.check()
    for _ in range(10):
        clock.offset += 8
        stage.done += 1
        assert dog.check() == []
    assert changes == []


async def test_an_idle_stage_is_never_stuck_and_new_work_starts_the_clock() -> None:
    dog, clock, stage, changes = _dog()
    clock.offset += 100
    assert dog.check() == []
    stage.backlog = 1  # work arrives after a long idle time: no instant stall
    assert dog.check() == []
    clock.offset += 5
    assert dog.check() == []
    assert changes == []


async def test_progress_or_an_empty_stage_ends_a_stall() -> None:
    dog, clock, stage, changes = _dog()
    stage.backlog = 1
    dog.check()
    clock.offset += 11
    assert dog.check()
    stage.done += 1
    assert dog.check() == []
    clock.offset += 11
    assert dog.check()
    stage.backlog = 0
    assert dog.check() == []
    assert changes == [("embed", True), ("embed", False), ("embed", True), ("embed", False)]


async def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="stall_after_s"):
        Watchdog(Clock(), stall_after_s=0)
    dog, _, _, _ = _dog()
    with pytest.raises(ValueError, match="already watched"):
        dog.watch("embed", backlog=lambda: 0, progress=lambda: 0)


async def test_a_hung_model_is_named_in_status_logged_and_counted_then_recovers() -> None:
    clock = Clock()
    rig = Rig(await seeded(), clock)
    service = rig.service
    assert service.watchdog.stages == ["route", "work", "aggregate", "persist", "embed"]
    rig.model.gate = asyncio.Event()  # the model runtime stops answering
    rig.agent.submit({"v": 1, "type": "ask", "id": "q1", "text": QUESTION})
    await settle(lambda: rig.counts()["model run"] > 0, "the question reaches the model")
    assert service.health() == {"ok": True, "stalled": []}
    clock.offset += service.watchdog.stall_after_s + 1
    health = service.health()
    assert not health["ok"]
    stalled = {s["stage"]: s for s in health["stalled"]}
    assert set(stalled) == {"route", "embed"}, stalled  # the router waits for the model
    assert stalled["embed"]["backlog"] == 1
    assert stalled["embed"]["stalled_for_s"] >= service.watchdog.stall_after_s
    lines = [line for line in service.telemetry.recent() if line["event"] == "stage_stalled"]
    assert {line["stage"] for line in lines} == {"route", "embed"}
    assert all(line["level"] == "error" and line["since"] < clock.wall() for line in lines)
    assert 'wasmagent_stage_stalls_total{stage="embed"} 1' in service.telemetry.prometheus()
    status = service.agent.status()
    assert status["health"]["ok"] is False
    rig.model.gate.set()  # the model answers again: the question completes
    await settle(lambda: bool(rig.of("q1")) and rig.of("q1")[-1]["type"] in ("done", "error"),
                 "the answer once the model is back")
    assert service.health() == {"ok": True, "stalled": []}
    recovered = [line["stage"] for line in service.telemetry.recent()
                 if line["event"] == "stage_recovered"]
    assert sorted(recovered) == ["embed", "route"]
    await service.aclose()
