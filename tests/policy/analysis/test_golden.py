"""Golden findings for the example policies and for every scenario.

``UPDATE_GOLDEN=1 python -m pytest tests/policy/analysis/test_golden.py`` rewrites them;
review the diff like any other change. Witness values are left out (they depend on the
solver's choice among many valid witnesses); the ids, subjects and messages are stable.
The example set is analysed on the tools whose checks finish well inside the time limit
on a shared 2-core machine (the string-heavy http.fetch, fs.*, email.send buckets are
exercised by the CLI test instead), so the golden never depends on a timeout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ordinance.policy.analysis import Options
from ordinance.policy.analysis.checks import analyze_tool
from ordinance.policy.analysis.gate import ACK_FILE, gate, load_acks
from ordinance.policy.analysis.run import Report, analyze, merge
from ordinance.policy.loader import load_ruleset

from .helpers import SCENARIOS, load_scenario

GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = Path(__file__).parents[3] / "examples" / "policies"
FAST_TOOLS = ("db.query", "infra.deploy", "infra.scale", "payments.refund", "payments.transfer")


def summary(report: Report) -> list[dict[str, Any]]:
    return [
        {"id": f.id, "kind": f.kind, "tool": f.tool, "subjects": list(f.subjects),
         "message": f.message}
        for f in report.findings
    ] + [{"proven": sorted(report.proven)}]  # fmt: skip


def check_golden(name: str, data: list[dict[str, Any]]) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"no golden {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def examples_report() -> Report:
    ruleset = load_ruleset(EXAMPLES)
    options = Options(timeout_ms=20_000)
    return merge(ruleset, [analyze_tool(ruleset, t, options) for t in FAST_TOOLS])


def test_examples_golden(examples_report: Report) -> None:
    assert not examples_report.by_kind("unknown")
    check_golden("examples", summary(examples_report))


def test_example_acknowledgements_pass_the_gate_and_are_needed(examples_report: Report) -> None:
    """The example set acknowledges its intended cross-owner conflicts (each with a
    justification); without the acknowledgements the same findings refuse the bundle."""
    acks = load_acks(EXAMPLES / ACK_FILE)
    assert acks and all(a.justification.strip() for a in acks)
    assert gate(examples_report, acks).ok
    refused = gate(examples_report, [])
    assert refused.failures and {f.kind for f in refused.failures} == {"conflict"}
    assert all(f.details["cross_owner"] for f in refused.failures)
    # every refused finding is covered by an acknowledgement (one per rule pattern, not
    # one per finding and tool), and every acknowledgement covers conflicts only
    assert all(any(a.covers(f) for a in acks) for f in refused.failures)
    assert len(acks) < len(refused.failures)
    assert all(a.kind == "conflict" or a.id.startswith("conflict:") for a in acks)


FILES = sorted(p for p in SCENARIOS.glob("*.yaml") if p.name != "schema.yaml")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_golden(path: Path) -> None:
    _, ruleset = load_scenario(path)
    check_golden(f"scenario-{path.stem}", summary(analyze(ruleset, Options(timeout_ms=10_000))))
