"""`./build.sh bench` still starts and its report still renders (benchmarks never run here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "bench"


def test_the_bench_command_starts() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "run.py"), "--help"], check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout
    assert "--quick" in out


def test_the_recorded_results_render_to_the_committed_report() -> None:
    sys.path[:0] = [str(BENCH)]
    try:
        import report

        results = json.loads((ROOT / "bench-results.json").read_text())
        rendered = report.render(results)
    finally:
        sys.path.remove(str(BENCH))
    assert rendered == (ROOT / "BENCHMARKS.md").read_text()
    for heading in ("## Boot", "## Embeddings", "## End to end", "## Peer: transformers.js"):
        assert heading in rendered


def test_the_churn_plan_and_its_tallies() -> None:
    """The server section's churn logic without a server: who leaves when, and what counts."""
    from tests.bench import server as bench

    plan = bench.churn_plan(sessions=100, asks=250, seed=14)
    assert plan == bench.churn_plan(sessions=100, asks=250, seed=14)  # reproducible
    assert len(plan) == 250
    assert sorted(a.client for a in plan[:100]) == list(range(100))  # everyone asks each round
    leavers = {a.client for a in plan if a.leave is not None}
    assert 0 < len(leavers) <= 20  # only the 20% who churn
    assert {a.mode for a in plan} == {"local", "llm"}
    sent = [a.leave for a in plan if a.leave is not None and a.leave[0] == "sent"]
    assert any(s == 0.0 for _, s in sent)  # some leave right after sending
    assert any(a.leave is not None and a.leave[0] == "event" for a in plan)

    records: list[dict[str, Any]] = [
        {"mode": "local", "left": None, "outcome": "done", "ms": 10.0, "at_s": 1.0},
        {"mode": "llm", "left": None, "outcome": "done", "ms": 30.0, "at_s": 5.0},
        {"mode": "local", "left": None, "outcome": "error deadline_exceeded", "ms": 60000.0,
         "at_s": 9.0},
        {"mode": "local", "left": "sent", "outcome": None, "ms": None, "at_s": 2.0},
        {"mode": "llm", "left": "event", "outcome": None, "ms": None, "at_s": 6.0},
        {"mode": "local", "left": None, "outcome": "connect failed: OSError", "ms": None},
    ]
    summary = bench.churn_summary(records, {"start_s": 4.0, "stop_s": 8.0})
    assert (summary["stayed"], summary["answered"], summary["left"]) == (4, 2, 2)
    assert summary["left_right_after_send"] == summary["left_mid_answer"] == 1
    assert summary["failures"] == {"error deadline_exceeded": 1, "connect failed: OSError": 1}
    assert summary["by_mode"]["llm"] == {"stayed": 1, "answered": 1}
    phases = summary["phases"]
    assert [phases[p]["answered"] for p in ("before_hog", "during_hog", "after_hog")] == [1, 1, 0]
    assert phases["after_hog"]["latency_ms"] is None
    assert bench.render_churn({"failed": "TimeoutError: "})[-2].startswith("**The churn run")
