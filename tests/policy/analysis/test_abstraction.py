"""The string abstraction is exact: for random small policy sets, the conflicts, gaps and
live rules the analysis reports (with strings as classes) are exactly those found by
brute force — the real evaluator run on every combination of one representative per
class, every relevant integer and every presence of the optional fields — and every
witness replays.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordinance.policy.analysis import Options, analyze
from ordinance.policy.analysis.abstract import Abstraction
from ordinance.policy.analysis.checks import RuleProbe, encode_assertions
from ordinance.policy.analysis.combine import build_tool_model
from ordinance.policy.analysis.space import Witness
from ordinance.policy.document import parse_policy
from ordinance.policy.ruleset import Ruleset, compile_ruleset
from ordinance.policy.schema import parse_schema

from .helpers import SCENARIOS, replay
from .test_soundness import policy_text

STRING_ATOMS = [
    st.sampled_from(["/a/", "/a", "/b/"]).map(lambda p: f'action.args.path.startsWith("{p}")'),
    st.sampled_from([".key", "x"]).map(lambda s: f'action.args.path.endsWith("{s}")'),
    st.sampled_from(["/a/b", "/b"]).map(lambda p: f'action.args.path == "{p}"'),
    st.sampled_from(["x", "y"]).map(lambda t: f'action.args.tag == "{t}"'),
    st.just('action.args.tag in ["x", "z"]'),
    st.just('action.args.tag.contains("q")'),
    st.just('action.args.tag.lower() == "x"'),
    st.just('action.args.path.matches("^/a/[0-9]+$")'),
    st.just('action.args.path.matches("\\\\.key$")'),
    st.just("has(action.args.tag)"),
    st.integers(0, 3).map(lambda n: f"action.args.size > {n}"),
    st.integers(0, 2).map(lambda n: f"agent.level > {n}"),
]
SIZES = range(-1, 5)
LEVELS: list[int | None] = [None, 0, 1, 2, 3]


def conditions() -> st.SearchStrategy[str]:
    return st.recursive(
        st.one_of(*STRING_ATOMS),
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"({a}) && ({b})", inner, inner),
            st.builds(lambda a, b: f"({a}) || ({b})", inner, inner),
            inner.map(lambda a: f"!({a})"),
        ),
        max_leaves=3,
    )


def classes(ruleset: Ruleset) -> dict[str, list[str]]:
    """The representatives of every class of the tool's abstracted strings."""
    model = build_tool_model(ruleset, "doc.read")
    formulas = [f for r in model.rules for f in (r.applies, r.errs)]
    formulas += [e.holds for e in encode_assertions(model.space, ruleset)]
    formulas += [*model.space.base, *model.space.window_constraints()]
    a = Abstraction(model.space, formulas, 5_000_000)
    assert {"action.path", "action.tag"} <= {s.label for s in a.scalars.values()}, a.exact
    return {s.label: [c.rep for c in s.cells] for s in a.scalars.values()}


def requests(reps: dict[str, list[str]]) -> list[Witness]:
    out = []
    tags: list[str | None] = [None, *reps["action.tag"]]
    for path, tag, size, level in itertools.product(reps["action.path"], tags, SIZES, LEVELS):
        args: dict[str, Any] = {"path": path, "size": size}
        if tag is not None:
            args["tag"] = tag
        agent: dict[str, Any] = {"id": "u", "team": "t"}
        if level is not None:
            agent["level"] = level
        out.append(Witness({"agent": agent, "action": {"tool": "doc.read", "args": args}}, []))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.tuples(st.sampled_from(["allow", "deny", "require_approval"]), conditions()),
             min_size=1, max_size=3),
    st.lists(st.tuples(st.sampled_from(["allow", "deny"]), conditions()), max_size=2),
)  # fmt: skip
def test_abstract_verdicts_equal_brute_force_over_the_classes(
    rules_a: list[tuple[str, str]], rules_b: list[tuple[str, str]]
) -> None:
    schema = parse_schema((SCENARIOS / "schema.yaml").read_text(encoding="utf-8"))
    policies = [parse_policy(policy_text("a", "team-a", rules_a))]
    if rules_b:
        policies.append(parse_policy(policy_text("b", "team-b", rules_b)))
    ruleset = compile_ruleset(schema, policies)
    report = analyze(ruleset, Options(redundant=False))
    assert not report.by_kind("unknown"), [f.message for f in report.by_kind("unknown")]
    probe = RuleProbe(ruleset)
    for f in report.findings:
        if f.witness is not None:
            replay(ruleset, f, probe)

    samples = requests(classes(ruleset))
    ids = [r.qualified_id for r in ruleset.rules]
    applies = {rid: [probe.applies(rid, w) for w in samples] for rid in ids}
    decisions = [ruleset.evaluate(w.request, w.windows()) for w in samples]
    allows = [r.qualified_id for r in ruleset.rules if r.rule.effect != "deny"]
    denies = [r.qualified_id for r in ruleset.rules if r.rule.effect == "deny"]
    brute_conflicts = {
        frozenset((a, d))
        for a in allows
        for d in denies
        if any(x and y for x, y in zip(applies[a], applies[d], strict=True))
    }
    reported = {frozenset(f.subjects) for f in report.by_kind("conflict")}
    assert reported == brute_conflicts
    brute_gap = any(d.code == "default" for d in decisions)
    assert bool(report.by_kind("gap")) == brute_gap
    live = {rid for d in decisions for rid in d.rule_ids}
    dead = {f.subjects[0] for f in report.by_kind("dead-rule")}
    assert dead == set(ids) - live
