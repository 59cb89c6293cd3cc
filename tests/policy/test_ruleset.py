from __future__ import annotations

from decimal import Decimal

import pytest

from ordinance.policy.decision import (
    DEFAULT,
    EVALUATION_ERROR,
    INVALID_REQUEST,
    MATCHED,
    UNKNOWN_TOOL,
)
from ordinance.policy.window import InMemoryWindows

from .helpers import SCHEMA, compile_texts, policy, request

TRANSFER = {"amount": "50", "currency": "EUR", "country": "DE"}

RULES = """
- id: deny-kp
  effect: deny
  when: action.args.country == "KP"
- id: approve-large
  effect: require_approval
  when: action.args.amount > 1000
- id: allow-small
  effect: allow
  when: action.args.amount <= 1000
- id: allow-all-eur
  effect: allow
  when: action.args.currency == "EUR"
"""


@pytest.fixture(scope="module")
def payments():
    return compile_texts(policy(RULES, '{actions: ["payments.*"]}'))


def test_deny_overrides_approval_overrides_allow(payments) -> None:
    d = payments.evaluate(
        request("payments.transfer", {**TRANSFER, "country": "KP", "amount": "5000"})
    )
    assert (d.effect, d.rule_ids, d.code) == ("deny", ("p/deny-kp",), MATCHED)
    d = payments.evaluate(request("payments.transfer", {**TRANSFER, "amount": "5000"}))
    assert (d.effect, d.rule_ids) == ("require_approval", ("p/approve-large",))
    d = payments.evaluate(request("payments.transfer", TRANSFER))
    assert d.effect == "allow"
    assert d.rule_ids == ("p/allow-small", "p/allow-all-eur")  # every determining rule is named


def test_decision_names_the_bundle(payments) -> None:
    assert payments.evaluate(request("payments.transfer", TRANSFER)).bundle_id == payments.bundle_id
    assert payments.bundle_id.startswith("sha256:")


def test_no_applicable_rule_falls_to_default_deny(payments) -> None:
    d = payments.evaluate(request("fs.read", {"path": "/tmp/x"}))
    assert (d.effect, d.code, d.rule_ids) == ("deny", DEFAULT, ())


def test_default_effect_is_configurable() -> None:
    rs = compile_texts(
        policy(RULES, '{actions: ["payments.*"]}'),
        schema=SCHEMA + "settings: {default_effect: allow}\n",
    )
    assert rs.evaluate(request("fs.read", {"path": "/tmp/x"})).effect == "allow"


def test_first_applicable_by_priority() -> None:
    rules = """
    - id: low-deny
      effect: deny
      priority: 1
    - id: high-allow
      effect: allow
      priority: 10
    - id: tie-allow
      effect: allow
      priority: 1
    """
    schema = SCHEMA + "settings: {combining: first-applicable}\n"
    rs = compile_texts(policy(rules, '{actions: ["fs.read"]}'), schema=schema)
    d = rs.evaluate(request("fs.read", {"path": "/a"}))
    assert (d.effect, d.rule_ids) == ("allow", ("p/high-allow",))
    rs = compile_texts(
        policy(rules.replace("priority: 10", "priority: 0"), '{actions: ["fs.read"]}'),
        schema=schema,
    )
    # equal priority: the stronger effect wins the tie
    assert rs.evaluate(request("fs.read", {"path": "/a"})).rule_ids == ("p/low-deny",)


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (request("shell.exec", {"cmd": "rm -rf /"}), UNKNOWN_TOOL),
        (request("payments.transfer", {**TRANSFER, "amount": "lots"}), INVALID_REQUEST),
        (request("payments.transfer", {**TRANSFER, "amount": True}), INVALID_REQUEST),
        (request("payments.transfer", {**TRANSFER, "amount": float("nan")}), INVALID_REQUEST),
        (request("payments.transfer", {**TRANSFER, "extra": 1}), INVALID_REQUEST),
        (request("payments.transfer", {"amount": "1", "currency": "EUR"}), INVALID_REQUEST),
        (request("payments.transfer", TRANSFER, agent={"roles": ["x"]}), INVALID_REQUEST),
        (request("payments.transfer", TRANSFER, agent="root"), INVALID_REQUEST),
        ({"action": "payments.transfer"}, INVALID_REQUEST),
        ({}, INVALID_REQUEST),
        ({"agent": {"id": "a"}, "action": {"tool": 7}}, INVALID_REQUEST),
        (request("fs.read", {"path": "/etc/\0"}), INVALID_REQUEST),
    ],
)
def test_bad_requests_are_denied_with_a_code(payments, req: dict[str, object], code: str) -> None:
    d = payments.evaluate(req)  # type: ignore[arg-type]
    assert (d.effect, d.code) == ("deny", code)
    assert d.detail


def test_not_a_mapping_is_denied(payments) -> None:
    for junk in (None, 42, "allow", ["x"]):
        assert payments.evaluate(junk).effect == "deny"  # type: ignore[arg-type]


def test_evaluation_errors_deny_and_name_the_rule() -> None:
    rules = """
    - id: memo-check
      effect: allow
      when: action.args.memo == "ok"
    - id: divide
      effect: allow
      when: 10 / (size(action.args.currency) - 3) > 1
    """
    rs = compile_texts(policy(rules, '{actions: ["payments.transfer"]}'))
    d = rs.evaluate(request("payments.transfer", TRANSFER))  # no memo; size("EUR") - 3 == 0
    assert (d.effect, d.code) == ("deny", EVALUATION_ERROR)
    assert set(d.rule_ids) == {"p/memo-check", "p/divide"}
    assert any("missing attribute 'action.args.memo'" in r for r in d.reasons)
    assert any("division by zero" in r for r in d.reasons)
    d = rs.evaluate(request("payments.transfer", {**TRANSFER, "memo": "ok", "currency": "EURO"}))
    assert d.effect == "allow"


def test_has_guards_optional_attributes() -> None:
    rules = """
    - id: memo
      effect: allow
      when: has(action.args.memo) && action.args.memo.startsWith("inv-")
    - id: resource-pii
      effect: deny
      when: has(resource.classification) && resource.classification == "pii"
    """
    rs = compile_texts(policy(rules, '{actions: ["payments.transfer"]}'))
    assert rs.evaluate(request("payments.transfer", TRANSFER)).code == DEFAULT
    assert (
        rs.evaluate(request("payments.transfer", {**TRANSFER, "memo": "inv-1"})).effect == "allow"
    )
    pii = {"kind": "account", "id": "x", "classification": "pii"}
    assert (
        rs.evaluate(
            request("payments.transfer", {**TRANSFER, "memo": "inv-1"}, resource=pii)
        ).effect
        == "deny"
    )


def test_missing_resource_is_an_error_not_a_non_match() -> None:
    rules = """
    - id: not-pii
      effect: allow
      when: resource.kind != "pii-store"
    """
    rs = compile_texts(policy(rules, '{actions: ["fs.read"]}'))
    d = rs.evaluate(request("fs.read", {"path": "/a"}))
    assert (d.effect, d.code) == ("deny", EVALUATION_ERROR)
    assert (
        rs.evaluate(request("fs.read", {"path": "/a"}, resource={"kind": "file"})).effect == "allow"
    )


def test_exact_decimals() -> None:
    rules = """
    - id: exact
      effect: allow
      when: action.args.amount + 0.2 == 0.3 && action.args.amount * 3 == 0.3
    """
    rs = compile_texts(policy(rules, '{actions: ["payments.transfer"]}'))
    assert (
        rs.evaluate(request("payments.transfer", {**TRANSFER, "amount": "0.1"})).effect == "allow"
    )
    assert rs.evaluate(request("payments.transfer", {**TRANSFER, "amount": 0.1})).effect == "allow"
    assert (
        rs.evaluate(request("payments.transfer", {**TRANSFER, "amount": Decimal("0.10")})).effect
        == "allow"
    )


def test_canonical_forms_defeat_spelling_tricks() -> None:
    rules = """
    - id: no-etc
      effect: deny
      when: action.args.path.startsWith("/etc/") || action.args.path == "/etc"
    - id: rest
      effect: allow
    """
    rs = compile_texts(policy(rules, '{actions: ["fs.read"]}'))
    for sneaky in ("/tmp/../etc/shadow", "//etc//shadow", "/./etc/shadow"):
        d = rs.evaluate(request("FS.Read", {"path": sneaky}))
        assert d.effect == "deny", sneaky
    # Spellings the kernel and other tools read differently are refused, not repaired.
    for ambiguous in ("／etc／shadow", "\\etc\\shadow", "/etc/shad\u200bow\u0301"):
        d = rs.evaluate(request("FS.Read", {"path": ambiguous}))
        assert (d.effect, d.code) == ("deny", "invalid_request"), ambiguous
    # The kernel never decodes: "%2e%2e" is a directory named so, under /tmp.
    assert rs.evaluate(request("fs.read", {"path": "/tmp/%2e%2e/etc/shadow"})).effect == "allow"
    assert rs.evaluate(request("fs.read", {"path": "/tmp/etc"})).effect == "allow"


def test_list_and_email_semantics() -> None:
    rules = """
    - id: internal-only
      effect: allow
      when: action.args.to.all(r, r.endsWith("@corp.example")) && size(action.args.to) > 0
    - id: boss
      effect: require_approval
      when: '"ceo@corp.example" in action.args.to'
    """
    rs = compile_texts(policy(rules, '{actions: ["email.send"]}'))
    assert (
        rs.evaluate(request("email.send", {"to": ["A@Corp.Example"], "subject": "s"})).effect
        == "allow"
    )
    assert (
        rs.evaluate(request("email.send", {"to": ["CEO@corp.EXAMPLE"], "subject": "s"})).effect
        == "require_approval"
    )
    assert (
        rs.evaluate(request("email.send", {"to": ["a@evil.example"], "subject": "s"})).code
        == DEFAULT
    )
    assert rs.evaluate(request("email.send", {"to": [], "subject": "s"})).code == DEFAULT


def test_targets_select_agents_and_resources() -> None:
    rules = """
    - id: r
      effect: allow
    """
    target = '{agents: {roles: [billing], ids: [special]}, actions: ["fs.*"], resources: [file]}'
    rs = compile_texts(policy(rules, target))
    file = {"kind": "file"}
    assert rs.evaluate(request("fs.read", {"path": "/a"}, resource=file)).effect == "allow"
    assert rs.evaluate(request("fs.read", {"path": "/a"})).code == DEFAULT  # no resource
    other = {"id": "x", "roles": ["support"], "team": "t"}
    assert (
        rs.evaluate(request("fs.read", {"path": "/a"}, resource=file, agent=other)).code == DEFAULT
    )
    special = {"id": "special", "team": "t"}
    assert (
        rs.evaluate(request("fs.read", {"path": "/a"}, resource=file, agent=special)).effect
        == "allow"
    )


def test_window_functions_use_injected_state() -> None:
    rules = """
    - id: rate
      effect: deny
      when: window.count("1h") >= 3 || window.sum(action.args.amount, "24h") + action.args.amount > 100
    - id: ok
      effect: allow
    """
    rs = compile_texts(policy(rules, '{actions: ["payments.transfer"]}'))
    now = [10_000.0]
    windows = InMemoryWindows(clock=lambda: now[0])
    req = request("payments.transfer", {**TRANSFER, "amount": "30"})
    effects = []
    for _ in range(4):
        d = rs.evaluate(req, windows)
        effects.append(d.effect)
        if d.allowed:
            windows.record("a1", "payments.transfer", {"amount": Decimal(30)}, now[0])
        now[0] += 60
    assert effects == ["allow", "allow", "allow", "deny"]
    # no state supplied: the window cannot be answered, so the rule errs and denies
    assert rs.evaluate(req).code == EVALUATION_ERROR


def test_many_rules_are_indexed_by_tool() -> None:
    tools = "\n".join(f"  t{i}.op: {{args: {{n: int}}}}" for i in range(100))
    schema = f"tools:\n{tools}\n"
    policies = []
    for i in range(100):
        rules = "\n".join(
            f"- id: r{j}\n  effect: {'deny' if j % 3 == 0 else 'allow'}\n  when: action.args.n == {j}"
            for j in range(10)
        )
        policies.append(policy(rules, f'{{actions: ["t{i}.*"]}}', policy_id=f"p{i}"))
    rs = compile_texts(*policies, schema=schema)
    assert len(rs.rules) == 1000
    # each tool's program holds only its own policy's ten rules
    assert all(src.source.count(".append(") == 10 for src in rs.programs.values())
    d = rs.evaluate({"agent": {"id": "a"}, "action": {"tool": "t42.op", "args": {"n": 3}}})
    assert (d.effect, d.rule_ids) == ("deny", ("p42/r3",))
