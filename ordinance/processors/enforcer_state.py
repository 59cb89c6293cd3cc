"""An enforcer's state for one decisions partition, and the decision for one action —
both deterministic functions of what is on the log.

The state is the fold of ``agent.decisions[p]``: which request ids have a decision
(a re-delivered or re-sent action is not decided twice; an undecodable action's id is its
position, so its redelivery is not decided twice either), the window state (every allowed
decision carries its canonical action and event time), the ruleset in force
(``RulesetSwap`` control records), and the checks the current owner enforces
(``EnforcerTakeover`` records carry them: the partition count and the clock-skew bound).
Nothing here reads a clock or talks to a broker: the enforcer's clock enters as
``evaluated_at``, which the decision records, so replay decides again with the same inputs.

Before any policy runs, an action must be one agent's, exactly (budgets are per agent):
- its agent id is in canonical form (``wire.agent_id_problem``; else ``invalid_request``),
  and that one string is the record key, the partition key, the window key and the
  decision's agent id;
- it is keyed by that id and sits on the partition the id hashes to (else
  ``wrong_partition``: another partition's state would hold a second budget);
- its event time is within the skew bound of the evaluation time (else ``clock_skew``),
  and not older than the partition's dedupe horizon (else ``stale_request``): state older
  than the horizon (plus the longest window) is pruned, and an intent that old is never
  judged, so pruning never lets anything be judged twice (`state_horizon`).

Fencing (`audit.fence`; docs/guarantees.md, "Zombie writers"): the partition belongs to the enforcer of
its latest ``EnforcerTakeover`` record (``owner``). A chained record written by any other
enforcer after that marker comes from a writer that lost the partition without knowing
it (frozen, then resumed: its takeover was superseded) and is *fenced*: not folded (no
request id, no window event, no swap), not part of the chain the owner continues. The
owner decides that request itself, since its state never saw the fenced decision. The
rule is part of the fold, so every reader of the log (a takeover, replay, the audit, the
client) draws the same line.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

from ordinance.identity.registry import Refusal
from ordinance.identity.signing import signature_valid
from ordinance.policy.decision import DENY, INVALID_REQUEST, Decision
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.window import AgentWindows, InMemoryWindows
from ordinance.processors.audit.chain import GENESIS, chain_headers, record_hash
from ordinance.processors.audit.fence import fenced_write
from ordinance.processors.identity_gate import (
    APPROVAL_RECORDED,
    APPROVAL_REFUSED,
    PartitionIdentity,
    Verify,
    answer_signed_approval,
    judge_intent,
    takeover_identity,
)
from ordinance.processors.rollout import (
    CANARY,
    CANARY_ARM,
    CONTROL_ARM,
    SHADOW,
    STABLE,
    in_canary,
    shadow_verdict,
)
from ordinance.processors.state_changes import StateChanges
from ordinance.processors.state_horizon import STALE_REQUEST, Horizon
from ordinance.streams import records
from ordinance.streams.log import Headers
from ordinance.streams.partitioner import partition_for
from ordinance.streams.serde import Decoded, UndecodableRecord
from ordinance.wire import (
    agent_id_problem,
    content_ticket,
    decision_to_wire,
    request_from_wire,
)

UNDECODABLE = "undecodable"  # the action record did not decode
NO_RULESET = "no_ruleset"  # no verified bundle is active for this enforcer's target
WRONG_PARTITION = "wrong_partition"  # not keyed by its agent id, or not on that id's partition
CLOCK_SKEW = "clock_skew"  # event time too far from the enforcer's clock
INTERNAL_ERROR = "internal_error"  # the enforcer failed on the record (a bug): fail-closed
# Codes of the follow-up decision an Approval record causes.
APPROVED = "approved"
APPROVAL_REJECTED = "approval_rejected"
APPROVAL_EXPIRED = "approval_expired"
FOLLOW_UPS = (APPROVED, APPROVAL_REJECTED, APPROVAL_EXPIRED)
# Every record an Approval causes: the follow-ups, and (identity enforced) the records of
# an approval that does not end the request (`identity_gate`).
APPROVAL_ANSWERS = (*FOLLOW_UPS, APPROVAL_RECORDED, APPROVAL_REFUSED)


@dataclass
class PartitionState:
    partition: int
    # request id -> its event time (an undecodable action's: its evaluation time), in
    # arrival order; forgotten from the front past the dedupe horizon (`state_horizon`).
    # An OrderedDict: a plain dict's first key costs a scan over the slots deleted before
    # it, which made pruning quadratic in the ids pruned.
    decided: OrderedDict[str, float] = field(default_factory=OrderedDict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # awaiting approval
    bundle_id: str | None = None
    policy_offset: int | None = None
    # The rollout in force since the last RulesetSwap (`rollout`): a canary or shadow
    # candidate beside the stable ``bundle_id``, or none.
    candidate_bundle_id: str | None = None
    mode: str = STABLE
    canary_percent: int = 0
    canary_seed: str | None = None
    offset: int = -1  # the last decisions offset folded in
    now: float = 0.0  # the event time the window state is asked at
    chain_head: bytes = GENESIS  # chain hash of the last record of the partition (audit)
    # The head before it: a snapshot proves it is of this log by the record at `offset`
    # hashing from this to `chain_head` (`enforcer._matches`).
    prev_chain_head: bytes = GENESIS
    # Set by the owner's EnforcerTakeover record; None on records written before the
    # checks existed (replay then decides as those enforcers did).
    agent_partitions: int | None = None
    max_clock_skew_ms: int | None = None
    target: str | None = None  # the deployment target of the owner's takeover
    # The registry this partition judges identities with (`identity_gate`); None when
    # its owner enforces no identity (no trust root in its takeover).
    identity: PartitionIdentity | None = None
    horizon: Horizon = field(default_factory=Horizon)  # what may be forgotten, and when
    # The enforcer of the latest takeover marker: writes by any other are fenced.
    owner: str | None = None
    fenced: int = 0  # records not folded because they were fenced (`fenced_write`)
    # One past the last agent.actions offset a folded decision answers: where a new owner
    # resumes reading, whatever offset was committed (a decision that was committed but
    # fenced — written after a stale takeover marker — is not in force; its action is
    # read and decided again).
    actions_through: int = 0
    windows: InMemoryWindows = field(init=False)
    # What changed since the state cache last saved this state (`state_changes`); None
    # when no cache holds it. Bookkeeping only: the fold never reads it.
    changes: StateChanges | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # A bound method, not a lambda: the state stays picklable.
        self.windows = InMemoryWindows(clock=self.event_time)

    def event_time(self) -> float:
        return self.now

    def follow(self, key: bytes | None, value: bytes | None) -> None:
        """Advance the chain head over a record read from the partition (any record not
        fenced: the chain covers what cannot be decoded too)."""
        self.prev_chain_head = self.chain_head
        self.chain_head = record_hash(self.chain_head, key, value)

    def fences(self, name: str | None, datum: dict[str, Any]) -> bool:
        """Whether a record read from the partition is fenced (neither followed nor
        folded), given the state before it."""
        return fenced_write(self.owner, name, datum)

    def link(self, key: bytes | None, value: bytes | None) -> Headers:
        """The chain headers of a record this partition's owner writes next."""
        prev = self.chain_head
        self.follow(key, value)
        return chain_headers(prev, self.chain_head)

    def fold(self, name: str, datum: dict[str, Any], offset: int) -> bool:
        """Apply one record of ``agent.decisions[partition]``; False (and nothing applied,
        not even its offset) when it is fenced."""
        if fenced_write(self.owner, name, datum):
            self.fenced += 1
            return False
        if name == "Decision":
            event_time = datum.get("event_time")
            evaluated_at: dt.datetime = datum["evaluated_at"]
            request_id: str = datum["request_id"]
            changes = self.changes
            if changes is not None:
                if request_id in self.decided:
                    changes.ids_updated.add(request_id)
                else:
                    changes.ids_added += 1
            self.decided[request_id] = (event_time or evaluated_at).timestamp()
            action_offset = datum.get("action_offset")
            if action_offset is not None and action_offset >= self.actions_through:
                self.actions_through = action_offset + 1
            if datum["effect"] == "require_approval" and datum.get("approval_ticket"):
                self.pending[request_id] = datum
                if changes is not None:
                    changes.pending.add(request_id)
            elif (
                datum.get("code") in FOLLOW_UPS
                and self.pending.pop(request_id, None) is not None
                and changes is not None
            ):
                changes.pending.add(request_id)
            if datum["effect"] == "allow" and datum.get("tool") and event_time is not None:
                at = event_time.timestamp()
                args = self.windows.record(
                    datum["agent_id"], datum["tool"], datum.get("args") or {}, at
                )
                if changes is not None:
                    changes.window_log.append((at, datum["agent_id"], datum["tool"], args))
            if changes is None:
                self.horizon.on_decision(evaluated_at, self.decided, self.windows)
            else:
                ids, through = len(self.decided), self.windows.pruned_through
                self.horizon.on_decision(evaluated_at, self.decided, self.windows)
                changes.ids_forgotten += ids - len(self.decided)
                if self.windows.pruned_through != through:
                    changes.window_log.append(self.windows.pruned_through)
        elif name == "RulesetSwap":
            self.bundle_id = datum["bundle_id"]
            self.policy_offset = datum["policy_offset"]
            self.candidate_bundle_id = datum.get("candidate_bundle_id")
            self.mode = datum.get("mode") or STABLE
            self.canary_percent = datum.get("canary_percent") or 0
            self.canary_seed = datum.get("canary_seed")
            self.horizon.on_swap(datum)
        elif name == "EnforcerTakeover":
            self.owner = datum.get("enforcer_id")
            self.agent_partitions = datum.get("agent_partitions")
            self.max_clock_skew_ms = datum.get("max_clock_skew_ms")
            self.target = datum.get("target")
            self.horizon.on_takeover(datum)
            self.identity = takeover_identity(self.identity, datum.get("trust_root"))
        elif name == "IdentityUpdate" and self.identity is not None:
            self.identity.fold_update(datum)
        self.offset = offset
        return True


def decide(
    state: PartitionState,
    ruleset: Ruleset | None,
    decoded: Decoded | UndecodableRecord,
    *,
    action_offset: int,
    agent_key: bytes | None,
    enforcer_id: str,
    evaluated_at: dt.datetime,
    value: bytes | None = None,
    headers: Headers = (),
    verify: Verify = signature_valid,
    candidate: Ruleset | None = None,
) -> dict[str, Any] | None:
    """The Decision datum for one action record, or None when its request id already has
    a decision in this partition (redelivery or a re-sent request). Never raises.
    ``value`` and ``headers`` are the action record's: where the partition enforces
    identity, the signature in the headers must cover exactly ``value``. ``candidate``:
    the compiled candidate of the partition's canary or shadow rollout (`rollout`)."""
    if isinstance(decoded, UndecodableRecord):
        # Its position is its request id: a redelivered record is not decided twice.
        return _denied(
            state,
            f"{UNDECODABLE}@{state.partition}:{action_offset}",
            (agent_key or b"").decode(errors="replace"),
            UNDECODABLE,
            f"{decoded.problem.value}: {decoded.detail}",
            enforcer_id=enforcer_id,
            evaluated_at=evaluated_at,
            action_offset=action_offset,
        )
    datum = decoded.value
    if datum["request_id"] in state.decided:
        return None
    event_time: dt.datetime = datum["event_time"]
    agent_id: str = datum["agent"]["id"]
    tool: str = ""
    args: dict[str, Any] = {}
    key_id: str | None = None
    arm: str | None = None
    shadow: records.ShadowVerdictIn | None = None
    refused = refusal(state, agent_id, agent_key, event_time, evaluated_at)
    if refused is None and state.identity is not None:
        verified = judge_intent(state.identity, datum, value, headers, verify, state.target)
        if isinstance(verified, Refusal):
            refused = verified.code, verified.detail
        else:  # decided with the registry's roles and attributes, never the claims
            datum, key_id = verified.datum, verified.key_id
    if refused is not None:
        code, detail = refused
        decision = Decision(DENY, (), (detail,), (), state.bundle_id or "", code, detail)
    else:
        deciding, arm = ruleset, None
        if state.mode == CANARY:
            canary = in_canary(state.canary_seed or "", agent_id, state.canary_percent)
            deciding, arm = (candidate, CANARY_ARM) if canary else (ruleset, CONTROL_ARM)
        wanted = state.candidate_bundle_id if arm == CANARY_ARM else state.bundle_id
        if deciding is None or deciding.bundle_id != wanted:
            detail = "no verified policy bundle is active for this enforcer"
            decision = Decision(DENY, (), (detail,), (), wanted or "", NO_RULESET, detail)
        else:
            state.now = event_time.timestamp()
            request = request_from_wire(datum)
            # The canonical tool and arguments are what the window counters fold; "" and
            # {} for a request that does not fit the schema (nothing to count). The windows
            # are the ones of the agent id the decision is recorded under (and folded under).
            windows = AgentWindows(state.windows, agent_id)
            decision, tool, args = deciding.evaluate_canonical(request, windows)
            if state.mode == SHADOW:
                shadow = _shadow(state, candidate, request, windows)
    wire = decision_to_wire(
        decision,
        request_id=datum["request_id"],
        agent_id=agent_id,
        enforcer_id=enforcer_id,
        evaluated_at=evaluated_at,
        action_offset=action_offset,
        policy_offset=state.policy_offset,
        tool=tool,
        args=args,
        event_time=event_time,
        approval_ticket=content_ticket(datum) if decision.effect == "require_approval" else None,
    )
    wire["key_id"] = key_id
    wire["arm"] = arm
    wire["shadow"] = shadow
    if decision.effect == "require_approval":
        # Recorded with the decision: a later policy swap cannot change what it needs.
        wire["approval_roles"] = list(decision.approval_roles)
        wire["approvals_required"] = decision.approvals_required
    # The same object as the plain dict the enforcer masks, folds and encodes (no copy:
    # this runs once a decision).
    return cast(dict[str, Any], wire)


def internal_error_decision(
    state: PartitionState,
    decoded: Decoded | UndecodableRecord,
    detail: str,
    *,
    action_offset: int,
    agent_key: bytes | None,
    enforcer_id: str,
    evaluated_at: dt.datetime,
) -> dict[str, Any] | None:
    """A deny (``internal_error``) for an action the enforcer failed on — the runtime's
    last answer when a step raised (`runtime`); None when its request id already has a
    decision. Named like ``decide`` would name it, so a re-sent request is not decided
    again."""
    if isinstance(decoded, Decoded):
        request_id, agent_id = decoded.value["request_id"], decoded.value["agent"]["id"]
    else:
        request_id = f"{UNDECODABLE}@{state.partition}:{action_offset}"
        agent_id = (agent_key or b"").decode(errors="replace")
    return _denied(
        state,
        request_id,
        agent_id,
        INTERNAL_ERROR,
        detail,
        enforcer_id=enforcer_id,
        evaluated_at=evaluated_at,
        action_offset=action_offset,
    )


def _denied(
    state: PartitionState,
    request_id: str,
    agent_id: str,
    code: str,
    detail: str,
    *,
    enforcer_id: str,
    evaluated_at: dt.datetime,
    action_offset: int,
) -> dict[str, Any] | None:
    """A deny with ``code`` that no policy was asked about; None for a decided request."""
    if request_id in state.decided:
        return None
    decision = Decision(DENY, (), (detail,), (), state.bundle_id or "", code, detail)
    wire = decision_to_wire(
        decision,
        request_id=request_id,
        agent_id=agent_id,
        enforcer_id=enforcer_id,
        evaluated_at=evaluated_at,
        action_offset=action_offset,
        policy_offset=state.policy_offset,
    )
    # The same object as the plain dict the enforcer masks, folds and encodes (no copy:
    # this runs once a decision).
    return cast(dict[str, Any], wire)


def _shadow(
    state: PartitionState,
    candidate: Ruleset | None,
    request: dict[str, Any],
    windows: AgentWindows,
) -> records.ShadowVerdictIn:
    """The shadow bundle's verdict. Evaluation only reads the windows, so the enforced
    decision is the same with or without it."""
    wanted = state.candidate_bundle_id or ""
    if candidate is None or candidate.bundle_id != wanted:
        detail = "the shadow bundle is not available to this enforcer"
        return shadow_verdict(Decision(DENY, (), (detail,), (), wanted, NO_RULESET, detail))
    return shadow_verdict(candidate.evaluate(request, windows))


def refusal(
    state: PartitionState,
    agent_id: str,
    agent_key: bytes | None,
    event_time: dt.datetime,
    evaluated_at: dt.datetime,
) -> tuple[str, str] | None:
    """(code, detail) when the action is not one agent's to judge here and now; None when
    it is. Only the record and the folded state decide: replay finds the same. No bundle
    changes the answer, so a what-if over another bundle must keep these denies."""
    problem = agent_id_problem(agent_id)
    if problem is not None:
        return INVALID_REQUEST, problem
    partitions = state.agent_partitions
    if partitions is not None:
        if agent_key is None:
            return WRONG_PARTITION, "the action has no key; it must be keyed by its agent id"
        if agent_key != agent_id.encode():
            return (
                WRONG_PARTITION,
                f"the action is keyed {agent_key[:64]!r}, not by its agent id {agent_id!r}",
            )
        home = partition_for(agent_key, partitions)
        if home != state.partition:
            return (
                WRONG_PARTITION,
                f"agent {agent_id!r} belongs on partition {home} of {partitions}, "
                f"not {state.partition}",
            )
    bound_ms = state.max_clock_skew_ms
    if bound_ms is not None:
        skew = event_time - evaluated_at
        if abs(skew) > _milliseconds(bound_ms):
            ahead = "ahead of" if skew > dt.timedelta(0) else "behind"
            return (
                CLOCK_SKEW,
                f"event time {event_time.isoformat()} is {abs(skew).total_seconds():.3f}s "
                f"{ahead} the enforcer's clock ({evaluated_at.isoformat()}); "
                f"the bound is {bound_ms / 1000:g}s",
            )
    stale = state.horizon.stale(event_time)
    if stale is not None:
        return STALE_REQUEST, stale
    return None


@functools.lru_cache(maxsize=16)
def _milliseconds(ms: int) -> dt.timedelta:
    # One bound per enforcer: built once, not per decision (the check is on the hot path).
    return dt.timedelta(milliseconds=ms)


def answer_approval(
    state: PartitionState,
    approval: dict[str, Any],
    *,
    enforcer_id: str,
    evaluated_at: dt.datetime,
    value: bytes | None = None,
    headers: Headers = (),
) -> dict[str, Any] | None:
    """The follow-up decision an Approval causes, or None when it answers nothing pending
    here (unknown or already answered request, or a ticket for different content). Where
    the partition enforces identity, the approval must be signed (``value``/``headers``
    are its record's) and the answer may be a record that does not end the request
    (`identity_gate.answer_signed_approval`)."""
    original = state.pending.get(approval["request_id"])
    if original is None or approval.get("ticket") != original["approval_ticket"]:
        return None
    if state.identity is not None:
        return answer_signed_approval(
            state.identity,
            original,
            approval,
            value,
            headers,
            enforcer_id=enforcer_id,
            evaluated_at=evaluated_at,
            expired=APPROVAL_EXPIRED,
            approved=APPROVED,
            rejected=APPROVAL_REJECTED,
        )
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
