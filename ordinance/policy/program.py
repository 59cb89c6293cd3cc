"""Per-tool programs: one generated function per tool that validates and canonicalises the
request *and* decides it, in straight-line code over local variables.

Why one function: on CPython the cost of a request is dominated by calls and dictionary
traffic, not by the rules. Rules are indexed by tool at compile time (a request only ever
runs the rules whose target can match its tool) and grouped by policy target inside the
function (one agent / resource test guards all rules of a policy). Request fields become
locals named by position (``x0``, ``a1``...), never by their schema names: no text from a
schema or policy reaches the generated source except through ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ordinance.policy import canon
from ordinance.policy.codegen import Constants
from ordinance.policy.decision import Decision, Effect
from ordinance.policy.schema import Field, Fields, Schema, Tool
from ordinance.policy.types import Type, ValueProblem, converter

# Tiers, in precedence order under deny-overrides.
TIER_DENY, TIER_APPROVAL, TIER_ALLOW = 0, 1, 2
TIER_OF_EFFECT: dict[str, int] = {
    Effect.DENY: TIER_DENY,
    Effect.REQUIRE_APPROVAL: TIER_APPROVAL,
    Effect.ALLOW: TIER_ALLOW,
}

# The Decision itself when one rule determined it (prebuilt per rule), else
# (tier, rule indexes, [(rule index, exception)] or None); None when no rule applied.
Outcome = Decision | tuple[int, list[int], list[tuple[int, BaseException]] | None] | None
Entry = Callable[[Any, Any, Any], tuple[str, Outcome]]

MISSING = object()  # the value of an absent optional field
_EMPTY_SET: frozenset[str] = frozenset()


class RequestProblem(ValueError):
    """A request that does not fit the schema; becomes a deny with code invalid_request."""


def missing(attribute: str) -> Any:
    """Reading an absent attribute is an evaluation error (KeyError), never a silent false."""
    raise KeyError(attribute)


# Inline fast paths for the common JSON shapes; anything else takes the full converter,
# which validates and canonicalises (and raises ValueProblem).
_FAST_PATH = {
    "string": (
        f"v if type(v) is str and v.isascii() and len(v) <= {canon.MAX_STRING_CHARS}"
        " else {slow}(v)"
    ),
    "int": "v if type(v) is int else {slow}(v)",
    # An int is an exact decimal already: keep it, arithmetic and comparisons mix freely.
    "decimal": "v if type(v) is int else {slow}(v)",
    "bool": "v if type(v) is bool else {slow}(v)",
    # The same test as canon.canonical_path's own fast path, inlined to save two calls.
    "path": (
        f"v if type(v) is str and v[:1] == '/' and len(v) <= {canon.MAX_PATH_CHARS}"
        " and v.isascii() and v.isprintable() and not ('\\\\' in v or '//' in v or '/.' in v)"
        " and (len(v) == 1 or v[-1] != '/') else {slow}(v)"
    ),
}


def fast_path(t: Type) -> str:
    """The inline conversion of a field of type ``t`` (``{slow}`` is its converter)."""
    if t.name == "string" and not t.is_plain_string:
        return "{slow}(v)"  # case folding or an enum: every value is converted
    return _FAST_PATH.get(t.name, "{slow}(v)")


def weigh(value: Any) -> int:
    """canon.weigh for generated code: an over-long list is a ValueProblem of its field."""
    try:
        return canon.weigh(value)
    except canon.CanonError as exc:
        raise ValueProblem(str(exc)) from None


def over_limit(total: int) -> RequestProblem:
    return RequestProblem(str(canon.over_request_limit(total)))


@dataclass
class Layout:
    """Where each request attribute lives in a tool's generated function."""

    tool: Tool
    schema: Schema
    locals: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for root, prefix, fields in (
            ("agent", "a", self.schema.agent),
            ("action", "x", self.tool.args),
            ("resource", "r", self.schema.resource),
            ("context", "c", self.schema.context),
        ):
            for n, name in enumerate(sorted(fields)):
                self.locals[(root, name)] = f"{prefix}{n}"
        # The built-ins the target guards use get fixed names.
        self.locals[("agent", "id")] = "aid"
        self.locals[("agent", "roles")] = "roles"
        self.locals[("resource", "kind")] = "rk"

    def field(self, root: str, name: str) -> Field:
        if root == "action":
            return self.tool.args[name]
        return {
            "agent": self.schema.agent,
            "resource": self.schema.resource,
            "context": self.schema.context,
        }[root][name]

    def may_be_missing(self, root: str, name: str) -> bool:
        if root == "resource":
            return True  # the whole resource may be absent
        if (root, name) == ("agent", "roles"):
            return False  # absent roles are the empty set
        return self.field(root, name).optional


def _record(
    lines: list[str],
    layout: Layout,
    root: str,
    *,
    fields: Fields,
    raw: str,
    what: str,
    ns: Constants,
    strict: bool,
) -> None:
    """Convert the fields of one record from ``raw`` (a dict) into locals."""
    lines.append(f"    if type({raw}) is not dict:")
    lines.append(f"        raise _RequestProblem({what + ' must be an object'!r})")
    lines.append("    try:")
    lines.append("        f = None")
    for name, spec in sorted(fields.items()):
        var = layout.locals[(root, name)]
        slow = ns.add(converter(spec.type))
        lines.append(f"        v = {raw}.get({name!r}, _M)")
        lines.append("        if v is not _M:")
        lines.append(f"            f = {name!r}")
        # The request's size is counted before the field is normalised (canon.limits).
        if spec.type.name in ("set", "list"):
            lines.append("            n += _weigh(v)")
        elif spec.type.name not in ("int", "bool"):
            lines.append("            if type(v) is str:")
            lines.append(
                f"                n += len(v) if v.isascii() else {canon.NON_ASCII_WEIGHT} * len(v)"
            )
        if spec.type.name not in ("int", "bool"):
            lines.append(f"            if n > {canon.MAX_REQUEST_CHARS}:")
            lines.append("                raise _over(n)")
        if spec.type.name == "set":
            # Lists of ASCII strings (the common shape of roles) are already canonical.
            lines.append("            if type(v) is list:")
            lines.append("                for s in v:")
            lines.append(
                "                    if type(s) is not str or not s.isascii()"
                f" or len(s) > {canon.MAX_STRING_CHARS}:"
            )
            lines.append(f"                        {var} = {slow}(v)")
            lines.append("                        break")
            lines.append("                else:")
            lines.append(f"                    {var} = _frozenset(v)")
            lines.append("            else:")
            lines.append(f"                {var} = {slow}(v)")
        else:
            lines.append(f"            {var} = {fast_path(spec.type).format(slow=slow)}")
        lines.append("        else:")
        if (root, name) == ("agent", "roles"):
            lines.append(f"            {var} = _EMPTY_SET")
        elif spec.optional:
            lines.append(f"            {var} = _M")
        else:
            lines.append(
                f"            raise _RequestProblem({f'{what} is missing required field {name}'!r})"
            )
    lines.append("    except _ValueProblem as exc:")
    lines.append(f"        raise _RequestProblem({what + '.'!r} + f + ': ' + str(exc)) from None")
    if strict:
        required = sum(1 for f in fields.values() if not f.optional)
        known = ns.add(frozenset(fields))
        lines.append(f"    if len({raw}) > {required}:")
        lines.append(f"        for key in {raw}:")
        lines.append(f"            if key not in {known}:")
        lines.append(
            f"                raise _RequestProblem({what + '.'!r} + str(key) + ' is not declared in the schema')"
        )


def prologue(layout: Layout, ns: Constants) -> list[str]:
    """Validation and canonicalisation of the whole request into locals."""
    schema = layout.schema
    lines: list[str] = ["    n = 0", "    args = action.get('args', _EMPTY_DICT)"]
    _record(
        lines,
        layout,
        "action",
        fields=layout.tool.args,
        raw="args",
        what="action.args",
        ns=ns,
        strict=True,
    )
    lines.append("    agent = request['agent']")
    _record(
        lines, layout, "agent", fields=schema.agent, raw="agent", what="agent", ns=ns, strict=False
    )
    lines.append("    resource = request.get('resource')")
    lines.append("    if resource is None:")
    for name in sorted(schema.resource):
        if name != "kind":
            lines.append(f"        {layout.locals[('resource', name)]} = _M")
    lines.append("        rk = None")
    lines.append("    else:")
    body: list[str] = []
    _record(
        body,
        layout,
        "resource",
        fields=schema.resource,
        raw="resource",
        what="resource",
        ns=ns,
        strict=False,
    )
    lines.extend("    " + b for b in body)
    lines.append("    context = request.get('context')")
    lines.append("    if context is None:")
    lines.append("        context = _EMPTY_DICT")
    _record(
        lines,
        layout,
        "context",
        fields=schema.context,
        raw="context",
        what="context",
        ns=ns,
        strict=False,
    )
    return lines


@dataclass(frozen=True, slots=True)
class RuleCode:
    index: int  # position in the ruleset's rule table
    tier: int
    condition: str  # Python expression source
    group: str  # target guard source shared by a policy's rules; "" = always applies


def _guarded(lines: list[str], group: str, body: list[str]) -> None:
    if group:
        lines.append(f"    if {group}:")
        lines.extend("    " + b for b in body)
    else:
        lines.extend(body)


def _rule_body(rule: RuleCode, on_match: str, on_error: str) -> list[str]:
    if rule.condition == "True":
        return [f"    {on_match}"]
    return [
        "    try:",
        f"        if {rule.condition}:",
        f"            {on_match}",
        "    except Exception as ex:",
        f"        {on_error}",
    ]


def _hoist_guards(rules: list[RuleCode], lines: list[str]) -> list[RuleCode]:
    """A target guard needed in several tiers is computed once, into a local."""
    tiers_of: dict[str, set[int]] = {}
    for rl in rules:
        if rl.group:
            tiers_of.setdefault(rl.group, set()).add(rl.tier)
    names: dict[str, str] = {}
    for n, (guard, tiers) in enumerate(tiers_of.items()):
        if len(tiers) > 1:
            names[guard] = f"g{n}"
            lines.append(f"    g{n} = {guard}")
    return [
        RuleCode(rl.index, rl.tier, rl.condition, names.get(rl.group, rl.group)) for rl in rules
    ]


def deny_overrides_body(rules: list[RuleCode]) -> list[str]:
    """deny > require_approval > allow, and a rule that errs counts as a deny.

    Deny rules run first and settle the answer if any matches or errs. Otherwise approval
    and allow rules all run, because an erring rule in either tier still makes it a deny."""
    lines = ["    h = []", "    k = []", "    e = None"]
    rules = _hoist_guards(rules, lines)
    for tier in (TIER_DENY, TIER_APPROVAL, TIER_ALLOW):
        hits = "k" if tier == TIER_ALLOW else "h"
        tier_rules = [rl for rl in rules if rl.tier == tier]
        i = 0
        while i < len(tier_rules):
            group = tier_rules[i].group
            body: list[str] = []
            while i < len(tier_rules) and tier_rules[i].group == group:
                rl = tier_rules[i]
                body += _rule_body(
                    rl, f"{hits}.append({rl.index})", f"e = (e or []) + [({rl.index}, ex)]"
                )
                i += 1
            _guarded(lines, group, body)
        if tier == TIER_DENY:
            lines += [
                "    if e:",
                "        return (0, h, e)",
                "    if h:",
                "        return _single[h[0]] if len(h) == 1 else (0, h, None)",
            ]
    lines += ["    if e:", "        return (0, [], e)"]
    # One determining rule is the common case: its Decision is built once, at compile time.
    lines += [
        "    if h:",
        f"        return _single[h[0]] if len(h) == 1 else ({TIER_APPROVAL}, h, None)",
    ]
    lines += [
        "    if k:",
        f"        return _single[k[0]] if len(k) == 1 else ({TIER_ALLOW}, k, None)",
    ]
    lines.append("    return None")
    return lines


def first_applicable_body(rules: list[RuleCode]) -> list[str]:
    lines: list[str] = []
    for rl in rules:
        body = _rule_body(rl, f"return _single[{rl.index}]", f"return (0, [], [({rl.index}, ex)])")
        _guarded(lines, rl.group, body)
    lines.append("    return None")
    return lines


RUNTIME_NAMES: dict[str, Any] = {
    "_M": MISSING,
    "_EMPTY_SET": _EMPTY_SET,
    "_EMPTY_DICT": {},
    "_RequestProblem": RequestProblem,
    "_ValueProblem": ValueProblem,
    "_missing": missing,
    "_weigh": weigh,
    "_over": over_limit,
    "type": type,
    "_frozenset": frozenset,
    "list": list,
    "str": str,
    "int": int,
    "bool": bool,
    "dict": dict,
    "len": len,
}


def program_source(name: str, layout: Layout, ns: Constants, decide: list[str]) -> str:
    """``def name(request, action, w)``: validate, then decide; returns the Outcome.
    The canonical tool name ``t`` is a constant of the function."""
    lines = [f"def {name}(request, action, w):", f"    t = {layout.tool.name!r}"]
    lines += prologue(layout, ns)
    lines += decide
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class ToolProgram:
    tool: str
    run: Callable[[Any, Any, Any], Outcome]
    source: str
