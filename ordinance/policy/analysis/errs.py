"""Can this rule error? A rule whose condition raises on some valid request is a silent
deny there (``evaluation_error``): reading an optional attribute or argument the request
may leave out without a guarding ``has()``, dividing by a value that can be zero, a
decimal operation whose result is not exact.

The encoding already carries, for every rule, the formula ``errs`` (its target holds
and its condition raises; see encode.py). Each rule's ``errs`` is solved on its tool's
request space; a model is a witness request, replayed through the real evaluator on a
ruleset holding that rule alone: the finding is reported only when the evaluator does
fail on it, and its reason (the evaluator's) names the cause, which is located at the
first construct of the condition that can raise that way (file:line:column, caret).
A rule that errs on no valid request of any of its tools is proven safe; a check the
budget could not settle, or whose witness the evaluator does not confirm, is listed as
undecided (the encoding over-approximates some constructs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import z3

from ordinance.policy.analysis.abstract import Abstraction
from ordinance.policy.analysis.bucket import DEFAULT_RLIMIT, SAT, UNSAT, Bucket
from ordinance.policy.analysis.combine import build_tool_model
from ordinance.policy.analysis.probe import RuleProbe
from ordinance.policy.analysis.space import Unrealisable, Witness
from ordinance.policy.analysis.zctx import fresh_context
from ordinance.policy.cel.ast import Binary, Expr, Select, attribute_path, children
from ordinance.policy.decision import EVALUATION_ERROR, Decision
from ordinance.policy.errors import GradedProblem, Location
from ordinance.policy.ruleset import CompiledRule, Ruleset

MISSING = "missing-attribute"
DIVISION = "division-by-zero"
INEXACT = "inexact-decimal"
OTHER = "other"

_HINTS = {
    MISSING: "guard the read with has(...) first, e.g. `has(x) && x == ...`",
    DIVISION: "test the divisor first, e.g. `d != 0 && n / d > ...`",
    INEXACT: "compare without dividing (multiply the other side), or round explicitly",
}


class RuleMayError(GradedProblem):
    """A rule whose condition raises on some valid request (a warning; --strict: error)."""

    kind = "rule-error"


@dataclass
class ErrorFinding:
    rule: str  # policy/rule
    tool: str
    cause: str  # MISSING | DIVISION | INEXACT | OTHER
    detail: str  # the evaluator's reason on the witness
    location: Location
    witness: Witness
    decision: Decision

    def problem(self, severity: str = "warning") -> RuleMayError:
        return RuleMayError(
            f"rule {self.rule} can fail to evaluate on {self.tool} ({self.detail}): a silent"
            f" deny; e.g. the request {_short(self.witness.request)}",
            self.location,
            _HINTS.get(self.cause),
            severity,
        )

    def to_json(self) -> dict[str, Any]:
        loc = self.location
        return {
            "rule": self.rule,
            "tool": self.tool,
            "cause": self.cause,
            "detail": self.detail,
            "file": loc.file,
            "line": loc.line,
            "column": loc.column,
            "witness": self.witness.to_json(),
            "decision": {
                "effect": self.decision.effect,
                "code": self.decision.code,
                "detail": self.decision.detail,
            },
        }


@dataclass
class ErrorReport:
    findings: list[ErrorFinding] = field(default_factory=list)
    undecided: list[dict[str, str]] = field(default_factory=list)  # rule, tool, why
    checked: int = 0  # (rule, tool) pairs solved

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "findings": [f.to_json() for f in self.findings],
            "undecided": self.undecided,
        }


def _short(request: dict[str, Any]) -> str:
    import json

    text = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= 200 else text[:199] + "…"


def cause_of(detail: str) -> str:
    """The cause from the evaluator's reason (``ruleset._describe_error``)."""
    if "missing attribute" in detail:
        return MISSING
    if "division by zero" in detail:
        return DIVISION
    if "not exact" in detail:
        return INEXACT
    return OTHER


def _nodes(e: Expr) -> list[Expr]:
    """Every node of ``e``, in source order (pre-order, left to right)."""
    out = [e]
    for c in children(e):
        out += _nodes(c)
    return out


def site(cr: CompiledRule, detail: str) -> Location:
    """Where the condition can raise the way ``detail`` says: the read of the missing
    attribute, the first division, the first arithmetic; else the whole condition."""
    cond = cr.rule.condition
    cause = cause_of(detail)
    found: Expr | None = None
    for node in _nodes(cond.expr):
        if cause == MISSING and isinstance(node, Select):
            path = attribute_path(node)
            if path is not None and f"'{'.'.join(path)}'" in detail:
                found = node
                break
        if cause == DIVISION and isinstance(node, Binary) and node.op in ("/", "%"):
            found = node
            break
        if cause == INEXACT and isinstance(node, Binary) and node.op in ("+", "-", "*", "/"):
            found = node
            break
    if found is None:
        return cond.location(0, max(1, len(cond.text)))
    return cond.location(found.pos, max(1, found.end - found.pos))


def _fails(probe: RuleProbe, rid: str) -> Any:
    def check(w: Witness) -> bool:
        d = probe.alone(rid).evaluate(w.request, w.windows())
        return d.code == EVALUATION_ERROR and rid in d.rule_ids

    return check


MAX_CAUSES = 4  # distinct failures looked for per rule and tool


def _witness(bucket: Bucket, probe: RuleProbe, rid: str, *models: Any) -> Witness | None:
    """The first model's request on which the rule alone fails in the real evaluator."""
    for m in models:
        if m is None:
            continue
        try:
            view = m if bucket.abstraction is None else bucket.abstraction.view(m)
            w = bucket.space.witness(view)
        except Unrealisable:  # a model no request realises: try the next
            continue
        if _fails(probe, rid)(w):
            return w
    return None


def _present(bucket: Bucket, detail: str) -> z3.BoolRef | None:
    """The presence of the attribute the evaluator found missing (to look for other
    failures of the same rule on requests that carry it)."""
    label = detail.split("'")[1] if detail.count("'") >= 2 else ""
    parts = label.split(".")
    if parts == ["resource"]:
        return bucket.space.resource_present
    attr = bucket.space.attrs.get((parts[0], parts[-1])) if len(parts) >= 2 else None
    return None if attr is None else attr.present


def _tool(ruleset: Ruleset, tool: str, rlimit: int, out: ErrorReport) -> None:
    model = build_tool_model(ruleset, tool)
    candidates = [r for r in model.rules if not z3.is_false(z3.simplify(r.errs))]
    if not candidates:
        return
    formulas = [f for r in model.rules for f in (r.applies, r.errs)]
    formulas += [*model.space.base, *model.space.window_constraints()]
    bucket = Bucket(model, rlimit, Abstraction(model.space, formulas, rlimit))
    probe = RuleProbe(ruleset, tool)
    by_id = {cr.qualified_id: cr for cr in ruleset.rules}
    for r in candidates:
        rid = r.qualified_id
        blockers: list[z3.BoolRef] = []
        for _ in range(MAX_CAUSES):
            out.checked += 1
            status, nice, raw = bucket.solve(bucket.rules[rid].errs, *blockers)
            if status == UNSAT:
                break
            found = _witness(bucket, probe, rid, nice, raw) if status == SAT else None
            if found is None:
                why = (
                    "no witness the evaluator confirms"
                    if status == SAT
                    else f"solver gave up within the budget (rlimit {rlimit})"
                )
                out.undecided.append({"rule": rid, "tool": tool, "why": why})
                break
            decision = probe.alone(rid).evaluate(found.request, found.windows())
            detail = decision.detail.split(": ", 1)[-1]
            out.findings.append(
                ErrorFinding(
                    rid,
                    tool,
                    cause_of(detail),
                    detail,
                    site(by_id[rid], detail),
                    found,
                    decision,
                )
            )
            present = _present(bucket, detail) if cause_of(detail) == MISSING else None
            if present is None:
                break  # other causes cannot be excluded from the space one by one
            blockers.append(present)


def rule_errors(ruleset: Ruleset, rlimit: int = DEFAULT_RLIMIT) -> ErrorReport:
    """Every way a rule can fail to evaluate (once per rule and reason, on the first tool
    in name order where a witness shows it); each tool in a Z3 context of its own."""
    out = ErrorReport()
    reported: set[tuple[str, str]] = set()
    for tool in sorted(ruleset.schema.tools):
        part = ErrorReport()
        with fresh_context():
            _tool(ruleset, tool, rlimit, part)
        out.checked += part.checked
        fresh = [f for f in part.findings if (f.rule, f.detail) not in reported]
        out.findings += fresh
        reported |= {(f.rule, f.detail) for f in fresh}
        out.undecided += part.undecided
    return out
