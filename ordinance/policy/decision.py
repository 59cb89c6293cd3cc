"""The answer to a request: effect, why, and under which bundle."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Effect(StrEnum):
    """What a decision says. A `StrEnum`: on the wire (Avro strings, JSON) and in every
    comparison it is its value, so records written before the enum read the same."""

    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"


ALLOW, DENY, REQUIRE_APPROVAL = Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL

# Machine-readable reason codes: monitoring and the audit trail key on these.
MATCHED = "matched"  # determined by the rules listed in rule_ids
DEFAULT = "default"  # no rule applied; the configured default effect
UNKNOWN_TOOL = "unknown_tool"  # the tool is not in the schema
INVALID_REQUEST = "invalid_request"  # the request does not fit the schema
EVALUATION_ERROR = "evaluation_error"  # a rule could not be evaluated (e.g. missing attribute)
# Several require_approval rules applied and no one role set satisfies them all: deny.
APPROVAL_CONFLICT = "approval_conflict"


@dataclass(frozen=True, slots=True)
class Decision:
    effect: str
    rule_ids: tuple[str, ...]  # "policy-id/rule-id" of every rule that determined the effect
    reasons: tuple[str, ...]
    obligations: tuple[Any, ...]
    bundle_id: str
    code: str = MATCHED
    detail: str = ""
    # On require_approval only: an approver must hold one of these registry roles (empty:
    # any principal other than the agent), and this many distinct approvers must approve.
    approval_roles: tuple[str, ...] = ()
    approvals_required: int | None = None

    @property
    def allowed(self) -> bool:
        return self.effect == ALLOW

    def to_json(self) -> dict[str, Any]:
        return {
            "effect": self.effect,
            "code": self.code,
            "rule_ids": list(self.rule_ids),
            "reasons": list(self.reasons),
            "obligations": list(self.obligations),
            "bundle_id": self.bundle_id,
            "detail": self.detail,
            "approval_roles": list(self.approval_roles),
            "approvals_required": self.approvals_required,
        }
