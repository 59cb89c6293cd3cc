"""``ordinance fmt``: one canonical layout for policy files, comments kept.

Canonical means: top-level, rule, assertion and test keys in a fixed order, every
condition printed by :func:`ordinance.policy.cel.to_source`, two-space indentation.
Formatting never changes meaning: ``parse(fmt(text)) == parse(text)`` (property-tested),
and ``fmt`` is idempotent.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter

from ordinance.policy.cel import parse_condition, to_source
from ordinance.policy.document import parse_policy

POLICY_ORDER = (
    "policy", "owner", "description", "justification", "impact", "target", "rules",
    "assertions", "tests",
)  # fmt: skip
TARGET_ORDER = ("agents", "actions", "resources")
RULE_ORDER = (
    "id", "effect", "actions", "when", "approvers", "approvals", "reason", "priority",
    "obligations",
)  # fmt: skip
ASSERTION_ORDER = ("name", "never", "always", "when")
TEST_ORDER = ("name", "request", "history", "expect", "rules", "approvers", "approvals")
REQUEST_ORDER = ("agent", "action", "resource", "context")


def _reorder(mapping: Any, order: tuple[str, ...]) -> None:
    if not isinstance(mapping, CommentedMap):
        return
    for key in order:
        if key in mapping:
            mapping.move_to_end(key)
    # Keys we do not know stay after the known ones, in their original order; parsing
    # already rejected unknown keys where the schema is closed.
    for key in [k for k in mapping if k not in order]:
        mapping.move_to_end(key)


def _canonical_when(item: Any) -> None:
    if isinstance(item, CommentedMap) and "when" in item:
        raw = item["when"]
        text = str(raw).lower() if isinstance(raw, bool) else str(raw)
        item["when"] = to_source(parse_condition(text))


# ruamel's emitter writes a string such as "?x" plain inside a flow mapping, where its own
# parser then reads "?" as a complex-key indicator: such strings (keys too) are quoted.
_INDICATOR_STARTS = ("?", ":", "-")


class _Representer(RoundTripRepresenter):
    """Round-trip representation with the quoting rule below, for fmt only."""


def _represent_str(representer: RoundTripRepresenter, data: str) -> Any:
    style = '"' if data.startswith(_INDICATOR_STARTS) else None
    return representer.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Representer.add_representer(str, _represent_str)


def _items(data: CommentedMap, key: str) -> list[Any]:
    value = data.get(key)
    return list(value) if isinstance(value, CommentedSeq) else []


def _yaml() -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.Representer = _Representer
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold long flow mappings mid-value
    yaml.preserve_quotes = False
    return yaml


def format_policy(text: str, filename: str = "<policy>") -> str:
    """Return the canonical form of one policy file (raises PolicyErrors if it is invalid)."""
    parse_policy(text, filename)  # refuse to reformat what does not parse
    yaml = _yaml()
    data = yaml.load(text)
    _reorder(data, POLICY_ORDER)
    _reorder(data.get("target"), TARGET_ORDER)
    for rule in _items(data, "rules"):
        _reorder(rule, RULE_ORDER)
        _canonical_when(rule)
    for assertion in _items(data, "assertions"):
        _reorder(assertion, ASSERTION_ORDER)
        _canonical_when(assertion)
    for test in _items(data, "tests"):
        _reorder(test, TEST_ORDER)
        _reorder(test.get("request"), REQUEST_ORDER)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()
