"""The bucket's shortcuts: a rule that an earlier model shows determining a decision (or
changing an effect when removed) skips its own dead-rule (or redundancy) check. Each such
claim must be one the skipped check would have confirmed, and the predictions must match
the pinned-request path they replace."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import z3

from ordinance.policy.analysis.bucket import SAT, UNSAT, Bucket
from ordinance.policy.analysis.combine import Combiner, build_tool_model
from ordinance.policy.document import parse_policy
from ordinance.policy.ruleset import Ruleset, compile_ruleset
from ordinance.policy.schema import parse_schema

from .helpers import SCENARIOS

COMBINING = ("deny-overrides", "first-applicable")


EFFECTS = ("allow", "allow", "deny", "require_approval")


def ranges(
    seed: int,
    count: int = 14,
    combining: str = "deny-overrides",
    effects: tuple[str, ...] = EFFECTS,
    tag_first: bool = False,
) -> Ruleset:
    rng = random.Random(seed)
    lines = ["policy: p", "owner: o", "description: d", "rules:"]
    for n in range(count):
        lo = rng.randrange(0, 400, 10)
        when = f"action.args.size > {lo} && action.args.size <= {lo + rng.randrange(10, 200, 10)}"
        if rng.random() < 0.4:  # read first, the optional tag makes the rule err anywhere
            tag = f'action.args.tag == "{rng.choice("abc")}"'
            when = f"{tag} && {when}" if tag_first else f"{when} && {tag}"
        effect = rng.choice(effects)
        extra = ""
        if effect == "require_approval" and rng.random() < 0.7:  # approval conflicts too
            extra = f", approvers: {{roles: [{', '.join(rng.sample('xyz', 1 + (rng.random() < 0.3)))}]}}"
        lines.append(f"  - {{id: r{n}, effect: {effect}, when: '{when}'{extra}}}")
    text = (SCENARIOS / "schema.yaml").read_text(encoding="utf-8")
    schema = parse_schema(text.replace("deny-overrides", combining))
    return compile_ruleset(schema, [parse_policy("\n".join(lines) + "\n", "p.yaml")])


@pytest.mark.parametrize("combining", COMBINING)
@pytest.mark.parametrize("seed", range(4))
def test_combiner_agrees_with_the_combining_formulas(seed: int, combining: str) -> None:
    """The Python case analysis that predictions use gives, for any flags, what the
    formulas the checks ask about give: the effect, the decision's rules, and which
    rules' removal changes the effect."""
    effects = (*EFFECTS, "require_approval", "require_approval")
    model = build_tool_model(ranges(seed, 8, combining, effects), "doc.read")
    flags = [(z3.Bool(f"a{r.index}"), z3.Bool(f"e{r.index}")) for r in model.rules]
    proxy = replace(
        model,
        rules=[replace(r, applies=a, errs=e) for r, (a, e) in zip(model.rules, flags, strict=True)],
        _cache={},
    )
    effect = proxy.effect()
    combiner = Combiner(model)
    rng = random.Random(seed)
    for _ in range(60):
        # a rule applies or errs, never both (applies includes "does not raise")
        state = [rng.choice((0, 0, 1, 1, 2)) for _ in proxy.rules]
        pairs = [
            (v, z3.BoolVal(s == k))
            for (a, e), s in zip(flags, state, strict=True)
            for v, k in ((a, 1), (e, 2))
        ]

        def value(term: z3.ExprRef, pairs: list[tuple[z3.ExprRef, z3.ExprRef]] = pairs) -> int:
            out = z3.simplify(z3.substitute(term, *pairs))
            return out.as_long() if z3.is_int_value(out) else int(z3.is_true(out))

        applies = {r.qualified_id for r, s in zip(proxy.rules, state, strict=True) if s == 1}
        errs = {r.qualified_id for r, s in zip(proxy.rules, state, strict=True) if s == 2}
        got = combiner.outcome(applies, errs)
        assert got.tier == value(effect)
        assert got.determines == {r.qualified_id for r in proxy.rules if value(proxy.determines(r))}
        tier = value(effect)
        assert got.matters == {
            r.qualified_id for r in proxy.rules if value(proxy.effect(without=r.index)) != tier
        }


@pytest.mark.parametrize("seed", range(4))
def test_learnt_claims_are_what_the_skipped_checks_would_answer(seed: int) -> None:
    ruleset = ranges(seed, combining=COMBINING[seed % 2])
    b = Bucket(build_tool_model(ruleset, "doc.read"), 10_000)
    for rid in b.rules:  # models of the checks themselves feed the shortcuts
        b.learn(b.solve(b.applies[rid], nice=False)[2])
    assert b.alive and b.matters
    for rid in b.alive:
        assert b.solve(b.determines(rid), nice=False)[0] == SAT, rid
    for rid in b.matters:
        assert b.solve(b.effect != b.without(rid), nice=False)[0] == SAT, rid


@pytest.mark.parametrize("seed", range(4))
def test_direct_predictions_equal_the_pinned_ones(seed: int) -> None:
    ruleset = ranges(seed, combining=COMBINING[seed % 2])
    direct = Bucket(build_tool_model(ruleset, "doc.read"), 10_000)
    pinned = Bucket(build_tool_model(ruleset, "doc.read"), 10_000)
    assert direct._direct is not None
    pinned._direct = None  # force the pinned-request path
    for rid in direct.rules:
        _, _, raw = direct.solve(direct.applies[rid], nice=False)
        assert raw is not None
        assert direct.predicted(raw) == pinned.predicted(raw)
    assert direct.alive == pinned.alive and direct.matters == pinned.matters


@pytest.mark.parametrize("seed", range(4))
def test_questions_over_overlapping_rules_are_the_whole_buckets(seed: int) -> None:
    """``determines`` and ``changes`` ask Z3 only about the rules whose boxes meet the
    rule's (boxes.py); each must be equivalent to the formula over every rule of the
    bucket, and pairs the conflict check skips must be disjoint."""
    ruleset = ranges(seed, combining=COMBINING[seed % 2], tag_first=seed >= 2)
    b = Bucket(build_tool_model(ruleset, "doc.read"), 100_000)
    assert any(b.local(rid) is not None for rid in b.rules)  # the shortcut is exercised
    for rid, rule in b.rules.items():
        whole = b.model.determines(rule)
        assert b.solve(z3.Xor(b.determines(rid), whole), nice=False)[0] == UNSAT, rid
        changes = b.effect != b.without(rid)
        assert b.solve(z3.Xor(b.changes(rid), changes), nice=False)[0] == UNSAT, rid
        for other in b.rules:
            if not b.overlaps(rid, other):
                both = z3.And(rule.applies, b.rules[other].applies)
                assert b.solve(both, nice=False)[0] == UNSAT, (rid, other)


def test_a_rule_that_errs_outside_its_box_stays_in_every_question() -> None:
    """``deny-untagged`` reads the optional tag before its range: it errs (a deny) on any
    untagged request, also inside ``small``'s range, which its box does not meet."""
    text = (
        "policy: p\nowner: o\ndescription: d\nrules:\n"
        "  - {id: small, effect: allow, when: 'action.args.size <= 10'}\n"
        "  - {id: big, effect: deny, when: 'action.args.tag == \"x\" && action.args.size > 100'}\n"
    )
    schema = parse_schema((SCENARIOS / "schema.yaml").read_text(encoding="utf-8"))
    ruleset = compile_ruleset(schema, [parse_policy(text, "p.yaml")])
    b = Bucket(build_tool_model(ruleset, "doc.read"), 100_000)
    assert not b.overlaps("p/small", "p/big")
    small = b.rules["p/small"]
    assert (
        b.solve(z3.Xor(b.determines("p/small"), b.model.determines(small)), nice=False)[0] == UNSAT
    )
    status, _, raw = b.solve(b.determines("p/small"), nice=False)
    assert status == SAT and raw is not None
    prediction = b.predicted(raw)
    assert prediction is not None and prediction.effect == "allow"
