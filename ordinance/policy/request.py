"""The reference validator: a request in canonical form, as plain dictionaries.

The generated per-tool programs validate and canonicalise requests inline for speed;
this module is the straightforward definition they are tested against (same accept /
reject on every request), and what callers use when they need the canonical values
themselves — the enforcer records canonical arguments for window sums and the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ordinance.policy import canon
from ordinance.policy.program import RequestProblem
from ordinance.policy.schema import Fields, Schema
from ordinance.policy.types import ValueProblem, converter


@dataclass(frozen=True, slots=True)
class CanonicalRequest:
    tool: str
    agent: dict[str, Any]
    args: dict[str, Any]
    resource: dict[str, Any] | None
    context: dict[str, Any]


def declared_size(fields: Fields, raw: Any) -> int:
    """What a record's declared fields weigh toward ``canon.MAX_REQUEST_CHARS`` (strings of
    int and bool fields are refused by their converters, so they weigh nothing here)."""
    if not isinstance(raw, dict):
        return 0
    total = 0
    for key, spec in fields.items():
        if key not in raw or spec.type.name in ("int", "bool"):
            continue
        try:
            total += canon.weigh(raw[key])
        except canon.CanonError as exc:
            raise RequestProblem(f"{key}: {exc}") from None
    return total


def canonical_record(fields: Fields, raw: Any, what: str, strict: bool) -> dict[str, Any]:
    """Declared fields converted to canonical form; undeclared ones rejected (``strict``)
    or dropped; a missing required field is an error."""
    if not isinstance(raw, dict):
        raise RequestProblem(f"{what} must be an object")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        spec = fields.get(key)
        if spec is None:
            if strict:
                raise RequestProblem(f"{what}.{key} is not declared in the schema")
            continue
        try:
            out[key] = converter(spec.type)(value)
        except ValueProblem as exc:
            raise RequestProblem(f"{what}.{key}: {exc}") from None
    for name, spec in fields.items():
        if not spec.optional and name not in out:
            raise RequestProblem(f"{what} is missing required field {name}")
    return out


def canonical_request(schema: Schema, request: Mapping[str, Any]) -> CanonicalRequest:
    """Validate and canonicalise; raises RequestProblem (or KeyError/TypeError for a
    request that is not even shaped like one)."""
    action = request["action"]
    raw_tool = action["tool"]
    if not isinstance(raw_tool, str):
        raise RequestProblem("action.tool must be a string")
    try:
        tool = canon.canonical_tool(raw_tool)
    except canon.CanonError as exc:
        raise RequestProblem(str(exc)) from None
    if tool not in schema.tools:
        raise RequestProblem(f"tool {raw_tool!r} is not in the schema")
    # Bounded before anything is normalised: the declared fields' sizes, all records.
    total = (
        declared_size(schema.tools[tool].args, action.get("args", {}))
        + declared_size(schema.agent, request["agent"])
        + declared_size(schema.resource, request.get("resource"))
        + declared_size(schema.context, request.get("context"))
    )
    if total > canon.MAX_REQUEST_CHARS:
        raise RequestProblem(str(canon.over_request_limit(total)))
    args = canonical_record(
        schema.tools[tool].args, action.get("args", {}), "action.args", strict=True
    )
    agent = canonical_record(schema.agent, request["agent"], "agent", strict=False)
    raw_resource = request.get("resource")
    resource = (
        None
        if raw_resource is None
        else canonical_record(schema.resource, raw_resource, "resource", strict=False)
    )
    raw_context = request.get("context")
    context = canonical_record(
        schema.context, {} if raw_context is None else raw_context, "context", strict=False
    )
    return CanonicalRequest(tool, agent, args, resource, context)
