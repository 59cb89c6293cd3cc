"""Soundness by property test, over random small policy sets.

- Every witness the analysis reports is decided by the real evaluator exactly as the
  finding claims (effect and determining rules; both rules of a conflict apply alone).
- Every allow/deny pair the analysis does *not* report as conflicting (and did not give
  up on) is disjoint: random sampling finds no request both rules match.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordinance.policy.analysis import Options, analyze
from ordinance.policy.analysis.checks import RuleProbe
from ordinance.policy.analysis.space import Witness
from ordinance.policy.document import parse_policy
from ordinance.policy.ruleset import compile_ruleset
from ordinance.policy.schema import parse_schema

from .helpers import SCENARIOS, replay

ATOMS = [
    st.builds(lambda op, n: f"action.args.size {op} {n}",
              st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), st.integers(-3, 12)),
    st.sampled_from(["/a/", "/a", "/b/"]).map(lambda p: f'action.args.path.startsWith("{p}")'),
    st.sampled_from([".key", "x"]).map(lambda s: f'action.args.path.endsWith("{s}")'),
    st.sampled_from(["x", "y"]).map(lambda t: f'action.args.tag == "{t}"'),
    st.just("has(action.args.tag)"),
    st.integers(0, 4).map(lambda n: f"agent.level > {n}"),
    st.integers(-1, 5).map(lambda n: f"10 / action.args.size > {n}"),
    st.just('action.args.tag.lower() == "x"'),
    st.integers(0, 2).map(lambda n: f'window.count("1h") > {n}'),
    st.just('action.args.path.matches("^/a/[0-9]+$")'),
]  # fmt: skip


def conditions() -> st.SearchStrategy[str]:
    atom = st.one_of(*ATOMS)
    return st.recursive(
        atom,
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"({a}) && ({b})", inner, inner),
            st.builds(lambda a, b: f"({a}) || ({b})", inner, inner),
            inner.map(lambda a: f"!({a})"),
        ),
        max_leaves=3,
    )


def rule() -> st.SearchStrategy[tuple[str, str]]:
    return st.tuples(st.sampled_from(["allow", "deny", "require_approval"]), conditions())


def policy_text(pid: str, owner: str, rules: list[tuple[str, str]]) -> str:
    lines = [f"policy: {pid}", f"owner: {owner}", "description: d", "rules:"]
    for n, (effect, when) in enumerate(rules):
        quoted = when.replace("'", "''")
        lines.append(f"  - {{id: r{n}, effect: {effect}, when: '{quoted}'}}")
    return "\n".join(lines) + "\n"


SCHEMA = (SCENARIOS / "schema.yaml").read_text(encoding="utf-8")


def random_request(rng: random.Random) -> Witness:
    args: dict[str, Any] = {
        "path": rng.choice(["/a/1", "/a/x.key", "/b/", "/a", "/b/x", "/A/1", "/a/12"]),
        "size": rng.randint(-3, 12),
    }
    if rng.random() < 0.6:
        args["tag"] = rng.choice(["x", "X", "y"])
    agent: dict[str, Any] = {"id": "u", "team": "t"}
    if rng.random() < 0.6:
        agent["level"] = rng.randint(0, 5)
    history = [{"ago_seconds": 60, "args": {}} for _ in range(rng.randint(0, 3))]
    return Witness({"agent": agent, "action": {"tool": "doc.read", "args": args}}, history)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(rule(), min_size=1, max_size=3),
    st.lists(rule(), min_size=0, max_size=2),
    st.sampled_from(["deny-overrides", "first-applicable"]),
    st.sampled_from(["deny", "allow"]),
    st.integers(0, 2**32 - 1),
)
def test_witnesses_replay_and_unreported_pairs_are_disjoint(
    rules_a: list[tuple[str, str]],
    rules_b: list[tuple[str, str]],
    combining: str,
    default: str,
    seed: int,
) -> None:
    schema = parse_schema(
        SCHEMA.replace("default_effect: deny, combining: deny-overrides",
                       f"default_effect: {default}, combining: {combining}")
    )  # fmt: skip
    policies = [parse_policy(policy_text("a", "team-a", rules_a))]
    if rules_b:
        policies.append(parse_policy(policy_text("b", "team-b", rules_b)))
    ruleset = compile_ruleset(schema, policies)
    report = analyze(ruleset, Options(timeout_ms=5000, redundant=False))
    probe = RuleProbe(ruleset)
    for f in report.findings:
        if f.witness is not None:
            replay(ruleset, f, probe)
    reported = {frozenset(f.subjects) for f in report.findings if f.kind in ("conflict", "unknown")}
    allows = [r.qualified_id for r in ruleset.rules if r.rule.effect != "deny"]
    denies = [r.qualified_id for r in ruleset.rules if r.rule.effect == "deny"]
    rng = random.Random(seed)
    samples = [random_request(rng) for _ in range(40)]
    for a in allows:
        for d in denies:
            if frozenset((a, d)) in reported:
                continue
            for w in samples:
                assert not (probe.applies(a, w) and probe.applies(d, w)), (a, d, w)
