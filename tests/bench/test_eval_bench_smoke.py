"""Smoke test for ``bench/eval_bench.py``: the engines it compares decide alike.

Only correctness: every engine (plain Python floor, cedarpy, regopy) must reach
Ordinance's decision on every benchmark request of the quick run. Nothing here is timed
and nothing asserts on speed; the numbers belong to the benchmark itself.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("cedarpy")
pytest.importorskip("regopy")

BENCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "eval_bench.py"


@pytest.fixture(scope="module")
def eval_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_bench", BENCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepared(eval_bench: ModuleType) -> dict[str, Any]:
    result: dict[str, Any] = eval_bench.prepare(quick=True)
    return result


def test_every_engine_agrees_with_ordinance_on_every_request(prepared: dict[str, Any]) -> None:
    for name, (_, engines, requests, agreement) in prepared.items():
        assert agreement.ok, (name, agreement.mismatches)
        assert agreement.agree == {engine.name: len(requests) for engine in engines}
        assert {"ordinance", "python floor", "cedarpy", "regopy"} <= set(agreement.agree)


def test_the_requests_exercise_every_outcome(
    eval_bench: ModuleType, prepared: dict[str, Any]
) -> None:
    for _, _, requests, agreement in prepared.values():
        for effect in eval_bench.EFFECTS:
            assert agreement.effects.get(effect, 0) >= len(requests) // 10, agreement.effects


def test_the_sets_have_the_advertised_size(prepared: dict[str, Any]) -> None:
    small, large = prepared["small"][0], prepared["large"][0]
    assert small.rule_count == 10
    assert large.rule_count == 1000
    assert len(large.tools) == 100


def test_a_disagreeing_engine_is_caught(eval_bench: ModuleType, prepared: dict[str, Any]) -> None:
    _, engines, requests, _ = prepared["small"]
    always_allow = eval_bench.Engine("always allow", lambda request: "allow", 0.0)
    agreement = eval_bench.check_agreement([engines[0], always_allow], requests)
    assert not agreement.ok
    assert agreement.mismatches and agreement.mismatches[0]["engine"] == "always allow"


def test_the_report_renders_without_timing(
    eval_bench: ModuleType, prepared: dict[str, Any]
) -> None:
    report = eval_bench.Report(True, eval_bench.environment(), {})
    report.agreement = {name: item[3] for name, item in prepared.items()}
    for set_name in eval_bench.SETS:
        for engine in ("ordinance", "cedarpy", "cedarpy, per-tool sets"):
            report.rows.append(eval_bench.Row(set_name, 10, engine, 1.0, 2.0, 1e6, 1.0, 1, None))
    report.targets = eval_bench.targets(report.rows)
    text = eval_bench.markdown(report)
    assert "| small | 10 | ordinance |" in text
    assert "Targets:" in text
