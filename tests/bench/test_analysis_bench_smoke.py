"""Smoke test for ``bench/analysis_bench.py``: the quick run analyses the generated
100-rule set and prints its table row (nothing here is timed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "analysis_bench.py"


def test_quick_run_prints_the_generated_set_row() -> None:
    run = [sys.executable, str(BENCH), "--quick", "--jobs", "1"]
    done = subprocess.run(run, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0 and "| generated-100 | 100 | 10 |" in done.stdout, done.stderr
