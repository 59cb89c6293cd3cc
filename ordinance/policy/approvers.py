"""Who may approve a ``require_approval`` rule, and how many distinct approvers it needs.

A rule states it with two optional keys (docs/policy-language.md, "Approval
requirements")::

    effect: require_approval
    approvers: {roles: [approver:finance]}   # an approver holds one of these registry roles
    approvals: 2                               # distinct approvers needed (default 1)

The roles are registry roles (docs/identity.md), compared exactly as the registry stores
them; the enforcer checks each approval's verified signer against them.

When several ``require_approval`` rules determine one decision (deny-overrides), every one
of their requirements must hold, and a decision carries one role set and one count. The
combination is the strict one: the count is the largest, and the roles are the
*intersection* of the rules' role sets (a rule naming no roles accepts any approver and
restricts nothing). Every approver then holds a role every rule accepts, and there are at
least as many as any rule needs, so each rule's requirement is met. An empty intersection
means no single role satisfies them all: the decision is a deny with code
``approval_conflict`` (fail closed), never "anyone may approve".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ordinance.policy.decision import Effect
from ordinance.policy.errors import SyntaxProblem
from ordinance.policy.yamlsrc import Mapping, ScalarNode, SequenceNode, scalar_value

MAX_APPROVALS = 10  # distinct approvers one rule may ask for
MAX_APPROVER_ROLES = 64
# A registry role as `identity add --roles a,b` can write it: no space, no comma.
_ROLE_RE = re.compile(r"[^\s,]{1,128}")
APPROVAL_KEYS = ("approvers", "approvals")


@dataclass(frozen=True, slots=True)
class Requirement:
    """What one rule (or a combination of rules) asks of its approvers."""

    roles: tuple[str, ...] = ()  # any one of these; empty: any principal but the agent
    approvals: int = 1


#: The requirement of a rule that states none: one approval, by any approver.
NO_REQUIREMENT = Requirement()


def parse_requirement(m: Mapping, effect: str) -> Requirement:
    """The rule's ``approvers`` / ``approvals`` (a `SyntaxProblem` at the offending node)."""
    present = [key for key in APPROVAL_KEYS if m.has(key)]
    if present and effect != Effect.REQUIRE_APPROVAL:
        raise SyntaxProblem(
            f"`{present[0]}` is only meaningful on a require_approval rule, not on `{effect}`",
            m.key_location(present[0]),
            "remove it, or make the rule's effect require_approval",
        )
    return Requirement(_roles(m), _count(m))


def parse_expected(m: Mapping, expect: str) -> tuple[tuple[str, ...] | None, int | None]:
    """A policy test's expected requirement: ``approvers: [roles]`` (compared as a set,
    ``[]`` for "anyone") and ``approvals: N``, each None when not stated."""
    present = [key for key in APPROVAL_KEYS if m.has(key)]
    if present and expect != Effect.REQUIRE_APPROVAL:
        raise SyntaxProblem(
            f"`{present[0]}` in a test is only meaningful when it expects require_approval",
            m.key_location(present[0]),
        )
    roles = None
    if m.has("approvers"):
        node = m.require("approvers")
        if not isinstance(node, SequenceNode) or not all(
            isinstance(scalar_value(n) if isinstance(n, ScalarNode) else None, str)
            for n in node.value
        ):
            raise SyntaxProblem(
                "`approvers` in a test is the list of roles the decision names", m.loc(node)
            )
        roles = tuple(str(n.value) for n in node.value)
    return roles, (_count(m) if m.has("approvals") else None)


def _count(m: Mapping) -> int:
    node = m.node_of("approvals")
    if node is None:
        return 1
    value = scalar_value(node) if isinstance(node, ScalarNode) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SyntaxProblem("`approvals` must be an integer", m.loc(node))
    if not 1 <= value <= MAX_APPROVALS:
        raise SyntaxProblem(
            f"`approvals` must be between 1 and {MAX_APPROVALS}, not {value}", m.loc(node)
        )
    return value


def _roles(m: Mapping) -> tuple[str, ...]:
    node = m.node_of("approvers")
    if node is None:
        return ()
    a = Mapping(node, m.source, "approvers")
    a.allow_only({"roles"})
    roles = a.require("roles")
    items = [roles] if isinstance(roles, ScalarNode) else None  # `roles: approver` is one role
    if isinstance(roles, SequenceNode):
        items = list(roles.value)
    if items is None:
        raise SyntaxProblem("`roles` in approvers must be a list of strings", a.loc(roles))
    if not items:
        raise SyntaxProblem(
            "`roles: []` in approvers is empty",
            a.loc(roles),
            "an empty list would let nobody approve; remove `approvers` to accept any approver",
        )
    if len(items) > MAX_APPROVER_ROLES:
        raise SyntaxProblem(f"at most {MAX_APPROVER_ROLES} approver roles", a.loc(roles))
    out: list[str] = []
    for item in items:
        value = scalar_value(item) if isinstance(item, ScalarNode) else None
        if not isinstance(value, str) or not _ROLE_RE.fullmatch(value):
            raise SyntaxProblem(
                "each approver role must be a non-empty string without spaces or commas",
                a.loc(item),
                "registry roles look like `approver:finance`",
            )
        if value not in out:
            out.append(value)
    return tuple(out)


def combine(requirements: Iterable[Requirement]) -> Requirement | None:
    """The one requirement that meets all of these, or None if no role set can (see the
    module docstring): the largest count, the intersection of the stated role sets."""
    roles: set[str] | None = None
    count = 1
    for req in requirements:
        count = max(count, req.approvals)
        if not req.roles:
            continue
        if roles is None:
            roles = set(req.roles)
        else:
            roles &= set(req.roles)
        if not roles:
            return None
    return Requirement(tuple(sorted(roles or ())), count)
