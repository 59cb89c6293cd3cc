"""Per-tool programs: request validation plus one generated decision function per tool.

Rules are indexed by tool at compile time (a request only ever runs the rules whose
target can match its tool) and grouped by policy target inside the function (one agent /
resource test guards all rules of a policy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ordinance.policy.schema import Fields
from ordinance.policy.types import ValueProblem, converter

# Tiers, in precedence order under deny-overrides.
TIER_DENY, TIER_APPROVAL, TIER_ALLOW = 0, 1, 2
TIER_OF_EFFECT = {"deny": TIER_DENY, "require_approval": TIER_APPROVAL, "allow": TIER_ALLOW}

# (tier, rule indexes, [(rule index, exception)] or None) or None when no rule applied.
Outcome = tuple[int, list[int], list[tuple[int, BaseException]] | None] | None
ToolFunction = Callable[..., Outcome]


class RequestProblem(ValueError):
    """A request that does not fit the schema; becomes a deny with code invalid_request."""


def record_converter(fields: Fields, what: str, strict: bool) -> Callable[[Any], dict[str, Any]]:
    """Validate and canonicalise one record (agent, args, resource, context).

    ``strict`` rejects undeclared fields (tool arguments: the attack surface); otherwise
    they are dropped, since no policy can refer to them."""
    convert = {name: converter(f.type) for name, f in fields.items()}
    required = frozenset(name for name, f in fields.items() if not f.optional)

    def run(raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise RequestProblem(f"{what} must be an object")
        out: dict[str, Any] = {}
        for key, value in raw.items():
            fn = convert.get(key)
            if fn is None:
                if strict:
                    raise RequestProblem(f"{what}.{key} is not declared in the schema")
                continue
            try:
                out[key] = fn(value)
            except ValueProblem as exc:
                raise RequestProblem(f"{what}.{key}: {exc}") from None
        if len(out) < len(required) or not required.issubset(out):
            missing = sorted(required - out.keys())
            raise RequestProblem(f"{what} is missing required field(s): {', '.join(missing)}")
        return out

    return run


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


def deny_overrides_source(name: str, rules: list[RuleCode]) -> str:
    lines = [f"def {name}(t, a, x, r, c, w, aid, roles, rk):", "    h = []", "    e = None"]
    for tier in (TIER_DENY, TIER_APPROVAL, TIER_ALLOW):
        tier_rules = [rl for rl in rules if rl.tier == tier]
        i = 0
        while i < len(tier_rules):
            group = tier_rules[i].group
            body: list[str] = []
            while i < len(tier_rules) and tier_rules[i].group == group:
                rl = tier_rules[i]
                body += _rule_body(
                    rl, f"h.append({rl.index})", f"e = (e or []) + [({rl.index}, ex)]"
                )
                i += 1
            _guarded(lines, group, body)
        if tier == TIER_DENY:
            lines += ["    if h or e:", "        return (0, h, e)"]
        else:
            lines += ["    if e:", "        return (0, [], e)"]
            lines += ["    if h:", f"        return ({tier}, h, None)"]
    lines.append("    return None")
    return "\n".join(lines) + "\n"


def first_applicable_source(name: str, rules: list[RuleCode]) -> str:
    lines = [f"def {name}(t, a, x, r, c, w, aid, roles, rk):"]
    for rl in rules:
        body = _rule_body(
            rl,
            f"return ({rl.tier}, [{rl.index}], None)",
            f"return (0, [{rl.index}], [({rl.index}, ex)])",
        )
        _guarded(lines, rl.group, body)
    lines.append("    return None")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class ToolProgram:
    tool: str
    args: Callable[[Any], dict[str, Any]]
    decide: ToolFunction
    source: str
