"""Policy documents: one YAML file, one policy — parsed into an immutable model with positions.

Parsing checks structure only (keys, effects, condition syntax); names and types are checked
against the schema by :mod:`ordinance.policy.typecheck` when a set is compiled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ordinance.policy import canon
from ordinance.policy.approvers import (
    APPROVAL_KEYS,
    NO_REQUIREMENT,
    Requirement,
    parse_expected,
    parse_requirement,
)
from ordinance.policy.cel import ConditionSyntaxError, Expr, Literal, parse_condition, to_source
from ordinance.policy.errors import Location, PolicyError, PolicyErrors, SyntaxProblem
from ordinance.policy.schema import BUILTIN_AGENT, BUILTIN_RESOURCE, EFFECTS, Field
from ordinance.policy.types import ValueProblem, converter
from ordinance.policy.yamlsrc import (
    Mapping,
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
    SourceFile,
    plain,
    scalar_value,
)

IMPACTS = ("low", "medium", "high")
_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed ``when`` and where it came from, for carets in type errors."""

    expr: Expr
    source: SourceFile | None = field(default=None, compare=False, repr=False)
    node: ScalarNode | None = field(default=None, compare=False, repr=False)

    @property
    def text(self) -> str:
        return to_source(self.expr)

    def location(self, offset: int = 0, length: int = 1) -> Location:
        if self.source is None or self.node is None:
            return Location("<condition>", 1, offset + 1, self.text, length)
        return self.source.offset_location(self.node, offset, length)


ALWAYS = Condition(Literal(True))


@dataclass(frozen=True, slots=True)
class Target:
    """Who and what a policy applies to. Every value is in the canonical form of the
    request field it is compared with, so a target spelled with a compatibility character
    still meets the request it names. An absent list restricts nothing; an empty one is
    refused when the policy is parsed (it would read as "nobody" but used to mean "anyone")."""

    roles: tuple[str, ...] = ()  # empty = no role restriction
    agent_ids: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()  # canonical tool-name globs; empty = every tool
    resources: tuple[str, ...] = ()  # resource kinds; empty = with or without a resource
    location: Location = field(default=Location("<target>", 0, 0), compare=False)

    def canonical(self) -> dict[str, list[str]]:
        return {
            "roles": sorted(self.roles),
            "agent_ids": sorted(self.agent_ids),
            "actions": sorted(self.actions),
            "resources": sorted(self.resources),
        }


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    effect: str
    condition: Condition
    reason: str = ""
    priority: int = 0
    actions: tuple[str, ...] = ()  # narrows the policy target's tools for this rule
    obligations: tuple[Any, ...] = ()
    location: Location = field(default=Location("<rule>", 0, 0), compare=False)
    # require_approval only: who may approve and how many (ordinance.policy.approvers)
    approval: Requirement = NO_REQUIREMENT

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "effect": self.effect,
            "when": self.condition.text,
            "reason": self.reason,
            "priority": self.priority,
            "actions": sorted(self.actions),
            "obligations": list(self.obligations),
        }
        # Only when stated, so a bundle without them keeps the id it always had; the
        # default requirement (any approver, one approval) is the same bundle either way.
        if self.approval.roles:
            out["approvers"] = {"roles": sorted(self.approval.roles)}
        if self.approval.approvals != 1:
            out["approvals"] = self.approval.approvals
        return out


@dataclass(frozen=True, slots=True)
class Assertion:
    """``never: allow when C`` or ``always: deny when C``, proven over the combined set."""

    name: str
    quantifier: str  # "never" | "always"
    effect: str
    condition: Condition
    location: Location = field(default=Location("<assertion>", 0, 0), compare=False)

    def canonical(self) -> dict[str, Any]:
        return {"name": self.name, self.quantifier: self.effect, "when": self.condition.text}


@dataclass(frozen=True, slots=True)
class TestCase:
    name: str
    request: dict[str, Any]
    expect: str
    rules: tuple[str, ...] | None = None  # expected determining rule ids, if given
    history: tuple[dict[str, Any], ...] = ()  # earlier allowed actions, for window functions
    location: Location = field(default=Location("<test>", 0, 0), compare=False)
    # the decision's approval requirement, when the test states it (require_approval)
    approvers: tuple[str, ...] | None = None
    approvals: int | None = None

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "request": self.request, "expect": self.expect}
        if self.rules is not None:
            out["rules"] = list(self.rules)
        if self.history:
            out["history"] = list(self.history)
        if self.approvers is not None:
            out["approvers"] = sorted(self.approvers)
        if self.approvals is not None:
            out["approvals"] = self.approvals
        return out


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    owner: str
    description: str
    target: Target
    rules: tuple[Rule, ...]
    justification: dict[str, Any] = field(default_factory=dict)
    impact: str = "medium"
    assertions: tuple[Assertion, ...] = ()
    tests: tuple[TestCase, ...] = ()
    file: str = field(default="<policy>", compare=False)

    def canonical(self) -> dict[str, Any]:
        return {
            "policy": self.id,
            "owner": self.owner,
            "description": self.description,
            "justification": self.justification,
            "impact": self.impact,
            "target": self.target.canonical(),
            "rules": [r.canonical() for r in self.rules],
            "assertions": [a.canonical() for a in self.assertions],
            "tests": [t.canonical() for t in self.tests],
        }


# -- parsing --------------------------------------------------------------------------

_POLICY_KEYS = {
    "policy", "owner", "description", "justification", "impact", "target", "rules",
    "assertions", "tests",
}  # fmt: skip
_RULE_KEYS = {
    "id", "effect", "when", "reason", "priority", "actions", "obligations", "approvers",
    "approvals",
}  # fmt: skip


def parse_when(node: Node | None, source: SourceFile) -> Condition:
    if node is None:
        return ALWAYS
    if not isinstance(node, ScalarNode):
        raise SyntaxProblem("`when` must be a condition string", source.node_location(node))
    text = str(node.value)
    if node.style is None and scalar_value(node) in (True, False):
        text = text.lower()
    try:
        expr = parse_condition(text)
    except ConditionSyntaxError as exc:
        raise SyntaxProblem(
            exc.message, source.offset_location(node, exc.offset, exc.length), exc.hint
        ) from None
    return Condition(expr, source, node)


def _ident(m: Mapping, key: str) -> str:
    value = m.required_string(key)
    if not _ID_RE.fullmatch(value):
        raise SyntaxProblem(
            f"`{key}` must be lower-case letters, digits, `.`, `_` or `-`: {value!r}",
            m.loc(m.require(key)),
        )
    return value


def _effect(m: Mapping, key: str) -> str:
    value = m.required_string(key)
    if value not in EFFECTS:
        raise SyntaxProblem(
            f"unknown effect `{value}`",
            m.loc(m.require(key)),
            f"effects are {', '.join(EFFECTS)}",
        )
    return value


def _globs(m: Mapping, key: str) -> tuple[str, ...]:
    return _target_list(m, key, canon.canonical_tool)


def _field_converter(spec: Field) -> Any:
    """The per-value canonicaliser of a built-in request field (of its elements, for the
    ``set<string>`` of roles): a target value goes through exactly what the request does."""
    return converter(spec.type.elem if spec.type.elem is not None else spec.type)


def _target_list(m: Mapping, key: str, canonical: Any) -> tuple[str, ...]:
    """A target list (``roles``, ``ids``, ``actions``, ``resources``) in canonical form.
    Absent means unrestricted; present, it must name at least one non-empty string — an
    empty list is refused, because ``roles: []`` on an allow rule used to allow everyone."""
    node = m.node_of(key)
    if node is None:
        return ()
    items = [node] if isinstance(node, ScalarNode) else None  # `roles: billing` is one role
    if isinstance(node, SequenceNode):
        items = list(node.value)
    if items is None:
        raise SyntaxProblem(f"`{key}` in {m.what} must be a list of strings", m.loc(node))
    if not items:
        raise SyntaxProblem(
            f"`{key}: []` in {m.what} is empty",
            m.loc(node),
            f"an empty list would match nothing; remove `{key}` to apply to every {key[:-1]}"
            if key != "ids"
            else "an empty list would match nothing; remove `ids` to apply to every agent",
        )
    out: list[str] = []
    for item in items:
        value = scalar_value(item) if isinstance(item, ScalarNode) else None
        if not isinstance(value, str) or not value.strip():
            raise SyntaxProblem(
                f"each entry of `{key}` in {m.what} must be a non-empty string", m.loc(item)
            )
        try:
            out.append(canonical(value))
        except (ValueProblem, canon.CanonError) as exc:
            raise SyntaxProblem(
                f"`{value}` in `{key}` has no canonical form: {exc}", m.loc(item)
            ) from None
    return tuple(out)


def _sequence(node: Node | None, source: SourceFile, what: str) -> list[Node]:
    if node is None:
        return []
    if not isinstance(node, SequenceNode):
        raise SyntaxProblem(f"`{what}` must be a list", source.node_location(node))
    return list(node.value)


def _target(node: Node | None, source: SourceFile) -> Target:
    if node is None:
        return Target()
    m = Mapping(node, source, "target")
    m.allow_only({"agents", "actions", "resources"})
    roles: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    agents = m.node_of("agents")
    if agents is not None:
        a = Mapping(agents, source, "target.agents")
        a.allow_only({"roles", "ids"})
        if not a.entries:
            raise SyntaxProblem(
                "`agents` in target names no roles or ids",
                m.loc(agents),
                "remove `agents` to apply to every agent",
            )
        roles = _target_list(a, "roles", _field_converter(BUILTIN_AGENT["roles"]))
        ids = _target_list(a, "ids", _field_converter(BUILTIN_AGENT["id"]))
    resources = _target_list(m, "resources", _field_converter(BUILTIN_RESOURCE["kind"]))
    where = m.loc(m.require("actions")) if m.has("actions") else source.node_location(node)
    return Target(roles, ids, _globs(m, "actions"), resources, where)


def _rule(node: Node, source: SourceFile) -> Rule:
    m = Mapping(node, source, "rule")
    m.allow_only(_RULE_KEYS)
    priority = 0
    if m.has("priority"):
        raw = plain(m.require("priority"))
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise SyntaxProblem("`priority` must be an integer", m.loc(m.require("priority")))
        priority = raw
    obligations = tuple(
        plain(n) for n in _sequence(m.node_of("obligations"), source, "obligations")
    )
    effect = _effect(m, "effect")
    return Rule(
        id=_ident(m, "id"),
        effect=effect,
        condition=parse_when(m.node_of("when"), source),
        reason=m.string("reason") or "",
        priority=priority,
        actions=_globs(m, "actions"),
        obligations=obligations,
        location=source.node_location(node),
        approval=parse_requirement(m, effect),
    )


def _assertion(node: Node, source: SourceFile) -> Assertion:
    m = Mapping(node, source, "assertion")
    m.allow_only({"name", "never", "always", "when"})
    quantifiers = [q for q in ("never", "always") if m.has(q)]
    if len(quantifiers) != 1:
        raise SyntaxProblem(
            "an assertion needs exactly one of `never: EFFECT` or `always: EFFECT`",
            source.node_location(node),
        )
    return Assertion(
        name=m.required_string("name"),
        quantifier=quantifiers[0],
        effect=_effect(m, quantifiers[0]),
        condition=parse_when(m.node_of("when"), source),
        location=source.node_location(node),
    )


HISTORY_ENTRY_KEYS = {"ago", "tool", "args"}
HISTORY_COMPACT_KEYS = {"count", "sum", "within", "tool", "args"}


def history_problem(entry: Any) -> str:
    """Why a test's history entry is malformed ("" if it is fine): an action (``ago``,
    optional ``tool`` and ``args``), or a compact run of them — ``count`` actions and/or
    arguments summing to ``sum`` (``{amount: 5000}``) spread over the last ``within``
    (expanded by :func:`ordinance.policy.testing.expand_history`)."""
    if isinstance(entry, dict) and "ago" in entry and set(entry) <= HISTORY_ENTRY_KEYS:
        return ""
    if isinstance(entry, dict) and "within" in entry and set(entry) <= HISTORY_COMPACT_KEYS:
        count = entry.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            return "history `count` must be a whole number of actions"
        if isinstance(count, int) and not 1 <= count <= MAX_HISTORY_COUNT:
            return f"history `count` must be between 1 and {MAX_HISTORY_COUNT}"
        total = entry.get("sum")
        if total is not None and (not isinstance(total, dict) or not total):
            return "history `sum` must map argument names to totals, e.g. {amount: 5000}"
        if count is None and total is None:
            return "a compact history entry needs `count` and/or `sum` with `within`"
        return ""
    return (
        "each history entry needs `ago` (e.g. `2h`), and may give `tool` and `args`; or is"
        " compact: `count` and/or `sum` ({arg: total}) `within` a duration (e.g. 1h)"
    )


MAX_HISTORY_COUNT = 100_000


def _test(node: Node, source: SourceFile) -> TestCase:
    m = Mapping(node, source, "test")
    m.allow_only({"name", "request", "expect", "rules", "history", *APPROVAL_KEYS})
    request = plain(m.require("request"))
    if not isinstance(request, dict):
        raise SyntaxProblem("`request` must be a mapping", m.loc(m.require("request")))
    history = []
    given = m.node_of("history")
    # `history: {count: 100, within: 1h}` (one compact entry) or a list of entries
    items = [given] if isinstance(given, MappingNode) else _sequence(given, source, "history")
    for item in items:
        entry = plain(item)
        problem = history_problem(entry)
        if problem:
            raise SyntaxProblem(problem, source.node_location(item))
        history.append(entry)
    expect = _effect(m, "expect")
    approvers, approvals = parse_expected(m, expect)
    return TestCase(
        name=m.required_string("name"),
        request=request,
        expect=expect,
        rules=m.string_list("rules") if m.has("rules") else None,
        history=tuple(history),
        location=source.node_location(node),
        approvers=approvers,
        approvals=approvals,
    )


def _each(
    nodes: list[Node], source: SourceFile, parse: Any, errors: list[PolicyError]
) -> list[Any]:
    out = []
    for node in nodes:
        try:
            out.append(parse(node, source))
        except PolicyError as exc:
            errors.append(exc)
    return out


def _unique(items: list[Any], attr: str, what: str, errors: list[PolicyError]) -> None:
    seen: set[str] = set()
    for item in items:
        name = getattr(item, attr)
        if name in seen:
            errors.append(SyntaxProblem(f"duplicate {what} `{name}`", item.location))
        seen.add(name)


def parse_policy(text: str, filename: str = "<policy>") -> Policy:
    """Parse one policy file; raises :class:`PolicyErrors` listing every problem found."""
    source = SourceFile(text, filename)
    try:
        root_node = source.compose()
    except PolicyError as exc:
        raise PolicyErrors([exc]) from None
    if root_node is None:
        raise PolicyErrors([SyntaxProblem("the policy file is empty", source.location(0, 0))])
    errors: list[PolicyError] = []
    try:
        m = Mapping(root_node, source, "a policy")
        m.allow_only(_POLICY_KEYS)
        policy_id = _ident(m, "policy")
        owner = m.required_string("owner")
        impact = m.string("impact", "medium") or "medium"
        if impact not in IMPACTS:
            raise SyntaxProblem(
                f"impact must be one of {', '.join(IMPACTS)}", m.loc(m.require("impact"))
            )
        justification_node = m.node_of("justification")
        justification = {} if justification_node is None else plain(justification_node)
        if not isinstance(justification, dict):
            raise SyntaxProblem(
                "`justification` must be a mapping such as {regulation: [...], risk: ...}",
                m.loc(m.require("justification")),
            )
        target = _target(m.node_of("target"), source)
        rule_nodes = _sequence(m.require("rules"), source, "rules")
        if not rule_nodes:
            raise SyntaxProblem("a policy needs at least one rule", m.loc(m.require("rules")))
    except PolicyError as exc:
        raise PolicyErrors([exc]) from None
    rules = _each(rule_nodes, source, _rule, errors)
    assertions = _each(
        _sequence(m.node_of("assertions"), source, "assertions"), source, _assertion, errors
    )
    tests = _each(_sequence(m.node_of("tests"), source, "tests"), source, _test, errors)
    _unique(rules, "id", "rule id", errors)
    _unique(tests, "name", "test name", errors)
    if errors:
        raise PolicyErrors(errors)
    return Policy(
        id=policy_id,
        owner=owner,
        description=m.string("description") or "",
        target=target,
        rules=tuple(rules),
        justification=justification,
        impact=impact,
        assertions=tuple(assertions),
        tests=tuple(tests),
        file=filename,
    )
