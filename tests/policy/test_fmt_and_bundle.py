"""Formatting laws (parse . fmt . parse == parse; fmt idempotent) and bundle-id stability."""

from __future__ import annotations

import io
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from ordinance.policy.cel import to_source
from ordinance.policy.document import parse_policy
from ordinance.policy.fmt import format_policy
from ordinance.policy.loader import load_policy_set, load_ruleset
from ordinance.policy.ruleset import bundle_id_of
from ordinance.policy.yamlsrc import SourceFile, plain

from .strategies import expressions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"

rule_ids = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
effects = st.sampled_from(["allow", "deny", "require_approval"])
# YAML cannot carry control characters or surrogates in plain text fields
texts = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")), max_size=20
)


@st.composite
def policy_documents(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(rule_ids, min_size=1, max_size=4, unique=True))
    rules = []
    for rid in ids:
        rule: dict[str, Any] = {"id": rid, "effect": draw(effects)}
        if draw(st.booleans()):
            rule["when"] = to_source(draw(expressions))
        if draw(st.booleans()):
            rule["reason"] = draw(texts)
        if draw(st.booleans()):
            rule["priority"] = draw(st.integers(-5, 5))
        if rule["effect"] == "require_approval" and draw(st.booleans()):
            roles = draw(st.lists(st.sampled_from(["admin", "approver:finance"]), min_size=1))
            rule["approvers"] = {"roles": roles}
            rule["approvals"] = draw(st.integers(1, 10))
        rules.append(rule)
    doc: dict[str, Any] = {
        "rules": rules,
        "owner": draw(st.sampled_from(["risk", "sec-ops", "team: a"])),
        "policy": draw(rule_ids),
        "description": draw(texts),
    }
    if draw(st.booleans()):
        doc["target"] = {"actions": ["payments.*"], "agents": {"roles": ["billing"]}}
    if draw(st.booleans()):
        doc["assertions"] = [{"when": to_source(draw(expressions)), "never": "allow", "name": "n"}]
    return doc


def _flow(value: Any) -> str:
    """JSON-like flow YAML, the most different layout there is, with exact decimals."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(str(k))}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | Decimal):
        return str(value)
    return orjson.dumps(value).decode()


def _dump(doc: dict[str, Any], flow: bool) -> str:
    if flow:
        return _flow(doc)
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.representer.add_representer(
        Decimal, lambda r, d: r.represent_scalar("tag:yaml.org,2002:float", str(d))
    )
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_documents(), st.booleans())
def test_fmt_preserves_meaning_and_is_idempotent(doc: dict[str, Any], flow: bool) -> None:
    text = _dump(doc, flow)
    original = parse_policy(text)
    formatted = format_policy(text)
    assert parse_policy(formatted) == original
    assert format_policy(formatted) == formatted


def test_fmt_quotes_a_string_that_starts_like_an_indicator() -> None:
    # Found by the property test: "?x" written plain in a flow mapping did not parse back.
    text = (
        "{policy: p, owner: o, description: d, rules: [{id: r, effect: allow,"
        ' reason: "?\U00023728x"}, {id: s, effect: deny, reason: "-y"}]}\n'
    )
    formatted = format_policy(text)
    assert parse_policy(formatted) == parse_policy(text)
    assert format_policy(formatted) == formatted


def test_fmt_keeps_comments() -> None:
    text = "# why this policy exists\npolicy: p\nrules:\n  - effect: allow  # the only rule\n    id: r\n    when: 'a==1'\nowner: o\ndescription: d\n"
    out = format_policy(text)
    assert "# why this policy exists" in out and "# the only rule" in out
    assert out.index("policy:") < out.index("owner:") < out.index("rules:")
    assert "when: a == 1" in out


def test_examples_are_formatted() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name != "schema.yaml":
            text = path.read_text()
            assert format_policy(text, str(path)) == text, f"run `ordinance fmt {path}`"


@settings(max_examples=25, deadline=None)
@given(st.permutations(range(20)), st.booleans())
def test_bundle_id_ignores_file_order_and_layout(order: list[int], flow: bool) -> None:
    schema, policies = load_policy_set(EXAMPLES)
    expected = bundle_id_of(schema, policies)
    shuffled = [policies[i] for i in order if i < len(policies)]
    assert bundle_id_of(schema, shuffled) == expected
    # re-spell every file in a different YAML layout: same content, same id
    respelled = []
    for p in policies:
        source = SourceFile(Path(p.file).read_text(), p.file)
        node = source.compose()
        assert node is not None
        respelled.append(parse_policy(_dump(plain(node), flow), p.file))
    assert bundle_id_of(schema, respelled) == expected


def test_bundle_id_changes_with_content(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "p")
    before = load_ruleset(tmp_path / "p").bundle_id
    target = tmp_path / "p" / "payments.yaml"
    target.write_text(target.read_text().replace("amount > 10000", "amount > 10001", 1))
    assert load_ruleset(tmp_path / "p").bundle_id != before


_APPROVAL_POLICY = """\
policy: p
owner: o
description: d
target: {{actions: [payments.transfer]}}
rules:
  - id: r
    effect: require_approval
    when: action.args.amount > 10{extra}
"""


def _bundle_id(tmp_path: Path, extra: str) -> str:
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "zz-approval.yaml").write_text(_APPROVAL_POLICY.format(extra=extra))
    return load_ruleset(tmp_path).bundle_id


def test_approval_requirement_is_part_of_the_bundle_id(tmp_path: Path) -> None:
    plain_id = _bundle_id(tmp_path / "a", "")
    # `approvals: 1` is the default: the same content, the same bundle
    assert _bundle_id(tmp_path / "b", "\n    approvals: 1") == plain_id
    two = _bundle_id(tmp_path / "c", "\n    approvals: 2")
    roles = _bundle_id(tmp_path / "d", "\n    approvers: {roles: [admin]}")
    assert len({plain_id, two, roles}) == 3
    # role order is not content
    assert _bundle_id(tmp_path / "e", "\n    approvers: {roles: [b, a]}") == _bundle_id(
        tmp_path / "f", "\n    approvers: {roles: [a, b, a]}"
    )


def test_fmt_puts_approval_keys_after_when() -> None:
    text = (
        "policy: p\nowner: o\ndescription: d\nrules:\n  - approvals: 2\n"
        "    approvers: {roles: [approver:finance]}\n    id: r\n    effect: require_approval\n"
        "    when: 'true'\n"
    )
    out = format_policy(text)
    assert out.index("when:") < out.index("approvers:") < out.index("approvals:")
    assert parse_policy(out) == parse_policy(text)
    assert parse_policy(out).rules[0].approval.approvals == 2
