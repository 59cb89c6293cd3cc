"""Between the wire contract (``schemas/``, decoded by ``ordinance.streams.serde``) and
the policy engine's request and decision shapes.

The wire keeps agent attributes apart from the built-in ``id``/``roles`` and resource
attributes apart from ``kind``/``id``; the policy engine reads them as one record each.
Obligations in a policy are a kind, or a one-key mapping ``{kind: params}``; on the wire
they are ``{kind, params}`` with params a map (a scalar becomes ``{"value": scalar}``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from ordinance.jsonutil import canonical_json
from ordinance.policy.decision import Decision


def request_from_wire(datum: Mapping[str, Any]) -> dict[str, Any]:
    """An ActionRequest datum as the request ``Ruleset.evaluate`` takes."""
    agent = datum["agent"]
    request: dict[str, Any] = {
        "agent": {
            **agent.get("attributes", {}),
            "id": agent["id"],
            "roles": agent.get("roles", []),
        },
        "action": {"tool": datum["action"]["tool"], "args": datum["action"].get("args", {})},
        "context": datum.get("context") or {},
    }
    resource = datum.get("resource")
    if resource is not None:
        request["resource"] = {
            **resource.get("attributes", {}),
            "kind": resource["kind"],
            "id": resource["id"],
        }
    return request


def request_to_wire(
    request: Mapping[str, Any],
    *,
    request_id: str,
    event_time: dt.datetime,
    client_id: str,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """A policy-shaped request as an ActionRequest datum (what an agent SDK publishes)."""
    agent = dict(request["agent"])
    datum: dict[str, Any] = {
        "request_id": request_id,
        "agent": {
            "id": agent.pop("id"),
            "roles": list(agent.pop("roles", [])),
            "attributes": agent,
        },
        "action": {
            "tool": request["action"]["tool"],
            "args": dict(request["action"].get("args", {})),
        },
        "context": dict(request.get("context") or {}),
        "event_time": event_time,
        "reply_to": reply_to,
        "client_id": client_id,
    }
    resource = request.get("resource")
    if resource is not None:
        attributes = dict(resource)
        datum["resource"] = {
            "kind": attributes.pop("kind"),
            "id": attributes.pop("id", ""),
            "attributes": attributes,
        }
    return datum


def content_ticket(datum: Mapping[str, Any]) -> str:
    """The content hash an approval is bound to: agent, action, resource and context of an
    ActionRequest datum (not its request id or times), in canonical JSON."""
    content = {k: datum.get(k) for k in ("agent", "action", "resource", "context")}
    return "sha256:" + hashlib.sha256(canonical_json(content)).hexdigest()


def obligation_to_wire(obligation: Any) -> dict[str, Any]:
    if isinstance(obligation, Mapping) and len(obligation) == 1:
        ((kind, params),) = obligation.items()
        if isinstance(params, Mapping):
            return {"kind": str(kind), "params": dict(params)}
        return {"kind": str(kind), "params": {"value": params}}
    return {"kind": str(obligation), "params": {}}


def decision_to_wire(
    decision: Decision,
    *,
    request_id: str,
    agent_id: str,
    enforcer_id: str,
    evaluated_at: dt.datetime,
    action_offset: int | None = None,
    policy_offset: int | None = None,
    tool: str = "",
    args: Mapping[str, Any] | None = None,
    event_time: dt.datetime | None = None,
    approval_ticket: str | None = None,
) -> dict[str, Any]:
    """A Decision datum; the hash-chain fields are left to the audit layer. ``tool`` and
    ``args`` are the canonical action, so the decision log alone rebuilds window state."""
    return {
        "request_id": request_id,
        "agent_id": agent_id,
        "effect": decision.effect,
        "rule_ids": list(decision.rule_ids),
        "reasons": list(decision.reasons),
        "code": decision.code,
        "detail": decision.detail,
        "obligations": [obligation_to_wire(o) for o in decision.obligations],
        "bundle_id": decision.bundle_id,
        "policy_offset": policy_offset,
        "evaluated_at": evaluated_at,
        "enforcer_id": enforcer_id,
        "action_offset": action_offset,
        "prev_hash": None,
        "hash": None,
        "tool": tool,
        "args": dict(args or {}),
        "event_time": event_time,
        "approval_ticket": approval_ticket,
    }
