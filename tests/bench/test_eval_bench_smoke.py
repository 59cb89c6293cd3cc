"""Smoke test for ``bench/eval_bench.py``: the engines it compares decide alike.

Only correctness: every engine (plain Python floor, cedarpy, regopy) must reach
Ordinance's decision on every benchmark request of the quick run. Nothing here is timed
and nothing asserts on speed; the numbers belong to the benchmark itself.

The engines run in a child process: regopy's native runtime and RocksDB's (the
enforcer's state cache, tested elsewhere in this session) abort when loaded into one
process ("double free or corruption"), and production never loads both.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Looked up, not imported: importing regopy here is exactly what must not happen.
if importlib.util.find_spec("cedarpy") is None or importlib.util.find_spec("regopy") is None:
    pytest.skip("the bench extras (cedarpy, regopy) are not installed", allow_module_level=True)

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"

CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import eval_bench
out = {"effects": list(eval_bench.EFFECTS), "sets": {}}
prepared = eval_bench.prepare(quick=True)
_, engines, requests, _ = prepared["small"]
always_allow = eval_bench.Engine("always allow", lambda request: "allow", 0.0)
caught = eval_bench.check_agreement([engines[0], always_allow], requests)
out["always_allow"] = {"ok": caught.ok, "first": caught.mismatches[0]["engine"] if caught.mismatches else None}
report = eval_bench.Report(True, eval_bench.environment(), {})
report.agreement = {name: item[3] for name, item in prepared.items()}
for set_name in eval_bench.SETS:
    for engine in ("ordinance", "cedarpy", "cedarpy, per-tool sets"):
        report.rows.append(eval_bench.Row(set_name, 10, engine, 1.0, 2.0, 1e6, 1.0, 1, None))
report.targets = eval_bench.targets(report.rows)
out["markdown"] = eval_bench.markdown(report)
for name, (spec, engines, requests, agreement) in prepared.items():
    out["sets"][name] = {
        "ok": agreement.ok,
        "mismatches": [str(m) for m in agreement.mismatches],
        "agree": agreement.agree,
        "engines": [engine.name for engine in engines],
        "requests": len(requests),
        "effects": agreement.effects,
        "rule_count": spec.rule_count,
        "tools": len(spec.tools),
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def prepared() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(BENCH_DIR)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_every_engine_agrees_with_ordinance_on_every_request(prepared: dict[str, Any]) -> None:
    for name, s in prepared["sets"].items():
        assert s["ok"], (name, s["mismatches"])
        assert s["agree"] == {engine: s["requests"] for engine in s["engines"]}
        assert {"ordinance", "python floor", "cedarpy", "regopy"} <= set(s["agree"])


def test_the_requests_exercise_every_outcome(prepared: dict[str, Any]) -> None:
    for s in prepared["sets"].values():
        for effect in prepared["effects"]:
            assert s["effects"].get(effect, 0) >= s["requests"] // 10, s["effects"]


def test_the_sets_have_the_advertised_size(prepared: dict[str, Any]) -> None:
    small, large = prepared["sets"]["small"], prepared["sets"]["large"]
    assert small["rule_count"] == 10
    assert large["rule_count"] == 1000
    assert large["tools"] == 100


def test_a_disagreeing_engine_is_caught(prepared: dict[str, Any]) -> None:
    assert prepared["always_allow"] == {"ok": False, "first": "always allow"}


def test_the_report_renders_without_timing(prepared: dict[str, Any]) -> None:
    assert "| small | 10 | ordinance |" in prepared["markdown"]
    assert "Targets:" in prepared["markdown"]
