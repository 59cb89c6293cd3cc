"""Data-driven corpus for the static checks `ordinance check` runs ("can this rule
error?"): every ``static/*.yaml`` file holds a small bundle, the findings expected — the
rule, the cause, the attribute, and where in the policy text (line, column) — and the
rules that must be proven safe. Each finding's witness is replayed here through the
evaluator, on the whole bundle: the rule must fail to evaluate on it.

Format::

    description: what the file covers
    schema: |           # optional; default: tests/conformance/schema.yaml
    policies: [policy texts]
    expect: [{rule, cause, attribute?, line, column}]   # exactly these findings
    safe: [policy/rule ids that cannot error]
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from ordinance.policy.analysis.errs import ErrorReport, rule_errors
from ordinance.policy.document import parse_policy
from ordinance.policy.ruleset import Ruleset, compile_ruleset
from ordinance.policy.schema import parse_schema

HERE = Path(__file__).parent
FILES = sorted((HERE / "static").glob("*.yaml"))


def _bundle(path: Path) -> tuple[dict[str, Any], Ruleset]:
    data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    assert set(data) <= {"description", "schema", "policies", "expect", "safe"}, path
    schema_path = HERE / "schema.yaml"
    text = data.get("schema") or schema_path.read_text(encoding="utf-8")
    schema = parse_schema(text, f"{path.name}::schema")
    policies = [parse_policy(t, f"{path.name}::{i}") for i, t in enumerate(data["policies"])]
    return data, compile_ruleset(schema, policies)


@pytest.fixture(scope="module", params=FILES, ids=[f.name for f in FILES])
def checked(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Ruleset, ErrorReport]:
    data, ruleset = _bundle(request.param)
    return data, ruleset, rule_errors(ruleset)


def _attribute(detail: str) -> str | None:
    return detail.split("'")[1] if "missing attribute" in detail else None


def test_finds_exactly_the_expected_failures(
    checked: tuple[dict[str, Any], Ruleset, ErrorReport],
) -> None:
    data, _, report = checked
    got = sorted(
        (f.rule, f.cause, _attribute(f.detail), f.location.line, f.location.column)
        for f in report.findings
    )
    want = sorted(
        (e["rule"], e["cause"], e.get("attribute"), e["line"], e["column"]) for e in data["expect"]
    )
    assert got == want
    assert report.undecided == []


def test_safe_rules_are_not_reported(
    checked: tuple[dict[str, Any], Ruleset, ErrorReport],
) -> None:
    data, ruleset, report = checked
    ids = {cr.qualified_id for cr in ruleset.rules}
    assert set(data["safe"]) <= ids
    assert not {f.rule for f in report.findings} & set(data["safe"])


def test_every_witness_makes_its_rule_err_in_the_evaluator(
    checked: tuple[dict[str, Any], Ruleset, ErrorReport],
) -> None:
    """Replayed here, independently of the check: the rule alone (another rule of the
    bundle could settle the decision first) fails to evaluate on the witness, for the
    reason the finding names."""
    _, ruleset, report = checked
    assert report.findings
    for f in report.findings:
        cr = next(c for c in ruleset.rules if c.qualified_id == f.rule)
        alone = compile_ruleset(ruleset.schema, [replace(cr.policy, rules=(cr.rule,))])
        decision = alone.evaluate(f.witness.request, f.witness.windows())
        assert decision.code == "evaluation_error", (f.rule, decision)
        assert decision.rule_ids == (f.rule,)
        assert decision.detail.endswith(f.detail)
