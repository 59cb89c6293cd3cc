"""Between the wire contract (``ordinance/streams/schemas/``, decoded by ``ordinance.streams.serde``) and
the policy engine's request and decision shapes.

The wire keeps agent attributes apart from the built-in ``id``/``roles`` and resource
attributes apart from ``kind``/``id``; the policy engine reads them as one record each.
Obligations in a policy are a kind, or a one-key mapping ``{kind: params}``; on the wire
they are ``{kind, params}`` with params a map (a scalar becomes ``{"value": scalar}``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import unicodedata
from collections.abc import Mapping
from typing import Any, cast

from ordinance.jsonutil import canonical_json
from ordinance.policy.decision import Decision
from ordinance.streams import records


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


#: Longest agent id, in UTF-8 bytes (it is the record key and a window key).
MAX_AGENT_ID_BYTES = 256
# Control and format characters, surrogates, private-use and unassigned code points, line
# and paragraph separators: invisible or unstable in an identifier.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def agent_id_problem(agent_id: object) -> str | None:
    """Why an agent id cannot be judged, or None when it is in canonical form.

    An agent id is the record key, the partition key, the window key and the decision's
    agent id: one string for all four. So an id that any normalisation would change —
    NFKC (``ｂ1`` is ``b1``), case folding (``B1``), trimming — is refused, never
    repaired: repairing it would give one agent two spellings, and budgets kept under
    one spelling would not be seen under the other. The size is checked before any
    normalisation runs (NFKC is superlinear on some inputs)."""
    if not isinstance(agent_id, str):
        return f"agent.id must be a string, not {type(agent_id).__name__}"
    if not agent_id:
        return "agent.id is empty"
    if len(agent_id) > MAX_AGENT_ID_BYTES or len(agent_id.encode(errors="replace")) > (
        MAX_AGENT_ID_BYTES
    ):
        return f"agent.id is longer than {MAX_AGENT_ID_BYTES} bytes"
    if not agent_id.isascii():
        for char in agent_id:
            if unicodedata.category(char) in _REFUSED_CATEGORIES:
                return f"agent.id {agent_id!r} holds the character U+{ord(char):04X}"
        canonical = unicodedata.normalize(
            "NFKC", unicodedata.normalize("NFKC", agent_id).casefold()
        ).strip()
    else:
        if not agent_id.isprintable():
            return f"agent.id {agent_id!r} holds a control character"
        canonical = agent_id.lower().strip()
    if canonical != agent_id:
        return (
            f"agent.id {agent_id!r} is not in canonical form (it would be {canonical!r}); "
            "an agent id is refused, not normalised"
        )
    return None


def request_to_wire(
    request: Mapping[str, Any],
    *,
    request_id: str,
    event_time: dt.datetime,
    client_id: str,
    reply_to: str | None = None,
) -> records.ActionRequestIn:
    """A policy-shaped request as an ActionRequest datum (what an agent SDK publishes)."""
    agent = dict(request["agent"])
    datum: records.ActionRequestIn = {
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


def obligation_to_wire(obligation: Any) -> records.ObligationIn:
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
) -> records.DecisionIn:
    """A Decision datum; the hash-chain fields are left to the audit layer. ``tool`` and
    ``args`` are the canonical action, so the decision log alone rebuilds window state."""
    return {
        "request_id": request_id,
        "agent_id": agent_id,
        # A str in the policy engine, one of ALLOW, DENY, REQUIRE_APPROVAL; any other
        # value is refused by Serde.encode (SchemaError), as before the types.
        # A plain str, not the Effect member: the generated encoder takes exact types only
        # (a subclass falls back to fastavro at ~40 µs a decision).
        "effect": cast(records.Effect, str(decision.effect)),
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
        "arm": None,  # set by a canary rollout (`rollout`)
        "shadow": None,  # set by a shadow rollout
    }
