"""Structured logs and metrics: JSON-lines log events, counters, per-stage latency histograms.

- `log` writes one JSON object per event (`ts`, `level`, `event`, fields), keeps the last N in
  a ring buffer (the UI's diagnostics panel reads them through `status`) and hands the line to
  an optional writer (stderr natively, the console in the browser). Fields whose names look
  like secrets (token, key, secret, password, authorization) are redacted.
- `observe(stage, ms)` feeds a histogram per stage: fixed buckets (for Prometheus), exact
  count/sum/min/max, and percentiles from a reservoir of the most recent 1,024 samples (so p95
  reflects current behaviour, not the whole process lifetime).
- Nothing here blocks or allocates per call beyond a dict and a list append.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from .ports import Clock, LoopClock

BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
RESERVOIR = 1024
SECRET = re.compile(r"token|key|secret|password|authorization|cookie", re.IGNORECASE)


class Log(Protocol):
    """The one log channel: `Telemetry.log`. Core modules take one of these, so their lines
    land where the diagnostics panel and the server's JSON lines read them."""

    def __call__(self, event: str, *, level: str = "info", **fields: Any) -> None: ...


def failure(exc: BaseException) -> str:
    """An exception and its traceback, for a log field."""
    return "".join(traceback.format_exception(exc))


class Histogram:
    """Latency of one stage, in milliseconds."""

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = 0.0
        self.buckets = [0] * len(BUCKETS_MS)
        self.recent: deque[float] = deque(maxlen=RESERVOIR)

    def add(self, ms: float) -> None:
        self.count += 1
        self.sum += ms
        self.min = min(self.min, ms)
        self.max = max(self.max, ms)
        self.recent.append(ms)
        for i, bound in enumerate(BUCKETS_MS):
            if ms <= bound:
                self.buckets[i] += 1
                break

    def percentile(self, p: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        rank = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[rank]

    def summary(self) -> dict[str, float]:
        return {"count": self.count, "sum_ms": round(self.sum, 3),
                "min_ms": round(self.min if self.count else 0.0, 3), "max_ms": round(self.max, 3),
                "p50_ms": round(self.percentile(50), 3), "p95_ms": round(self.percentile(95), 3),
                "p99_ms": round(self.percentile(99), 3)}


def _redact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[redacted]" if SECRET.search(k) else v) for k, v in fields.items()}


class Telemetry:
    """Logs and metrics of one agent; cheap enough to call on every stage of every request."""

    def __init__(self, clock: Clock | None = None, *, recent: int = 200,
                 writer: Callable[[str], None] | None = None) -> None:
        self.clock = clock or LoopClock()
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self.writer = writer
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self.stages: dict[str, Histogram] = {}

    def log(self, event: str, *, level: str = "info", **fields: Any) -> None:
        record = {"ts": round(self.clock.wall(), 3), "level": level, "event": event,
                  **_redact(fields)}
        self._recent.append(record)
        if self.writer is not None:
            self.writer(json.dumps(record, default=str, separators=(",", ":")))

    def observe(self, stage: str, ms: float, *, request_id: str | None = None) -> None:
        self.stages.setdefault(stage, Histogram()).add(ms)
        self.log("stage", stage=stage, ms=round(ms, 3), request_id=request_id)

    def count(self, name: str, value: int = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0) + value

    @contextmanager
    def timer(self, stage: str, *, request_id: str | None = None) -> Iterator[None]:
        start = self.clock.monotonic()
        try:
            yield
        finally:
            self.observe(stage, (self.clock.monotonic() - start) * 1000, request_id=request_id)

    def recent(self, n: int | None = None) -> list[dict[str, Any]]:
        items = list(self._recent)
        return items if n is None else items[-n:]

    def snapshot(self) -> dict[str, Any]:
        counters = {_label(name, labels): v for (name, labels), v in self.counters.items()}
        return {"counters": counters,
                "stages": {stage: h.summary() for stage, h in self.stages.items()}}

    def prometheus(self, prefix: str = "wasmagent") -> str:
        """Counters and stage histograms in the Prometheus text exposition format."""
        lines: list[str] = []
        typed: set[str] = set()
        for (name, labels), value in sorted(self.counters.items()):
            metric = _metric(f"{prefix}_{name}_total")
            if metric not in typed:  # one TYPE line per metric family, or parsers reject it
                typed.add(metric)
                lines.append(f"# TYPE {metric} counter")
            lines.append(f"{metric}{_labels(dict(labels))} {value}")
        metric = _metric(f"{prefix}_stage_latency_ms")
        if self.stages:
            lines.append(f"# TYPE {metric} histogram")
        for stage, h in sorted(self.stages.items()):
            cumulative = 0
            for bound, n in zip(BUCKETS_MS, h.buckets, strict=True):
                cumulative += n
                lines.append(f"{metric}_bucket{_labels({'stage': stage, 'le': str(bound)})} "
                             f"{cumulative}")
            lines.append(f"{metric}_bucket{_labels({'stage': stage, 'le': '+Inf'})} {h.count}")
            lines.append(f"{metric}_sum{_labels({'stage': stage})} {round(h.sum, 3)}")
            lines.append(f"{metric}_count{_labels({'stage': stage})} {h.count}")
        return "\n".join(lines) + "\n"


def _metric(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_:]", "_", name)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{_metric(k)}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _label(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    return name + _labels(dict(labels)) if labels else name


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


FALLBACK = Telemetry(writer=_stderr)
"""Where a component built without a telemetry (a unit test, a script) logs: stderr, so that
nothing it reports is lost."""
fallback_log: Log = FALLBACK.log
