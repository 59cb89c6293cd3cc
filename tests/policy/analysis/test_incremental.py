"""Incremental analysis after an edit: ``analyze --policy P`` re-analyses only the tool
buckets P touches and gives exactly the verdicts a full analysis gives on those tools (a
bucket's findings depend on its own rules alone), and no dead-rule verdict for a rule with
a tool that was not re-analysed.

Each analysis runs in its own process, as an editor's save does: Z3's search (and so
which model a witness shows, and how much budget a check spends) depends on what the
process asked Z3 before. Witnesses, and so their replayed decisions, are compared by
being valid (the analysis replays each through the evaluator), not by equality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from ordinance.policy.analysis.run import touched_tools
from ordinance.policy.loader import load_ruleset
from tests.policy.analysis.helpers import analyze_json

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"


def _verdicts(report: dict[str, Any], tools: set[str]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in f.items() if k not in ("witness", "decision")}
        for f in report["findings"]
        if f["tool"] in tools
    ]


@pytest.fixture(scope="module")
def full() -> dict[str, Any]:
    return analyze_json(EXAMPLES)


@pytest.mark.parametrize("policy", ["web-fetch", "payments-guardrails", "pii-access"])
def test_a_changed_policy_reanalyses_only_its_buckets(full: dict[str, Any], policy: str) -> None:
    part = analyze_json(EXAMPLES, "--policy", policy)
    tools = touched_tools(load_ruleset(EXAMPLES), {policy})
    assert 0 < part["tools"] == len(tools) <= full["tools"]
    assert _verdicts(part, tools) == _verdicts(full, tools)
    assert all(f["tool"] for f in part["findings"] if f["kind"] == "dead-rule")


def test_analyze_policy_flag_names_an_unknown_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(EXAMPLES), "--policy", "no-such-policy"]) != 0
    assert "no such policy: no-such-policy" in capsys.readouterr().out
