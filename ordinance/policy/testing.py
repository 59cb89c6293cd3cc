"""``ordinance test``: every policy's tests run against the *combined* set.

Running each test against the whole bundle (not its own policy alone) is the point: a
team whose expectations are broken by another team's policy finds out before enforcement.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ordinance.policy import canon
from ordinance.policy.decision import Decision
from ordinance.policy.document import Policy, TestCase
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.typecheck import parse_duration
from ordinance.policy.types import ValueProblem, converter
from ordinance.policy.window import InMemoryWindows

# Tests run at a fixed instant so that history offsets ("2h ago") are reproducible.
TEST_NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class TestResult:
    policy: str
    name: str
    location: str
    expected: str
    expected_rules: tuple[str, ...] | None
    decision: Decision
    error: str = ""  # the test itself is broken (e.g. its history does not fit the schema)
    expected_approvers: tuple[str, ...] | None = None  # roles, as a set; None: not stated
    expected_approvals: int | None = None

    @property
    def passed(self) -> bool:
        if self.error or self.decision.effect != self.expected or not self.approval_matches:
            return False
        if self.expected_rules is None:
            return True
        return sorted(self.expected_rules) == sorted(self.decision.rule_ids)

    @property
    def approval_matches(self) -> bool:
        """The decision's approval requirement is the one the test states (if it does)."""
        roles, count = self.expected_approvers, self.expected_approvals
        if roles is not None and sorted(set(roles)) != sorted(self.decision.approval_roles):
            return False
        return count is None or count == self.decision.approvals_required

    @property
    def problem(self) -> str:
        if self.passed:
            return ""
        if self.error:
            return f"broken test: {self.error}"
        rules = ", ".join(self.decision.rule_ids)
        got = self.decision.effect + (f" by {rules}" if rules else "")
        want = self.expected
        if self.expected_rules is not None:
            want += f" by {', '.join(self.expected_rules) or '(no rule)'}"
        if self.decision.effect == self.expected and not self.approval_matches:
            want = _requirement(self.expected_approvers, self.expected_approvals)
            got = _requirement(self.decision.approval_roles, self.decision.approvals_required)
        return f"expected {want}, got {got} ({self.code}: {self.why})"

    @property
    def code(self) -> str:
        """The decision's reason code (matched, default, invalid_request, ...)."""
        return self.decision.code

    @property
    def why(self) -> str:
        """The decision's reason: the detail (e.g. what makes the request invalid), else
        the determining rules' reasons."""
        d = self.decision
        return d.detail or "; ".join(d.reasons) or "no rule applied"

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "test": self.name,
            "location": self.location,
            "passed": self.passed,
            "expected": self.expected,
            "expected_rules": None if self.expected_rules is None else list(self.expected_rules),
            "expected_approvers": None
            if self.expected_approvers is None
            else sorted(set(self.expected_approvers)),
            "expected_approvals": self.expected_approvals,
            "decision": self.decision.to_json(),
            "code": self.code,
            "why": self.why,
            "problem": self.problem,
        }


def _requirement(roles: tuple[str, ...] | None, count: int | None) -> str:
    who = "any roles" if roles is None else ", ".join(sorted(set(roles))) or "anyone"
    return f"{'some' if count is None else count} approval(s) by {who}"


class HistoryProblem(ValueError):
    """A test's history that does not fit the schema (reported as a failing test)."""


def _split(total: Any, n: int) -> list[Any]:
    """``total`` as ``n`` parts that add up to it exactly (equal but for the last)."""
    if isinstance(total, bool) or not isinstance(total, int | float | str | Decimal):
        raise HistoryProblem(f"history `sum` totals must be numbers, not {total!r}")
    if isinstance(total, int):
        base = total // n
        return [base] * (n - 1) + [total - base * (n - 1)]
    try:
        exact = Decimal(str(total))
    except ArithmeticError:
        raise HistoryProblem(f"history `sum` total {total!r} is not a number") from None
    exponent = int(exact.as_tuple().exponent)
    units = int(exact.scaleb(-exponent))
    base = units // n
    parts = [base] * (n - 1) + [units - base * (n - 1)]
    return [str(Decimal(u).scaleb(exponent)) for u in parts]


def expand_history(history: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Compact entries as the literal actions they stand for: ``{count: N, within: D}``
    is N actions spread evenly inside the last D (none on its edge), and ``sum: {arg:
    total}`` gives those actions (one if no ``count``) arguments adding up to ``total``
    exactly; ``tool`` and ``args`` apply to each. Literal entries pass unchanged."""
    out: list[dict[str, Any]] = []
    for entry in history:
        if "within" not in entry:
            out.append(entry)
            continue
        within = parse_duration(str(entry["within"]))
        if within is None:
            raise HistoryProblem(
                f"history `within` must be a duration such as 1h, not {entry['within']!r}"
            )
        n = int(entry.get("count") or 1)
        sums = {k: _split(v, n) for k, v in dict(entry.get("sum") or {}).items()}
        for k in range(n):
            args = dict(entry.get("args") or {})
            args.update({name: parts[k] for name, parts in sums.items()})
            # strictly inside (now - within, now]: k+1 of n+1 equal steps back
            literal: dict[str, Any] = {"ago": Fraction(within * (k + 1), n + 1), "args": args}
            if "tool" in entry:
                literal["tool"] = entry["tool"]
            out.append(literal)
    return out


def history_windows(ruleset: Ruleset, test: TestCase) -> InMemoryWindows:
    """Window state holding the test's earlier allowed actions, with arguments in the
    canonical form the enforcer would have recorded (so "5.5" and 5.5 both sum exactly)."""
    windows = InMemoryWindows(clock=lambda: TEST_NOW)
    request = test.request
    agent = request.get("agent")
    action = request.get("action")
    agent_id = str(agent.get("id", "")) if isinstance(agent, dict) else ""
    default_tool = str(action.get("tool", "")) if isinstance(action, dict) else ""
    for entry in expand_history(test.history):
        ago = entry["ago"]  # a duration, or seconds (a Fraction) from a compact entry
        seconds = ago if isinstance(ago, Fraction) else parse_duration(str(ago))
        if seconds is None:
            raise HistoryProblem(
                f"history `ago` must be a duration such as 2h, not {entry['ago']!r}"
            )
        tool = canon.canonical_tool(str(entry.get("tool", default_tool)))
        spec = ruleset.schema.tools.get(tool)
        if spec is None:
            raise HistoryProblem(f"history names tool {tool!r}, which is not in the schema")
        args = {}
        for name, value in dict(entry.get("args") or {}).items():
            if name not in spec.args:
                raise HistoryProblem(f"history argument {name!r} is not declared for {tool}")
            try:
                args[name] = converter(spec.args[name].type)(value)
            except ValueProblem as exc:
                raise HistoryProblem(f"history argument {name!r}: {exc}") from None
        windows.record(agent_id, tool, args, TEST_NOW - float(seconds))
    return windows


def _qualify(policy: Policy, rule_ids: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if rule_ids is None:
        return None
    return tuple(r if "/" in r else f"{policy.id}/{r}" for r in rule_ids)


def run_tests(ruleset: Ruleset) -> list[TestResult]:
    results = []
    for policy in ruleset.policies:
        for test in policy.tests:
            error = ""
            try:
                windows = history_windows(ruleset, test)
                decision = ruleset.evaluate(test.request, windows)
            except HistoryProblem as exc:
                error = str(exc)
                decision = ruleset.evaluate(test.request, InMemoryWindows(clock=lambda: TEST_NOW))
            results.append(
                TestResult(
                    policy.id,
                    test.name,
                    str(test.location),
                    test.expect,
                    _qualify(policy, test.rules),
                    decision,
                    error,
                    test.approvers,
                    test.approvals,
                )
            )
    return results
