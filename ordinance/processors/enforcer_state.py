"""An enforcer's state for one decisions partition, and the decision for one action —
both deterministic functions of what is on the log.

The state is the fold of ``agent.decisions[p]``: which request ids have a decision
(a re-delivered or re-sent action is not decided twice), the window state (every allowed
decision carries its canonical action and event time), and the ruleset in force
(``RulesetSwap`` control records). Nothing here reads a clock or talks to a broker.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ordinance.policy.decision import DENY, Decision
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.window import InMemoryWindows
from ordinance.processors.audit.chain import GENESIS, chain_headers, record_hash
from ordinance.processors.wire import content_ticket, decision_to_wire, request_from_wire
from ordinance.streams.log import Headers
from ordinance.streams.serde import Decoded, UndecodableRecord

UNDECODABLE = "undecodable"  # the action record did not decode
NO_RULESET = "no_ruleset"  # no verified bundle is active for this enforcer's target
# Codes of the follow-up decision an Approval record causes.
APPROVED = "approved"
APPROVAL_REJECTED = "approval_rejected"
APPROVAL_EXPIRED = "approval_expired"
FOLLOW_UPS = (APPROVED, APPROVAL_REJECTED, APPROVAL_EXPIRED)


@dataclass
class PartitionState:
    partition: int
    decided: set[str] = field(default_factory=set)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # awaiting approval
    bundle_id: str | None = None
    policy_offset: int | None = None
    offset: int = -1  # the last decisions offset folded in
    now: float = 0.0  # the event time the window state is asked at
    chain_head: bytes = GENESIS  # chain hash of the last record of the partition (audit)
    windows: InMemoryWindows = field(init=False)

    def __post_init__(self) -> None:
        # A bound method, not a lambda: the state is pickled into the RocksDB cache.
        self.windows = InMemoryWindows(clock=self.event_time)

    def event_time(self) -> float:
        return self.now

    def follow(self, key: bytes | None, value: bytes | None) -> None:
        """Advance the chain head over a record read from the partition (any record:
        the chain covers what cannot be decoded too)."""
        self.chain_head = record_hash(self.chain_head, key, value)

    def link(self, key: bytes | None, value: bytes | None) -> Headers:
        """The chain headers of a record this partition's owner writes next."""
        prev = self.chain_head
        self.follow(key, value)
        return chain_headers(prev, self.chain_head)

    def fold(self, name: str, datum: dict[str, Any], offset: int) -> None:
        """Apply one record of ``agent.decisions[partition]``."""
        if name == "Decision":
            self.decided.add(datum["request_id"])
            if datum["effect"] == "require_approval" and datum.get("approval_ticket"):
                self.pending[datum["request_id"]] = datum
            elif datum.get("code") in FOLLOW_UPS:
                self.pending.pop(datum["request_id"], None)
            event_time = datum.get("event_time")
            if datum["effect"] == "allow" and datum.get("tool") and event_time is not None:
                self.windows.record(
                    datum["agent_id"],
                    datum["tool"],
                    datum.get("args") or {},
                    event_time.timestamp(),
                )
        elif name == "RulesetSwap":
            self.bundle_id = datum["bundle_id"]
            self.policy_offset = datum["policy_offset"]
        self.offset = offset


def decide(
    state: PartitionState,
    ruleset: Ruleset | None,
    decoded: Decoded | UndecodableRecord,
    *,
    action_offset: int,
    agent_key: bytes | None,
    enforcer_id: str,
    evaluated_at: dt.datetime,
) -> dict[str, Any] | None:
    """The Decision datum for one action record, or None when its request id already has
    a decision in this partition (redelivery or a re-sent request). Never raises."""
    if isinstance(decoded, UndecodableRecord):
        detail = f"{decoded.problem.value}: {decoded.detail}"
        decision = Decision(DENY, (), (detail,), (), state.bundle_id or "", UNDECODABLE, detail)
        return decision_to_wire(
            decision,
            request_id=f"{UNDECODABLE}@{state.partition}:{action_offset}",
            agent_id=(agent_key or b"").decode(errors="replace"),
            enforcer_id=enforcer_id,
            evaluated_at=evaluated_at,
            action_offset=action_offset,
            policy_offset=state.policy_offset,
        )
    datum = decoded.value
    if datum["request_id"] in state.decided:
        return None
    event_time: dt.datetime = datum["event_time"]
    request = request_from_wire(datum)
    tool: str = ""
    args: dict[str, Any] = {}
    if ruleset is None or ruleset.bundle_id != state.bundle_id:
        detail = "no verified policy bundle is active for this enforcer"
        decision = Decision(DENY, (), (detail,), (), state.bundle_id or "", NO_RULESET, detail)
    else:
        state.now = event_time.timestamp()
        # The canonical tool and arguments are what the window counters fold; "" and {}
        # for a request that does not fit the schema (nothing to count).
        decision, tool, args = ruleset.evaluate_canonical(request, state.windows)
    return decision_to_wire(
        decision,
        request_id=datum["request_id"],
        agent_id=datum["agent"]["id"],
        enforcer_id=enforcer_id,
        evaluated_at=evaluated_at,
        action_offset=action_offset,
        policy_offset=state.policy_offset,
        tool=tool,
        args=args,
        event_time=event_time,
        approval_ticket=content_ticket(datum) if decision.effect == "require_approval" else None,
    )


def answer_approval(
    state: PartitionState, approval: dict[str, Any], *, enforcer_id: str, evaluated_at: dt.datetime
) -> dict[str, Any] | None:
    """The follow-up decision an Approval causes, or None when it answers nothing pending
    here (unknown or already answered request, or a ticket for different content)."""
    original = state.pending.get(approval["request_id"])
    if original is None or approval.get("ticket") != original["approval_ticket"]:
        return None
    approver = approval["approver"]
    expires_at = approval.get("expires_at")
    if expires_at is not None and evaluated_at > expires_at:
        effect, code, reason = (
            "deny",
            APPROVAL_EXPIRED,
            f"approval by {approver} expired at {expires_at.isoformat()}",
        )
    elif approval["verdict"] == "approved":
        effect, code, reason = "allow", APPROVED, f"approved by {approver}"
    else:
        effect, code, reason = "deny", APPROVAL_REJECTED, f"rejected by {approver}"
    if approval.get("reason"):
        reason += f": {approval['reason']}"
    follow_up = dict(original)
    follow_up.update(
        effect=effect,
        code=code,
        reasons=[*original["reasons"], reason],
        detail=reason,
        enforcer_id=enforcer_id,
        evaluated_at=evaluated_at,
        # An approved action counts toward budgets from when it was approved.
        event_time=approval["at"] if effect == "allow" else original["event_time"],
        approval_ticket=original["approval_ticket"],
        prev_hash=None,
        hash=None,
    )
    return follow_up
