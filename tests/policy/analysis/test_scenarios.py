"""The hand-made conflict scenarios: each file states the exact findings expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordinance.policy.analysis import Options, analyze
from ordinance.policy.analysis.checks import RuleProbe
from ordinance.policy.testing import run_tests

from .helpers import SCENARIOS, key, load_scenario, replay

FILES = sorted(p for p in SCENARIOS.glob("*.yaml") if p.name != "schema.yaml")


def test_corpus_size() -> None:
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path) -> None:
    doc, ruleset = load_scenario(path)
    report = analyze(ruleset, Options(timeout_ms=10_000))
    got = {key(f) for f in report.findings if f.kind != "inexact"}
    want = {(e["kind"], e["tool"], tuple(e["subjects"])) for e in doc["expect"]}
    assert got == want, f"\nunexpected: {got - want}\nmissing: {want - got}"
    assert sorted(report.proven) == sorted(doc.get("proven", []))
    probe = RuleProbe(ruleset)
    by_key = {key(f): f for f in report.findings}
    for e in doc["expect"]:
        f = by_key[(e["kind"], e["tool"], tuple(e["subjects"]))]
        if "cross_owner" in e:
            assert f.details["cross_owner"] is e["cross_owner"]
        if f.witness is not None:
            replay(ruleset, f, probe)


def test_cross_team_assertion_refuted_while_each_policys_tests_pass() -> None:
    """The issue's acceptance case: each policy's own tests pass; only the combination
    breaks team a's assertion, and the analysis shows how with a witness."""
    path = SCENARIOS / "10-assert-refuted-cross-team.yaml"
    _, ruleset = load_scenario(path)
    from ordinance.policy.ruleset import compile_ruleset

    for policy in ruleset.policies:
        alone = compile_ruleset(ruleset.schema, [policy])
        results = run_tests(alone)
        assert results and all(r.passed for r in results)
    report = analyze(ruleset)
    refuted = report.by_kind("assertion")
    assert [f.subjects for f in refuted] == [("a/cap",)]
    w = refuted[0].witness
    assert w is not None
    assert ruleset.evaluate(w.request, w.windows()).effect == "allow"
    assert w.request["action"]["args"]["size"] > 100
