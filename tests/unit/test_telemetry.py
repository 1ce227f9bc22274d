"""Telemetry: JSON-lines logs, redaction, stage histograms and Prometheus text."""

from __future__ import annotations

import json
import re

from wasmagent.telemetry import Telemetry


class TickClock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_log_lines_are_json_with_fields_and_secrets_redacted() -> None:
    lines: list[str] = []
    telemetry = Telemetry(TickClock(), writer=lines.append)
    telemetry.log("ask", request_id="r1", stage="route", ms=1.5, api_key="sk-123",
                  Authorization="Bearer x")
    record = json.loads(lines[0])
    assert record == {"ts": 1_700_000_000.0, "level": "info", "event": "ask",
                      "request_id": "r1", "stage": "route", "ms": 1.5,
                      "api_key": "[redacted]", "Authorization": "[redacted]"}
    assert "sk-123" not in lines[0]


def test_recent_lines_are_bounded() -> None:
    telemetry = Telemetry(TickClock(), recent=5)
    for i in range(20):
        telemetry.log("tick", n=i)
    assert [r["n"] for r in telemetry.recent()] == [15, 16, 17, 18, 19]
    assert len(telemetry.recent(2)) == 2


def test_stage_percentiles_on_known_data() -> None:
    telemetry = Telemetry(TickClock())
    for ms in range(1, 101):
        telemetry.observe("retrieve", float(ms))
    stats = telemetry.snapshot()["stages"]["retrieve"]
    assert stats["count"] == 100
    assert stats["min_ms"] == 1.0
    assert stats["max_ms"] == 100.0
    assert 49 <= stats["p50_ms"] <= 51
    assert 94 <= stats["p95_ms"] <= 96


def test_timer_records_a_stage() -> None:
    clock = TickClock()
    telemetry = Telemetry(clock)
    with telemetry.timer("embed", request_id="r9"):
        clock.now += 0.25
    assert telemetry.snapshot()["stages"]["embed"]["max_ms"] == 250.0
    assert telemetry.recent()[-1]["request_id"] == "r9"


def test_prometheus_text_is_well_formed() -> None:
    telemetry = Telemetry(TickClock())
    telemetry.count("requests", kind="ask")
    telemetry.count("requests", 2, kind="ask")
    telemetry.observe("route", 0.3)
    telemetry.observe("route", 12.0)
    text = telemetry.prometheus()
    sample = re.compile(r'^[a-zA-Z_:][\w:]*(\{[\w]+="[^"]*"(,[\w]+="[^"]*")*\})? [0-9.e+-]+$')
    for line in text.strip().splitlines():
        assert line.startswith("# TYPE ") or sample.match(line), line
    assert 'wasmagent_requests_total{kind="ask"} 3' in text
    assert 'wasmagent_stage_latency_ms_bucket{le="+Inf",stage="route"} 2' in text
    assert 'wasmagent_stage_latency_ms_count{stage="route"} 2' in text
