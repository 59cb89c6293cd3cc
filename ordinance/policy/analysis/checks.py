"""The checks: conflicts, dead rules, redundant rules, assertions and gaps, per tool.

Every check is phrased as "this formula is unsatisfiable" over one tool's request space.
Rules are bucketed by tool (a rule only meets rules that can see the same tool), and each
bucket uses one solver (``bucket.py``): the space's constraints are asserted once, every
check runs under an assumption literal. A satisfiable check yields a model, which becomes a witness request that
is replayed through the real evaluator; a witness the evaluator disagrees with (possible
only where the encoding over-approximates) is never reported as a finding — the check is
reported as ``unknown`` instead.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import z3

from ordinance.policy.analysis.abstract import Abstraction
from ordinance.policy.analysis.bucket import (
    DEFAULT_RLIMIT,
    SAT,
    UNKNOWN,
    UNSAT,
    Bucket,
)
from ordinance.policy.analysis.combine import (
    RuleTerm,
    build_tool_model,
    encode_assertion_condition,
)
from ordinance.policy.analysis.encode import any_of
from ordinance.policy.analysis.probe import RuleProbe
from ordinance.policy.analysis.space import ToolSpace, Witness
from ordinance.policy.analysis.zctx import fresh_context
from ordinance.policy.decision import Decision
from ordinance.policy.document import Assertion
from ordinance.policy.program import TIER_OF_EFFECT
from ordinance.policy.ruleset import Ruleset, tools_matching

__all__ = [
    "DEFAULT_RLIMIT",
    "SAT",
    "UNKNOWN",
    "UNSAT",
    "Finding",
    "Options",
    "RuleProbe",
    "ToolReport",
]
KINDS = ("conflict", "dead-rule", "redundant-rule", "assertion", "gap", "inexact", "unknown")


def finding_id(kind: str, subjects: tuple[str, ...], tool: str) -> str:
    """Stable across runs and rule order: what the finding is about, not how it was found."""
    text = "\0".join([kind, *sorted(subjects), tool])
    return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass
class Finding:
    kind: str
    tool: str
    subjects: tuple[str, ...]  # rule ids ("policy/rule") or "policy/assertion-name"
    message: str
    witness: Witness | None = None
    decision: dict[str, Any] | None = None  # what the evaluator decides on the witness
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return finding_id(self.kind, self.subjects, self.tool)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "tool": self.tool,
            "subjects": list(self.subjects),
            "message": self.message,
        }
        if self.details:
            out["details"] = self.details
        if self.witness is not None:
            out["witness"] = self.witness.to_json()
        if self.decision is not None:
            out["decision"] = self.decision
        return out


@dataclass
class Options:
    # Resource units per solver check (Z3 rlimit): a check that runs out is undecided and
    # reported as `unknown`, the same on every machine whatever its load.
    rlimit: int = DEFAULT_RLIMIT
    # Accepted for compatibility (`--timeout`); no longer bounds anything: a wall-clock
    # limit made which checks ended undecided depend on the machine's load.
    timeout_ms: int | None = None
    # Strings the policies only test against literals as finitely many classes
    # (abstract.py); off: the exact string theory everywhere (the bench's "before").
    abstract: bool = True
    conflicts: bool = True
    dead: bool = True
    redundant: bool = True
    assertions: bool = True
    gaps: bool = True


@dataclass
class ToolReport:
    tool: str
    findings: list[Finding] = field(default_factory=list)
    proven: list[str] = field(default_factory=list)  # "policy/assertion" proven on this tool
    alive: set[str] = field(default_factory=set)  # rules that determine some decision
    dead_candidates: dict[str, Finding] = field(default_factory=dict)  # if dead on all tools
    checks: int = 0
    max_spent: int = 0  # the most resource units one check used
    abstraction: dict[str, Any] = field(default_factory=dict)  # classes, and what stayed exact
    seconds: dict[str, float] = field(default_factory=dict)  # per check family

    @contextmanager
    def timed(self, family: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.seconds[family] = self.seconds.get(family, 0.0) + spent


def decision_json(d: Decision) -> dict[str, Any]:
    return {"effect": d.effect, "code": d.code, "rule_ids": list(d.rule_ids)}


def _unknown(tool: str, subjects: tuple[str, ...], what: str, why: str) -> Finding:
    return Finding("unknown", tool, subjects, f"{what}: {why}", details={"check": what})


def _gave_up(b: Bucket) -> str:
    """Why a check is undecided, in deterministic terms (budget and Z3's reason)."""
    return f"solver gave up within the budget (rlimit {b.rlimit}: {b.undecided_reason})"


def check_conflicts(b: Bucket, probe: RuleProbe, report: ToolReport) -> None:
    rules = b.model.rules
    denies = [r for r in rules if r.effect == "deny"]
    others = [r for r in rules if r.effect != "deny"]
    for d in denies:
        # rules whose boxes do not meet the deny's never apply with it (boxes.py)
        remaining = [a for a in others if b.overlaps(a.qualified_id, d.qualified_id)]
        while remaining:
            status, nice, raw = b.solve(
                b.applies[d.qualified_id], any_of(*[b.applies[a.qualified_id] for a in remaining])
            )
            if status == UNSAT:
                break
            if status == UNKNOWN:
                for a in remaining:
                    report.findings.append(
                        _unknown(
                            b.space.tool.name,
                            (a.qualified_id, d.qualified_id),
                            "conflict",
                            _gave_up(b),
                        )
                    )
                break
            hit: list[RuleTerm] = []
            for chosen in (nice, raw):
                predicted = b.predicted(chosen) if chosen is not None else None
                if predicted is not None:
                    hit = [a for a in remaining if a.qualified_id in predicted.applies]
                    if hit:
                        break
            if not hit:  # cannot tell which rule the model picked: check pairs one by one
                hit = list(remaining)
            for a in hit:
                remaining.remove(a)
                _conflict(b, probe, report, a, d, nice, raw)


def _conflict(
    b: Bucket,
    probe: RuleProbe,
    report: ToolReport,
    a: RuleTerm,
    d: RuleTerm,
    nice: z3.ModelRef | None,
    raw: z3.ModelRef | None,
) -> None:
    tool = b.space.tool.name
    subjects = (a.qualified_id, d.qualified_id)

    def both(w: Witness) -> bool:
        return probe.applies(a.qualified_id, w) and probe.applies(d.qualified_id, w)

    found = b.witness(nice, raw, extra=both)
    if found is None:  # re-solve for this pair alone
        status, n2, r2 = b.solve(b.applies[a.qualified_id], b.applies[d.qualified_id])
        if status == UNSAT:
            return
        found = b.witness(n2, r2, extra=both) if status == SAT else None
    if found is None:
        report.findings.append(
            _unknown(tool, subjects, "conflict", "no witness the evaluator confirms")
        )
        return
    w, decision = found
    cross = a.owner != d.owner
    report.findings.append(
        Finding(
            "conflict",
            tool,
            subjects,
            f"{a.effect} rule {a.qualified_id} and deny rule {d.qualified_id} both match;"
            f" {decision.effect} wins"
            + (f" — cross-owner: {a.owner} vs {d.owner}" if cross else ""),
            w,
            decision_json(decision),
            {"cross_owner": cross, "owners": [a.owner, d.owner], "winner": decision.effect},
        )
    )


def check_rules(b: Bucket, probe: RuleProbe, report: ToolReport, options: Options) -> None:
    """Which rules determine some decision on this tool (for dead rules), and which are
    redundant here (removing them changes no effect)."""
    tool = b.space.tool.name
    for r in b.model.rules:
        if r.qualified_id in b.alive:  # an earlier model shows it determining a decision
            status = SAT
        else:
            status, _, raw = b.solve(b.determines(r.qualified_id), nice=False)
            b.learn(raw)
        if status == SAT:
            report.alive.add(r.qualified_id)
            if options.redundant:
                _redundant(b, probe, report, r)
        elif status == UNKNOWN:
            report.findings.append(_unknown(tool, (r.qualified_id,), "dead-rule", _gave_up(b)))
            report.alive.add(r.qualified_id)
        else:
            s2, nice, raw = b.solve(b.applies[r.qualified_id])
            if s2 == SAT:
                found = b.witness(nice, raw, extra=partial(probe.applies, r.qualified_id))
                report.dead_candidates[r.qualified_id] = Finding(
                    "dead-rule",
                    "",
                    (r.qualified_id,),
                    f"{r.qualified_id} never determines a decision: it matches some requests,"
                    " but higher-precedence rules always decide them",
                    found[0] if found else None,
                    decision_json(found[1]) if found else None,
                    {"reason": "shadowed", "witness_tool": tool},
                )
            elif s2 == UNSAT:
                report.dead_candidates[r.qualified_id] = Finding(
                    "dead-rule",
                    "",
                    (r.qualified_id,),
                    f"{r.qualified_id} never determines a decision: its condition and target"
                    " never hold together",
                    details={"reason": "unsatisfiable"},
                )
            else:
                report.alive.add(r.qualified_id)
                report.findings.append(_unknown(tool, (r.qualified_id,), "dead-rule", _gave_up(b)))


def _redundant(b: Bucket, probe: RuleProbe, report: ToolReport, r: RuleTerm) -> None:
    if r.qualified_id in b.matters:  # an earlier model shows removing it changes an effect
        return
    status, _, raw = b.solve(b.changes(r.qualified_id), nice=False)
    b.learn(raw)
    if status != UNSAT:
        return
    tool = b.space.tool.name
    s2, nice, raw = b.solve(b.determines(r.qualified_id))
    found = b.witness(nice, raw) if s2 == SAT else None
    report.findings.append(
        Finding(
            "redundant-rule",
            tool,
            (r.qualified_id,),
            f"{r.qualified_id} can be removed without changing any decision's effect for {tool}",
            found[0] if found else None,
            decision_json(found[1]) if found else None,
        )
    )


def check_gap(b: Bucket, report: ToolReport) -> None:
    tool = b.space.tool.name
    status, nice, raw = b.solve(b.model.no_rule_applies())
    if status == UNKNOWN:
        report.findings.append(_unknown(tool, (), "gap", _gave_up(b)))
    if status != SAT:
        return
    # the evaluator must fall to the default on it: an invalid request is denied with no
    # rule too, and is not a gap
    found = next(
        (
            hit
            for m in (nice, raw)
            if m is not None and (hit := b.replayed(m)) is not None and hit[1].code == "default"
        ),
        None,
    )
    if found is None:
        report.findings.append(_unknown(tool, (), "gap", "no witness the evaluator confirms"))
        return
    w, decision = found
    report.findings.append(
        Finding(
            "gap",
            tool,
            (),
            f"some requests to {tool} match no rule and fall to the default ({decision.effect})",
            w,
            decision_json(decision),
        )
    )


@dataclass(frozen=True)
class EncodedAssertion:
    name: str  # policy/assertion
    owner: str
    assertion: Assertion
    holds: z3.BoolRef
    notes: list[str]


def encode_assertions(space: ToolSpace, ruleset: Ruleset) -> list[EncodedAssertion]:
    """Every assertion that applies to the tool, encoded before the checks run: the
    string abstraction is built from every formula the checks will ask about."""
    tool = space.tool.name
    out: list[EncodedAssertion] = []
    for policy in ruleset.policies:
        if tool not in tools_matching(policy.target.actions, ruleset.schema):
            continue
        for a in policy.assertions:
            name = f"{policy.id}/{a.name}"
            holds, notes = encode_assertion_condition(
                space, ruleset.schema, a.condition, f"{id(ruleset)}:assert:{name}"
            )
            out.append(EncodedAssertion(name, policy.owner, a, holds, notes))
    return out


def check_assertions(b: Bucket, report: ToolReport, assertions: list[EncodedAssertion]) -> None:
    tool = b.space.tool.name
    if True:  # one level of nesting kept from the per-policy loop
        for encoded in assertions:
            name, a, holds, notes = encoded.name, encoded.assertion, encoded.holds, encoded.notes
            target = z3.IntVal(TIER_OF_EFFECT[a.effect])
            bad = b.effect == target if a.quantifier == "never" else b.effect != target
            status, nice, raw = b.solve(b.prepare(holds), bad)
            if status == UNSAT:
                report.proven.append(name)
                continue
            if status == UNKNOWN:
                report.findings.append(_unknown(tool, (name,), "assertion", _gave_up(b)))
                continue
            found = b.witness(nice, raw)
            if found is None:
                report.findings.append(
                    _unknown(tool, (name,), "assertion", "no witness the evaluator confirms")
                )
                continue
            w, decision = found
            report.findings.append(
                Finding(
                    "assertion",
                    tool,
                    (name,),
                    f"assertion {name} ({a.quantifier}: {a.effect} when {a.condition.text})"
                    f" is refuted: the witness is decided {decision.effect}",
                    w,
                    decision_json(decision),
                    {
                        "quantifier": a.quantifier,
                        "effect": a.effect,
                        "when": a.condition.text,
                        "owner": encoded.owner,
                        "notes": notes,
                    },
                )
            )


def analyze_tool(ruleset: Ruleset, tool: str, options: Options) -> ToolReport:
    """One tool's findings, in a Z3 context of its own: the same whatever the process
    analysed before (see zctx.py)."""
    with fresh_context():
        return _analyze_tool(ruleset, tool, options)


def _analyze_tool(ruleset: Ruleset, tool: str, options: Options) -> ToolReport:
    report = ToolReport(tool)
    with report.timed("encode"):
        model = build_tool_model(ruleset, tool)
        assertions = encode_assertions(model.space, ruleset) if options.assertions else []
        abstraction = None
        if options.abstract:
            formulas = [f for r in model.rules for f in (r.applies, r.errs)]
            formulas += [e.holds for e in assertions]
            formulas += [*model.space.base, *model.space.window_constraints()]
            abstraction = Abstraction(model.space, formulas, options.rlimit)
            report.abstraction = abstraction.summary()
        bucket = Bucket(model, options.rlimit, abstraction)
    probe = RuleProbe(ruleset, tool)
    for r in model.rules:
        for note in r.notes:
            report.findings.append(
                Finding("inexact", tool, (r.qualified_id,), f"{r.qualified_id}: {note}")
            )
    if options.conflicts:
        with report.timed("conflicts"):
            check_conflicts(bucket, probe, report)
    if options.dead or options.redundant:
        with report.timed("rules"):
            check_rules(bucket, probe, report, options)
    if options.assertions:
        with report.timed("assertions"):
            check_assertions(bucket, report, assertions)
    if options.gaps:
        with report.timed("gaps"):
            check_gap(bucket, report)
    report.checks = bucket.checks
    report.max_spent = bucket.max_spent
    return report
