"""`./build.sh bench` still starts and its report still renders (benchmarks never run here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
