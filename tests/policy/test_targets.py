"""Targets are sound: canonicalised like the request field they meet, never empty, and
every rule is type-checked whether or not its target can apply (issue 11, Build 5)."""

from __future__ import annotations

import pytest

from ordinance.policy.errors import PolicyError, PolicyErrors

from .helpers import compile_texts, policy, request

_DENY_ALL = "- {id: r, effect: deny}\n"


def _only_error(*texts: str) -> PolicyError:
    with pytest.raises(PolicyErrors) as info:
        compile_texts(*texts)
    assert len(info.value.errors) == 1, info.value
    return info.value.errors[0]


@pytest.mark.parametrize(
    ("target", "key"),
    [
        ("{agents: {roles: []}}", "roles"),
        ("{agents: {ids: []}}", "ids"),
        ("{actions: []}", "actions"),
        ("{resources: []}", "resources"),
    ],
)
def test_an_empty_target_list_is_a_located_compile_error(target: str, key: str) -> None:
    # `roles: []` on an allow rule used to restrict nothing: it allowed every agent.
    err = _only_error(policy("- {id: r, effect: allow}\n", target))
    assert f"`{key}: []`" in err.message
    assert err.location.line == 4 and err.location.column > 1
    assert err.hint and f"remove `{key}`" in err.hint
    assert "^" in err.render()


def test_an_empty_rule_actions_list_is_refused() -> None:
    err = _only_error(policy("- {id: r, effect: allow, actions: []}\n"))
    assert "`actions: []`" in err.message


@pytest.mark.parametrize(
    "target", ["{agents: {}}", "{agents: {roles: [billing, '']}}", "{agents: {roles: ~}}"]
)
def test_targets_that_name_nobody_are_refused(target: str) -> None:
    _only_error(policy(_DENY_ALL, target))


def test_a_scalar_target_is_one_entry() -> None:
    rs = compile_texts(policy(_DENY_ALL, "{agents: {roles: billing}}"))
    assert rs.evaluate(request("fs.read", {"path": "/x"})).rule_ids == ("p/r",)


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("ｄａｔａｂａｓｅ", "database"),  # full-width kind in the policy, ASCII request
        ("database", "ｄａｔａｂａｓｅ"),
        ("ﬁle", "file"),  # the ligature NFKC expands
    ],
)
def test_resource_kinds_meet_the_request_in_one_canonical_form(written: str, sent: str) -> None:
    # A deny rule on a kind spelled with a compatibility character used to never match.
    rs = compile_texts(policy(_DENY_ALL, f"{{resources: [{written}]}}"))
    req = request("fs.read", {"path": "/x"}, resource={"kind": sent})
    decision = rs.evaluate(req)
    assert (decision.effect, decision.rule_ids) == ("deny", ("p/r",))


def test_roles_and_ids_meet_the_request_in_one_canonical_form() -> None:
    rs = compile_texts(policy(_DENY_ALL, "{agents: {roles: [ｂｉｌｌｉｎｇ], ids: [ａ7]}}"))
    by_role = request(
        "fs.read", {"path": "/x"}, agent={"id": "z", "roles": ["billing"], "team": "t"}
    )
    by_id = request("fs.read", {"path": "/x"}, agent={"id": "a7", "team": "t"})
    assert rs.evaluate(by_role).rule_ids == ("p/r",)
    assert rs.evaluate(by_id).rule_ids == ("p/r",)
    assert rs.policies[0].target.roles == ("billing",)
    assert rs.policies[0].target.agent_ids == ("a7",)


def test_a_rule_that_can_never_apply_is_still_type_checked() -> None:
    # The rule names fs.read; its policy targets payments only: it is dead, not unchecked.
    text = policy(
        """\
        - id: dead
          effect: allow
          actions: [fs.read]
          when: 'action.args.nonexistent > "x" + 5'
        """,
        "{actions: [payments.transfer]}",
    )
    err = _only_error(text)
    assert err.kind == "type"
    assert "action.args.nonexistent" in err.message
    assert (err.location.line, err.location.column) == (9, 12)


def test_a_dead_rule_that_type_checks_compiles_and_the_analysis_reports_it() -> None:
    from ordinance.policy.analysis.run import analyze

    text = policy(
        """\
        - {id: dead, effect: allow, actions: [fs.read], when: 'action.args.path == "/x"'}
        - {id: live, effect: deny}
        """,
        "{actions: [payments.transfer]}",
    )
    rs = compile_texts(text)
    dead = [f for f in analyze(rs).findings if f.kind == "dead-rule"]
    assert [f.subjects for f in dead] == [("p/dead",)]
