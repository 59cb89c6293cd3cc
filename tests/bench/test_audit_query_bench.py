"""Smoke test for ``bench/audit_query_bench.py`` at a tiny size: the index answers every
benchmark question exactly as the full scan does, the agent and time questions search an
index, and the report renders. Nothing is timed here; the numbers belong to the bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "audit_query_bench.py"
TINY = ["--decisions", "6000", "--agents", "300", "--runs", "1", "--e2e", "300", "--json"]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(BENCH), *TINY],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parsed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def test_index_and_full_scan_give_the_same_answers(result: dict[str, Any]) -> None:
    rows = result["rows"]
    assert len(rows) == 13
    assert all(r["agree"] for r in rows), [r["query"] for r in rows if not r["agree"]]
    # At this size an hour holds a few decisions; most questions must still find some,
    # or "agree" would compare empty answers.
    assert sum(r["rows"] > 0 for r in rows) >= 11, rows


def test_agent_and_time_questions_search_an_index(result: dict[str, Any]) -> None:
    for r in result["rows"]:
        steps = r["plan"].split(" / ")
        assert not [s for s in steps if s.startswith("SCAN")], r
        if r["query"].startswith("agent"):
            assert "decisions_agent_time" in r["plan"], r
        # A rollout question alone searches its own index (with a day, the time index may
        # be the narrower search: either way, no scan).
        if r["query"].startswith("arm") and "all time" in r["query"]:
            assert "decisions_arm_time" in r["plan"], r
        if r["query"].startswith("shadow") and "all time" in r["query"]:
            assert "decisions_shadow_" in r["plan"], r


def test_the_command_answers_as_the_index_does(result: dict[str, Any]) -> None:
    """The process-level timing ran the real `ordinance audit query` on the same question."""
    cli = result["cli"]
    [same] = [r for r in result["rows"] if r["query"] == cli["query"]]
    assert cli["rows"] == same["rows"] > 0
    assert cli["ms"] > 0 and cli["startup_ms"] > 0


def test_sizes_and_rates_are_reported(result: dict[str, Any]) -> None:
    assert result["decisions"] == 6000
    assert result["rule_rows"] > 0
    assert 0 < result["rollout_rows"] < result["decisions"]
    assert result["e2e"]["records"] == 300  # every Avro record reached the index


def test_the_table_renders() -> None:
    sys.path.insert(0, str(BENCH.parent))
    try:
        import audit_query_bench as bench
    finally:
        sys.path.remove(str(BENCH.parent))
    fake = {
        "decisions": 10,
        "rule_rows": 9,
        "rollout_rows": 2,
        "index_mb": 0.1,
        "build_s": 0.5,
        "build_per_s": 20.0,
        "e2e": {"records": 5, "seconds": 1.0, "per_s": 5.0},
        "runs": 3,
        "environment": {},
        "rows": [
            {"query": "agent + 1 day", "rows": 2, "indexed_ms": 0.5, "scan_ms": 50.0},
        ],
    }
    table = bench.markdown(fake)
    assert "| agent + 1 day | 2 | 0.50 | 50.0 | 100x |" in table
