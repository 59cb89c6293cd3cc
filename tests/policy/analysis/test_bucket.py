"""The bucket's shortcuts: a rule that an earlier model shows determining a decision (or
changing an effect when removed) skips its own dead-rule (or redundancy) check. Each such
claim must be one the skipped check would have confirmed, and the predictions must match
the pinned-request path they replace."""

from __future__ import annotations

import random

import pytest

from ordinance.policy.analysis.bucket import SAT, Bucket
from ordinance.policy.analysis.combine import build_tool_model
from ordinance.policy.document import parse_policy
from ordinance.policy.ruleset import Ruleset, compile_ruleset
from ordinance.policy.schema import parse_schema

from .helpers import SCENARIOS


def ranges(seed: int, count: int = 14) -> Ruleset:
    rng = random.Random(seed)
    lines = ["policy: p", "owner: o", "description: d", "rules:"]
    for n in range(count):
        lo = rng.randrange(0, 400, 10)
        when = f"action.args.size > {lo} && action.args.size <= {lo + rng.randrange(10, 200, 10)}"
        if rng.random() < 0.4:
            when += f' && action.args.tag == "{rng.choice("abc")}"'
        effect = rng.choice(["allow", "allow", "deny", "require_approval"])
        lines.append(f"  - {{id: r{n}, effect: {effect}, when: '{when}'}}")
    schema = parse_schema((SCENARIOS / "schema.yaml").read_text(encoding="utf-8"))
    return compile_ruleset(schema, [parse_policy("\n".join(lines) + "\n", "p.yaml")])


@pytest.mark.parametrize("seed", range(4))
def test_learnt_claims_are_what_the_skipped_checks_would_answer(seed: int) -> None:
    ruleset = ranges(seed)
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
    ruleset = ranges(seed)
    direct = Bucket(build_tool_model(ruleset, "doc.read"), 10_000)
    pinned = Bucket(build_tool_model(ruleset, "doc.read"), 10_000)
    assert direct._direct is not None
    pinned._direct = None  # force the pinned-request path
    for rid in direct.rules:
        _, _, raw = direct.solve(direct.applies[rid], nice=False)
        assert raw is not None
        assert direct.predicted(raw) == pinned.predicted(raw)
    assert direct.alive == pinned.alive and direct.matters == pinned.matters
