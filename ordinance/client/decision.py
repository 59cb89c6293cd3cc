"""Decisions as the client hands them out: the policy engine's `Decision`, plus where it
came from, and the client-side codes for when no enforcer answer arrived."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ordinance.policy.decision import ALLOW, DENY, REQUIRE_APPROVAL, Decision
from ordinance.streams import records

# Client-side codes: the enforcer never answered (or was never asked), so the client denies.
CLIENT_TIMEOUT = "client_timeout"  # no decision arrived within the timeout
TRANSPORT_ERROR = "transport_error"  # the log failed: publish, metadata or the reader
CLIENT_INVALID_REQUEST = "client_invalid_request"  # not sendable; never published
CLIENT_CLOSED = "client_closed"  # the client was closed before an answer arrived
CLIENT_CODES = frozenset({CLIENT_TIMEOUT, TRANSPORT_ERROR, CLIENT_INVALID_REQUEST, CLIENT_CLOSED})

_EFFECTS = frozenset({ALLOW, DENY, REQUIRE_APPROVAL})


@dataclass(frozen=True, slots=True)
class ClientDecision(Decision):
    """A `Decision` with its provenance. ``enforcer_id`` is ``client:<client id>`` and
    ``bundle_id`` empty when the client denied on its own (see `client_side`)."""

    request_id: str = ""
    enforcer_id: str = ""
    policy_offset: int | None = None
    evaluated_at: dt.datetime | None = None
    action_partition: int | None = None
    action_offset: int | None = None
    approval_ticket: str | None = None  # on require_approval: what an Approval must name
    # The tool and arguments the enforcer judged, in canonical form (empty when it judged
    # none: client-side denies, invalid requests). "Enforce what you evaluated": a guard
    # can run the tool on exactly these (``@guard(..., use_canonical_args=True)``).
    canonical_tool: str = ""
    canonical_args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def client_side(self) -> bool:
        """True when no enforcer decided this: the client failed closed."""
        return self.code in CLIENT_CODES

    def brief(self) -> dict[str, Any]:
        """What a surface tells an agent about a decision (a refused tool call's error,
        an allowed result's metadata): the answer, why, and how to find it on the log."""
        return {
            "effect": self.effect,
            "code": self.code,
            "reasons": list(self.reasons),
            "rule_ids": list(self.rule_ids),
            "detail": self.detail,
            "request_id": self.request_id,
            "bundle_id": self.bundle_id,
            "approval_ticket": self.approval_ticket,
            "client_side": self.client_side,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **Decision.to_json(self),
            "request_id": self.request_id,
            "enforcer_id": self.enforcer_id,
            "client_side": self.client_side,
            "policy_offset": self.policy_offset,
            "evaluated_at": None if self.evaluated_at is None else self.evaluated_at.isoformat(),
            "action_partition": self.action_partition,
            "action_offset": self.action_offset,
            "approval_ticket": self.approval_ticket,
            "canonical_tool": self.canonical_tool,
            "canonical_args": dict(self.canonical_args),
        }


def client_deny(
    code: str, detail: str, *, request_id: str = "", client_id: str = ""
) -> ClientDecision:
    return ClientDecision(
        DENY,
        (),
        (detail,),
        (),
        "",
        code,
        detail,
        request_id=request_id,
        enforcer_id=f"client:{client_id}",
    )


def _obligation(wire: records.Obligation) -> Any:
    # The policy shape back from the wire's {kind, params} (the inverse of
    # wire.obligation_to_wire): a bare kind when there are no parameters, the
    # scalar when params is the {"value": scalar} that wrapping made, else {kind: params}.
    params = dict(wire.get("params") or {})
    if not params:
        return wire["kind"]
    if params.keys() == {"value"} and not isinstance(params["value"], dict | list):
        return {wire["kind"]: params["value"]}
    return {wire["kind"]: params}


def decision_from_wire(datum: records.Decision, action_partition: int | None) -> ClientDecision:
    """A decoded Decision datum; an effect this client does not know reads as deny. (The
    ``.get`` fallbacks are for hand-made datums: a decoded one has every key.)"""
    effect = datum["effect"] if datum["effect"] in _EFFECTS else DENY
    return ClientDecision(
        effect,
        tuple(datum.get("rule_ids") or ()),
        tuple(datum.get("reasons") or ()),
        tuple(_obligation(o) for o in datum.get("obligations") or ()),
        datum.get("bundle_id") or "",
        datum.get("code") or "",
        datum.get("detail") or "",
        # what an approval needs, recorded with the require_approval decision
        approval_roles=tuple(datum.get("approval_roles") or ()),
        approvals_required=datum.get("approvals_required"),
        request_id=datum["request_id"],
        enforcer_id=datum.get("enforcer_id") or "",
        policy_offset=datum.get("policy_offset"),
        evaluated_at=datum.get("evaluated_at"),
        action_partition=action_partition,
        action_offset=datum.get("action_offset"),
        approval_ticket=datum.get("approval_ticket"),
        canonical_tool=datum.get("tool") or "",
        canonical_args=dict(datum.get("args") or {}),
    )
