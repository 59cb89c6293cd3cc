"""The example policy set in examples/policies/ compiles and all its tests pass.

Every policy's tests run against the *combined* set, as ``ordinance test`` runs them.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ordinance.policy.loader import load_ruleset
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.testing import run_tests

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "policies"


@functools.cache
def example_set() -> Ruleset:
    return load_ruleset(EXAMPLES)


def test_example_set_compiles() -> None:
    rs = example_set()
    assert rs.bundle_id.startswith("sha256:")
    assert rs.rules


def test_example_set_has_at_least_six_policies_from_different_owners() -> None:
    policies = example_set().policies
    assert len(policies) >= 6
    assert len({p.owner for p in policies}) >= 6


def test_every_example_policy_is_documented_asserted_and_tested() -> None:
    for p in example_set().policies:
        assert p.description.strip(), p.id
        assert p.justification.get("regulation"), p.id
        assert p.justification.get("risk"), p.id
        assert p.assertions, f"{p.id} has no assertion"
        assert len(p.tests) >= 4, f"{p.id} has fewer than 4 tests"


def test_all_example_tests_pass_against_the_combined_set() -> None:
    results = run_tests(example_set())
    assert len(results) >= 6 * 4
    failures = [f"{r.location} {r.policy}: {r.name}: {r.problem}" for r in results if not r.passed]
    assert not failures, "\n".join(failures)


def test_example_tests_cover_every_effect_and_cross_policy_interactions() -> None:
    results = run_tests(example_set())
    assert {r.expected for r in results} == {"allow", "deny", "require_approval"}
    # A test that expects a rule of *another* policy shows how the teams' policies combine.
    cross = {
        r.policy
        for r in results
        if r.expected_rules and any(not rid.startswith(r.policy + "/") for rid in r.expected_rules)
    }
    assert len(cross) >= 5, cross
