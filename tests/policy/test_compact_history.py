"""Policy tests state window history compactly — ``history: {count: 100, within: 1h}``
or ``{sum: {amount: 5000}, within: 24h}`` — instead of literal entries; and a failing
test prints why (the decision's code and reason, e.g. the invalid-request detail) in the
human table, not only in --json."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.loader import load_ruleset
from ordinance.policy.testing import expand_history, run_tests

SCHEMA = "tools:\n  pay:\n    args: {amount: int, fee?: decimal}\n"
POLICY = """policy: pay
owner: fin
description: payments
target: {actions: [pay]}
rules:
  - id: budget
    effect: deny
    when: window.sum(action.args.amount, "24h") + action.args.amount > 10000
  - id: rate
    effect: deny
    when: window.count("1h") >= 100
  - id: ok
    effect: allow
tests:
"""
REQ = "request: {agent: {id: a}, action: {tool: pay, args: {amount: 1}}}"


def _bundle(tmp_path: Path, tests: str) -> Path:
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "pay.yaml").write_text(POLICY + tests)
    return tmp_path


def test_count_and_sum_decide_as_literal_history_would(tmp_path: Path) -> None:
    d = _bundle(
        tmp_path,
        f"""  - name: a hundred calls in the hour
    {REQ}
    history: {{count: 100, within: 1h}}
    expect: deny
    rules: [rate]
  - name: ninety-nine calls
    {REQ}
    history: {{count: 99, within: 1h}}
    expect: allow
  - name: the budget spent in ten transfers
    {REQ}
    history: {{count: 10, sum: {{amount: 10000}}, within: 24h}}
    expect: deny
    rules: [budget]
  - name: one short of the budget, and older spending outside the window
    {REQ}
    history:
      - {{sum: {{amount: 9999}}, within: 24h}}
      - {{ago: 25h, args: {{amount: 5000}}}}
    expect: allow
""",
    )
    results = run_tests(load_ruleset(d))
    assert [(r.name, r.passed) for r in results] == [
        ("a hundred calls in the hour", True),
        ("ninety-nine calls", True),
        ("the budget spent in ten transfers", True),
        ("one short of the budget, and older spending outside the window", True),
    ]


def test_expansion_is_exact_and_strictly_inside_the_window() -> None:
    entries = expand_history(
        ({"count": 3, "sum": {"amount": 10, "fee": "10.01"}, "within": "1h", "tool": "pay"},)
    )
    assert [e["ago"] for e in entries] == [Fraction(900), Fraction(1800), Fraction(2700)]
    assert sum(e["args"]["amount"] for e in entries) == 10
    assert sum(Decimal(e["args"]["fee"]) for e in entries) == Decimal("10.01")
    assert all(e["tool"] == "pay" for e in entries)
    one = expand_history(({"count": 1, "within": "90s"},))
    assert one == [{"ago": Fraction(45), "args": {}}]


@pytest.mark.parametrize(
    ("history", "words"),
    [
        ("{count: 0, within: 1h}", "between 1 and"),
        ("{count: many, within: 1h}", "whole number"),
        ("{within: 1h}", "needs `count` and/or `sum`"),
        ("{sum: 5, within: 1h}", "must map argument names"),
        ("{count: 3}", "each history entry needs `ago`"),
    ],
)
def test_malformed_compact_history_is_a_located_error(
    tmp_path: Path, history: str, words: str
) -> None:
    d = _bundle(tmp_path, f"  - name: t\n    {REQ}\n    history: {history}\n    expect: allow\n")
    with pytest.raises(PolicyErrors) as exc:
        load_ruleset(d)
    [err] = exc.value.errors
    assert words in err.message
    loc = err.location
    assert (loc.line, loc.column) == (17, 14) and loc.file.endswith("pay.yaml")
    assert loc.source_line == f"    history: {history}"


def test_a_bad_duration_fails_the_test_with_its_reason(tmp_path: Path) -> None:
    d = _bundle(
        tmp_path,
        f"  - name: t\n    {REQ}\n    history: {{count: 2, within: soon}}\n    expect: allow\n",
    )
    [r] = run_tests(load_ruleset(d))
    assert not r.passed and "`within` must be a duration" in r.problem


def test_failing_test_shows_code_and_reason_in_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _bundle(
        tmp_path,
        """  - name: bad
    request: {agent: {id: a}, action: {tool: pay, args: {amount: lots}}}
    expect: allow
""",
    )
    assert main(["test", str(d)]) == 4
    # rich wraps a long cell over lines: read the table without its borders
    table = " ".join(re.sub("[│┃]", " ", capsys.readouterr().out).split())
    assert "invalid_request" in table
    assert "action.args.amount: expected an integer" in table
    assert main(["test", str(d), "--json"]) == 4
    [r] = json.loads(capsys.readouterr().out)["results"]
    assert r["code"] == "invalid_request" and "expected an integer" in r["why"]
    assert r["why"] in r["problem"]
