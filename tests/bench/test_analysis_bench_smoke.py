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


def test_targets_lines_say_met_or_not() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("analysis_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["analysis_bench"] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    rows = [
        bench.Row("examples", "after", 35, 10, 146, {}, 1.5, 0, 7000, cpu=2.9),
        bench.Row("examples", "before", 35, 10, 154, {}, 24.0, 16, 5000000),
        bench.Row("generated-1000", "after", 1000, 10, 1825, {}, 4.6, 0, 6000, cpu=8.0),
        bench.Row("generated-100", "after", 100, 10, 174, {}, 0.5, 0, 1000),
    ]
    lines = bench.targets(rows)
    assert len(lines) == 2
    assert lines[0].startswith("- examples: wall 1.50 s") and lines[0].endswith(": met")
    assert lines[1].startswith("- generated-1000: wall 4.60 s") and lines[1].endswith("NOT met")
    undecided = [bench.Row("examples", "after", 35, 10, 146, {}, 1.5, 2, 7000)]
    assert bench.targets(undecided)[0].endswith("NOT met")
