"""Rules of one tool as Z3 terms, and the combining algorithm over them.

For each rule: ``applies`` (target guard holds, the condition is true and does not raise)
and ``errs`` (target guard holds and the condition raises). The decision is then a
function of these booleans exactly as :mod:`ordinance.policy.program` computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import z3

from ordinance.policy.analysis.encode import all_of, any_of, encode_condition, false
from ordinance.policy.analysis.space import ToolSpace
from ordinance.policy.document import Condition, Target
from ordinance.policy.program import TIER_OF_EFFECT
from ordinance.policy.ruleset import (
    CompiledRule,
    Ruleset,
    first_applicable_order,
    tools_matching,
)
from ordinance.policy.schema import Schema
from ordinance.policy.typecheck import check_condition

EFFECTS = ("deny", "require_approval", "allow")  # indexed by tier
DENY, APPROVAL, ALLOW = 0, 1, 2


def rule_tools(cr: CompiledRule, schema: Schema) -> set[str]:
    return tools_matching(cr.policy.target.actions, schema) & tools_matching(
        cr.rule.actions, schema
    )


def guard(space: ToolSpace, target: Target) -> z3.BoolRef:
    """The policy target's agent and resource test (ruleset.py builds the same test as Python source)."""
    parts: list[z3.BoolRef] = []
    agent_tests: list[z3.BoolRef] = []
    roles = space.attr("agent", "roles").var
    agent_tests += [z3.Contains(roles, z3.Unit(z3.StringVal(r))) for r in sorted(target.roles)]
    aid = space.attr("agent", "id").var
    agent_tests += [aid == z3.StringVal(i) for i in sorted(target.agent_ids)]
    if agent_tests:
        parts.append(any_of(*agent_tests))
    if target.resources:
        kind = space.attr("resource", "kind").var
        parts.append(
            z3.And(
                space.resource_present,
                any_of(*[kind == z3.StringVal(k) for k in sorted(target.resources)]),
            )
        )
    return all_of(*parts)


@dataclass
class RuleTerm:
    index: int  # position in the ruleset's rule table
    qualified_id: str
    effect: str
    owner: str
    applies: z3.BoolRef
    errs: z3.BoolRef
    notes: list[str] = field(default_factory=list)
    # require_approval: an approver holds one of these roles (empty: any approver)
    approvers: frozenset[str] = frozenset()

    @property
    def tier(self) -> int:
        return TIER_OF_EFFECT[self.effect]


def approval_conflict(rules: Sequence[RuleTerm]) -> z3.BoolRef:
    """The applying approval rules among ``rules`` have no approver role in common: the
    evaluator then denies (code ``approval_conflict``, ordinance.policy.approvers). The
    intersection is empty exactly when every role some rule names is missing from some
    applying rule that names roles (a rule naming none restricts nothing)."""
    restricting = [r for r in rules if r.tier == APPROVAL and r.approvers]
    roles = sorted({role for r in restricting for role in r.approvers})
    if not roles:  # no rule restricts its approvers: every combination has an approver
        return false()
    return all_of(
        *[any_of(*[r.applies for r in restricting if role not in r.approvers]) for role in roles]
    )


def encode_assertion_condition(
    space: ToolSpace, schema: Schema, condition: Condition, tag: str
) -> tuple[z3.BoolRef, list[str]]:
    """An assertion's ``when`` holds: true and not raising (a raising condition says
    nothing about the request)."""
    typed = check_condition(schema, space.tool, condition)
    enc = encode_condition(space, typed, condition.expr, tag)
    return all_of(z3.Not(enc.term.err), enc.term.val), enc.notes


@dataclass
class ToolModel:
    """One ruleset's rules on one tool's request space."""

    space: ToolSpace
    ruleset: Ruleset
    rules: list[RuleTerm]
    _cache: dict[int, tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]] = field(
        default_factory=dict, repr=False
    )

    @property
    def combining(self) -> str:
        return self.ruleset.schema.settings.combining

    @property
    def default_tier(self) -> int:
        return TIER_OF_EFFECT[self.ruleset.schema.settings.default_effect]

    def ordered(self, rules: Sequence[RuleTerm]) -> list[RuleTerm]:
        return sorted(
            rules, key=lambda r: first_applicable_order(self.ruleset.rules[r.index], r.index)
        )

    def effect(self, without: int | None = None) -> z3.ArithRef:
        """The decision's effect tier (0 deny, 1 approval, 2 allow), optionally with the
        rule of index ``without`` removed."""
        rules = [r for r in self.rules if r.index != without]
        if self.combining == "first-applicable":
            result: z3.ArithRef = z3.IntVal(self.default_tier)
            for r in reversed(self.ordered(rules)):
                result = z3.If(r.errs, z3.IntVal(DENY), z3.If(r.applies, z3.IntVal(r.tier), result))
            return result
        deny = any_of(*[r.applies for r in rules if r.tier == DENY], *[r.errs for r in rules])
        approval = any_of(*[r.applies for r in rules if r.tier == APPROVAL])
        allow = any_of(*[r.applies for r in rules if r.tier == ALLOW])
        tier = z3.IntVal
        conflict = approval_conflict(rules)
        approved = (
            tier(APPROVAL) if conflict.eq(false()) else z3.If(conflict, tier(DENY), tier(APPROVAL))
        )
        return z3.If(
            deny,
            tier(DENY),
            z3.If(approval, approved, z3.If(allow, tier(ALLOW), tier(self.default_tier))),
        )

    def _shared(self, tier: int) -> tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]:
        """What ``determines`` needs of the other rules, the same for every rule of a tier
        (built once: rebuilding it per rule made encoding quadratic in the bucket size)."""
        found = self._cache.get(tier)
        if found is None:
            rules = self.rules
            found = self._cache[tier] = (
                any_of(
                    *[r.applies for r in rules if r.tier == DENY],
                    *[r.errs for r in rules if r.tier == DENY],
                ),
                any_of(*[r.errs for r in rules if r.tier != DENY]),
                any_of(*[r.applies for r in rules if r.tier < tier and r.tier != DENY]),
            )
        return found

    def no_rule_applies(self) -> z3.BoolRef:
        return (
            z3.And(*[z3.Not(z3.Or(r.applies, r.errs)) for r in self.rules])
            if self.rules
            else z3.BoolVal(True)
        )

    def determines(self, rule: RuleTerm) -> z3.BoolRef:
        """``rule`` is among the decision's rule ids."""
        if self.combining == "first-applicable":
            earlier: list[z3.BoolRef] = []
            for r in self.ordered(self.rules):
                if r is rule:
                    return all_of(*[z3.Not(e) for e in earlier], any_of(r.applies, r.errs))
                earlier.append(any_of(r.applies, r.errs))
            return false()
        if rule.tier == DENY:
            return any_of(rule.applies, rule.errs)
        deny_tier, others_err, higher = self._shared(rule.tier)
        if rule.tier == ALLOW:
            wins = all_of(rule.applies, z3.Not(others_err), z3.Not(higher))
        else:
            wins = all_of(rule.applies, z3.Not(others_err))
        return all_of(z3.Not(deny_tier), any_of(wins, rule.errs))


def build_tool_model(ruleset: Ruleset, tool_name: str, space: ToolSpace | None = None) -> ToolModel:
    """Encode every rule of ``ruleset`` whose targets select ``tool_name``."""
    schema = ruleset.schema
    if space is None:
        space = ToolSpace(schema, schema.tools[tool_name])
    terms: list[RuleTerm] = []
    for index, cr in enumerate(ruleset.rules):
        if tool_name not in rule_tools(cr, schema):
            continue
        typed = check_condition(schema, schema.tools[tool_name], cr.rule.condition)
        tag = f"{id(ruleset)}:{index}"
        enc = encode_condition(space, typed, cr.rule.condition.expr, tag)
        g = guard(space, cr.policy.target)
        terms.append(
            RuleTerm(
                index,
                cr.qualified_id,
                cr.rule.effect,
                cr.policy.owner,
                all_of(g, z3.Not(enc.term.err), enc.term.val),
                all_of(g, enc.term.err),
                enc.notes,
                frozenset(cr.rule.approval.roles if cr.rule.effect == "require_approval" else ()),
            )
        )
    return ToolModel(space, ruleset, terms)


@dataclass(frozen=True)
class Outcome:
    """What the combining formulas give one request, from which rules apply and err."""

    tier: int
    determines: frozenset[str]  # the decision's rule ids
    matters: frozenset[str]  # rules whose removal changes the tier


class Combiner:
    """``ToolModel.effect``/``determines``/``effect(without=...)`` evaluated in Python for
    one assignment of the rules' ``applies``/``errs`` flags.

    A witness's prediction needs these for every model the checks produce; building the
    same questions as Z3 formulas took O(rules²) terms per bucket (one ``without`` effect
    per rule) and a substitution per model. This is the same case analysis, term by term
    (``test_bucket.py`` checks the two agree on random flag assignments and that every
    claim it yields is one the skipped solver check confirms)."""

    def __init__(self, model: ToolModel):
        self.default = model.default_tier
        self.first = model.combining == "first-applicable"
        self.rules = {r.qualified_id: r for r in model.rules}
        self.order = [r.qualified_id for r in model.ordered(model.rules)]

    def outcome(self, applies: set[str], errs: set[str]) -> Outcome:
        return self._first(applies, errs) if self.first else self._deny_overrides(applies, errs)

    def _first(self, applies: set[str], errs: set[str]) -> Outcome:
        hits = [rid for rid in self.order if rid in applies or rid in errs]
        if not hits:
            return Outcome(self.default, frozenset(), frozenset())
        tiers = [DENY if rid in errs else self.rules[rid].tier for rid in hits[:2]]
        tier = tiers[0]
        after = tiers[1] if len(tiers) > 1 else self.default
        return Outcome(tier, frozenset(hits[:1]), frozenset(hits[:1] if after != tier else ()))

    def _tier(self, denies: int, approvals: list[RuleTerm], allows: int) -> int:
        if denies:
            return DENY
        if approvals:
            return DENY if _no_common_approver(approvals) else APPROVAL
        return ALLOW if allows else self.default

    def _deny_overrides(self, applies: set[str], errs: set[str]) -> Outcome:
        rules = self.rules
        denying = [
            rid for rid in rules if rid in errs or (rid in applies and rules[rid].tier == DENY)
        ]
        approvals = [rules[rid] for rid in rules if rid in applies and rules[rid].tier == APPROVAL]
        allows = [rid for rid in rules if rid in applies and rules[rid].tier == ALLOW]
        tier = self._tier(len(denying), approvals, len(allows))
        matters = {
            rid for rid in denying if self._tier(len(denying) - 1, approvals, len(allows)) != tier
        }
        matters |= {
            r.qualified_id
            for r in approvals
            if self._tier(len(denying), [a for a in approvals if a is not r], len(allows)) != tier
        }
        matters |= {
            rid for rid in allows if self._tier(len(denying), approvals, len(allows) - 1) != tier
        }
        # ToolModel.determines: a deny-tier rule (not an erring lower one) ends the search
        if any(rules[rid].tier == DENY for rid in denying):
            determines = {rid for rid in denying if rules[rid].tier == DENY}
        elif any(rid in errs for rid in rules):
            determines = {rid for rid in rules if rid in errs}
        elif approvals:
            determines = {r.qualified_id for r in approvals}
        else:
            determines = set(allows)
        return Outcome(tier, frozenset(determines), frozenset(matters))


def _no_common_approver(approvals: list[RuleTerm]) -> bool:
    """``approvers.combine`` finds no role every applying approval rule accepts."""
    common: frozenset[str] | None = None
    for r in approvals:
        if r.approvers:
            common = r.approvers if common is None else common & r.approvers
            if not common:
                return True
    return False
