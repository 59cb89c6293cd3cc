"""Approval requirements on require_approval rules: combination, decisions, `eval` output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.policy import testing
from ordinance.policy.approvers import Requirement, combine
from ordinance.policy.decision import Decision
from ordinance.policy.document import parse_policy
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.ruleset import compile_ruleset
from ordinance.policy.schema import parse_schema
from ordinance.policy.testing import run_tests

SCHEMA = "tools:\n  pay:\n    args: {amount: int}\n"
POLICY = """\
policy: p
owner: o
description: d
rules:
  - id: big
    effect: require_approval
    when: action.args.amount > 100
    approvers: {roles: [approver:finance, admin]}
    approvals: 2
  - id: huge
    effect: require_approval
    when: action.args.amount > 1000
    approvers: {roles: [admin]}
    approvals: 3
  - {id: ok, effect: allow, when: action.args.amount <= 100}
"""


def _request(amount: int) -> dict[str, object]:
    return {"agent": {"id": "a1"}, "action": {"tool": "pay", "args": {"amount": amount}}}


def test_combine_takes_the_largest_count_and_the_common_roles() -> None:
    a = Requirement(("admin", "approver:finance"), 2)
    b = Requirement(("admin", "approver:risk"), 3)
    assert combine([a, b]) == Requirement(("admin",), 3)
    assert combine([a, Requirement()]) == a
    assert combine([Requirement(), Requirement()]) == Requirement((), 1)
    assert combine([a, Requirement(("approver:hr",), 1)]) is None
    # a conflict is not undone by a later unrestricted rule
    assert combine([a, Requirement(("x",)), Requirement()]) is None


def test_decisions_carry_the_requirement() -> None:
    ruleset = compile_ruleset(parse_schema(SCHEMA), [parse_policy(POLICY)])
    small = ruleset.evaluate(_request(5))
    assert (small.effect, small.approval_roles, small.approvals_required) == ("allow", (), None)
    big = ruleset.evaluate(_request(500))
    assert big.effect == "require_approval"
    assert (big.approval_roles, big.approvals_required) == (("admin", "approver:finance"), 2)
    huge = ruleset.evaluate(_request(5000))
    assert set(huge.rule_ids) == {"p/big", "p/huge"}
    assert (huge.approval_roles, huge.approvals_required) == (("admin",), 3)
    assert huge.to_json()["approval_roles"] == ["admin"]
    assert huge.to_json()["approvals_required"] == 3


def test_a_decision_without_a_requirement_serialises_null() -> None:
    decision = Decision("deny", (), ("x",), (), "b")
    assert decision.to_json()["approvals_required"] is None
    assert decision.to_json()["approval_roles"] == []


def test_errors_are_located_with_a_caret() -> None:
    text = POLICY.replace("approvals: 3", "approvals: 0")
    with pytest.raises(PolicyErrors) as info:
        parse_policy(text, "p.yaml")
    rendered = info.value.errors[0].render()
    assert "p.yaml:14:16" in rendered and "between 1 and 10" in rendered
    assert "^" in rendered


def test_eval_reports_the_requirement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "p.yaml").write_text(POLICY)
    request = tmp_path / "r.json"
    request.write_text(json.dumps(_request(500)))
    assert main(["eval", str(tmp_path), "--request", str(request)]) == 0
    assert "approvals 2 distinct, by: admin, approver:finance" in capsys.readouterr().out
    assert main(["eval", str(tmp_path), "--request", str(request), "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)["decision"]
    assert decision["approval_roles"] == ["admin", "approver:finance"]
    assert decision["approvals_required"] == 2


def _with_tests(tests: str) -> str:
    return POLICY + "tests:\n" + tests


BIG_TEST = """\
  - name: big
    request: {agent: {id: a1}, action: {tool: pay, args: {amount: 500}}}
    expect: require_approval
"""


def _results(tests: str) -> list[testing.TestResult]:
    policy = parse_policy(_with_tests(tests))
    return run_tests(compile_ruleset(parse_schema(SCHEMA), [policy]))


def test_policy_tests_can_state_the_approval_requirement() -> None:
    [ok] = _results(BIG_TEST + "    approvers: [approver:finance, admin]\n    approvals: 2\n")
    assert ok.passed and ok.to_json()["expected_approvers"] == ["admin", "approver:finance"]
    [wrong_count] = _results(BIG_TEST + "    approvals: 3\n")
    assert not wrong_count.passed
    assert wrong_count.problem.startswith(
        "expected 3 approval(s) by any roles, got 2 approval(s) by admin, approver:finance"
    )
    [wrong_roles] = _results(BIG_TEST + "    approvers: []\n")
    assert not wrong_roles.passed and "by anyone" in wrong_roles.problem
    [unstated] = _results(BIG_TEST)
    assert unstated.passed


def test_a_test_may_state_approvals_only_when_it_expects_require_approval() -> None:
    tests = BIG_TEST.replace("expect: require_approval", "expect: allow") + "    approvals: 2\n"
    with pytest.raises(PolicyErrors) as info:
        parse_policy(_with_tests(tests), "p.yaml")
    [error] = info.value.errors
    assert "only meaningful when it expects require_approval" in error.message
    assert (error.location.line, error.location.column) == (20, 5)
    with pytest.raises(PolicyErrors):
        parse_policy(_with_tests(BIG_TEST + "    approvers: admin\n"))
