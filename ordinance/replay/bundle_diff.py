"""``policy diff A B``: what changed between two bundles, per policy and per rule, as a
reviewer reads it (the Z3 ``ordinance diff`` says which *requests* change; this says which
*text*). Compares the canonical forms the bundle ids hash, so layout and file names never
show up as changes.
"""

from __future__ import annotations

import json
from typing import Any

from ordinance.policy.ruleset import Ruleset

_POLICY_FIELDS = ("owner", "description", "justification", "impact", "target")
_RULE_FIELDS = ("effect", "when", "reason", "priority", "actions", "obligations")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _fields(
    old: dict[str, Any], new: dict[str, Any], names: tuple[str, ...]
) -> list[dict[str, Any]]:
    return [
        {"field": name, "old": old.get(name), "new": new.get(name)}
        for name in names
        if old.get(name) != new.get(name)
    ]


def _keyed(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {str(item[key]): item for item in items}


def _rules(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    a, b = _keyed(old, "id"), _keyed(new, "id")
    out: list[dict[str, Any]] = []
    for rule_id in sorted(a.keys() | b.keys()):
        if rule_id not in a:
            out.append({"rule": rule_id, "change": "added", "new": b[rule_id]})
        elif rule_id not in b:
            out.append({"rule": rule_id, "change": "removed", "old": a[rule_id]})
        elif fields := _fields(a[rule_id], b[rule_id], _RULE_FIELDS):
            out.append({"rule": rule_id, "change": "changed", "fields": fields})
    return out


def _named(old: list[dict[str, Any]], new: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    a, b = _keyed(old, "name"), _keyed(new, "name")
    out: list[dict[str, Any]] = []
    for name in sorted(a.keys() | b.keys()):
        if name not in a:
            out.append({what: name, "change": "added"})
        elif name not in b:
            out.append({what: name, "change": "removed"})
        elif a[name] != b[name]:
            out.append({what: name, "change": "changed"})
    return out


def diff_bundles(old: Ruleset, new: Ruleset) -> dict[str, Any]:
    a = {p.id: p.canonical() for p in old.policies}
    b = {p.id: p.canonical() for p in new.policies}
    policies: list[dict[str, Any]] = []
    for policy_id in sorted(a.keys() | b.keys()):
        if policy_id not in a:
            policies.append(
                {"policy": policy_id, "change": "added", "rules": _rules([], b[policy_id]["rules"])}
            )
            continue
        if policy_id not in b:
            policies.append(
                {
                    "policy": policy_id,
                    "change": "removed",
                    "rules": _rules(a[policy_id]["rules"], []),
                }
            )
            continue
        entry = {
            "policy": policy_id,
            "change": "changed",
            "fields": _fields(a[policy_id], b[policy_id], _POLICY_FIELDS),
            "rules": _rules(a[policy_id]["rules"], b[policy_id]["rules"]),
            "assertions": _named(
                a[policy_id]["assertions"], b[policy_id]["assertions"], "assertion"
            ),
            "tests": _named(a[policy_id]["tests"], b[policy_id]["tests"], "test"),
        }
        if entry["fields"] or entry["rules"] or entry["assertions"] or entry["tests"]:
            policies.append(entry)
    schema_old, schema_new = old.schema.canonical(), new.schema.canonical()
    schema = [
        {"section": section, "old": schema_old.get(section), "new": schema_new.get(section)}
        for section in sorted(schema_old.keys() | schema_new.keys())
        if schema_old.get(section) != schema_new.get(section)
    ]
    return {
        "old": old.bundle_id,
        "new": new.bundle_id,
        "same": old.bundle_id == new.bundle_id,
        "schema": schema,
        "policies": policies,
    }


def render_diff(diff: dict[str, Any]) -> list[str]:
    """The diff as text lines: ``-`` old, ``+`` new, indented by policy and rule."""
    lines = [f"--- {diff['old']}", f"+++ {diff['new']}"]
    if diff["same"]:
        return [*lines, "same content (identical bundle ids)"]
    for section in diff["schema"]:
        lines.append(f"schema {section['section']} changed")
        lines.append(f"  - {_text(section['old'])}")
        lines.append(f"  + {_text(section['new'])}")
    for policy in diff["policies"]:
        mark = {"added": "+ ", "removed": "- ", "changed": ""}[policy["change"]]
        lines.append(f"{mark}policy {policy['policy']} ({policy['change']})")
        for field in policy.get("fields", []):
            lines.append(f"  - {field['field']}: {_text(field['old'])}")
            lines.append(f"  + {field['field']}: {_text(field['new'])}")
        for rule in policy["rules"]:
            if rule["change"] == "changed":
                lines.append(f"  rule {rule['rule']} (changed)")
                for field in rule["fields"]:
                    lines.append(f"    - {field['field']}: {_text(field['old'])}")
                    lines.append(f"    + {field['field']}: {_text(field['new'])}")
            else:
                body = rule.get("new") or rule.get("old") or {}
                sign = "+" if rule["change"] == "added" else "-"
                lines.append(
                    f"  {sign} rule {rule['rule']}: {body.get('effect')} when {body.get('when')}"
                )
        for kind in ("assertions", "tests"):
            for item in policy.get(kind, []):
                name = item.get("assertion") or item.get("test")
                sign = {"added": "+", "removed": "-", "changed": "~"}[item["change"]]
                lines.append(f"  {sign} {kind[:-1]} {name} ({item['change']})")
    return lines
