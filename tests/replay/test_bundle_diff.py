"""policy diff: per policy and per rule, on canonical forms (layout never shows)."""

from __future__ import annotations

from ordinance.replay.bundle_diff import diff_bundles, render_diff
from tests.policy.helpers import SCHEMA, compile_texts, policy

RULES = """
- id: small
  effect: allow
  when: action.args.amount <= 100
- id: sanctioned
  effect: deny
  when: action.args.country in ["KP"]
"""


def test_changed_added_and_removed_rules_and_policies() -> None:
    old = compile_texts(
        policy(RULES, "{actions: [payments.transfer]}"),
        policy("- id: r\n  effect: allow\n  when: 'true'\n", "{actions: [fs.read]}", "files"),
    )
    new_rules = (
        RULES.replace('["KP"]', '["KP", "RU"]')
        .replace("- id: small", "- id: tiny")
        .replace("<= 100", "<= 10")
    )
    new = compile_texts(
        policy(
            new_rules + '- id: budget\n  effect: deny\n  when: window.count("1h") > 5\n',
            "{actions: [payments.transfer]}",
        ),
        policy("- id: w\n  effect: deny\n  when: 'true'\n", "{actions: [http.fetch]}", "web"),
    )
    diff = diff_bundles(old, new)
    assert not diff["same"] and diff["schema"] == []
    by_policy = {p["policy"]: p for p in diff["policies"]}
    assert by_policy["files"]["change"] == "removed" and by_policy["web"]["change"] == "added"
    rules = {r["rule"]: r for r in by_policy["p"]["rules"]}
    assert rules["small"]["change"] == "removed" and rules["tiny"]["change"] == "added"
    assert rules["budget"]["change"] == "added"
    assert rules["sanctioned"]["fields"] == [
        {
            "field": "when",
            "old": 'action.args.country in ["KP"]',
            "new": 'action.args.country in ["KP", "RU"]',
        }
    ]
    text = "\n".join(render_diff(diff))
    assert '    - when: action.args.country in ["KP"]' in text
    assert '    + when: action.args.country in ["KP", "RU"]' in text
    assert '  + rule budget: deny when window.count("1h") > 5' in text
    assert "- policy files (removed)" in text and "+ policy web (added)" in text


def test_layout_is_not_a_change_and_schema_changes_are() -> None:
    pay = "{actions: [payments.transfer]}"
    one = compile_texts(policy(RULES, pay))
    relaid = compile_texts(
        policy(
            RULES.replace(
                "  effect: allow\n  when: action.args.amount <= 100",
                "  when:   action.args.amount <= 100\n  effect: allow",
            ),
            pay,
        )
    )
    assert diff_bundles(one, relaid)["same"]
    assert render_diff(diff_bundles(one, relaid))[-1] == "same content (identical bundle ids)"
    wider = compile_texts(
        policy(RULES, pay),
        schema=SCHEMA.replace(
            "context: {ticket?: string}", "context: {ticket?: string, urgent?: bool}"
        ),
    )
    diff = diff_bundles(one, wider)
    assert [s["section"] for s in diff["schema"]] == ["context"] and diff["policies"] == []
