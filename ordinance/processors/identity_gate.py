"""Verified identities at the enforcer (issue 12, docs/identity.md): the registry a
decisions partition judges with, signed intents, signed approvals.

A partition enforces identity when its owner's ``EnforcerTakeover`` carries a trust root.
From there its registry is a fold of the decisions partition itself: the takeover's trust
root, then every ``IdentityUpdate`` control record, each carrying a signed
``identity.registry`` record that is judged again here with the registry's own rules
(`Registry.apply`) at the time the update names — never installed because the control
record says so. The enforcer tails ``identity.registry`` (`RegistryTail`) and writes an
update into each partition it owns when the registry's fold, judged at the enforcer's
clock, installs a record; the change takes effect at that one decisions offset, and
replay, folding the same records, judges with exactly the registry the enforcer had.

Why the enforcer's clock and not the record's ``at``: a registry change signed with a
rotated-out admin key and back-dated into the key's old window would be installed by a
reader judging at ``at``; judged at the enforcer's clock it is ``key_not_valid``. The time
is recorded in the update, so the fold stays deterministic. A record refused at the
enforcer leaves no update; an enforcer taking the partition over later judges it again.

An intent (`judge_intent`) must be signed by a key of the agent it names, valid at its
event time (the enforcer bounds event time to its clock); its decision is made with the
registry's roles and attributes. A request may leave ``roles``/``attributes`` empty, or
claim exactly the registry's; a different claim is ``identity_mismatch``.

An approval (`answer_signed_approval`) must be signed by an active principal other than
the agent, holding one of the pending decision's ``approval_roles`` when it names any,
and naming itself as the approver. ``approvals_required`` distinct approvers are needed
before the allow; a rejection by an authorised approver ends the request. Every answer
that changes nothing final is still a record, so it is auditable: an accepted approval
short of the count is a ``require_approval`` record with code ``approval_recorded`` and
the approvers so far; a refused one is a ``require_approval`` record with code
``approval_refused`` and a detail starting with the refusal code (``not_authorised: ...``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ordinance.identity.http_signing import (
    BODY_MISMATCH,
    approval_body_problem,
    approval_body_valid,
    intent_body_problem,
    intent_body_valid,
    signed_body,
)
from ordinance.identity.records import IDENTITY_RECORD
from ordinance.identity.registry import (
    BAD_SIGNATURE,
    IDENTITY_MISMATCH,
    KEY_NOT_VALID,
    NOT_AUTHORISED,
    UNSIGNED,
    Principal,
    Refusal,
    Registry,
)
from ordinance.identity.registry_log import fold_registry_record
from ordinance.identity.signing import (
    Signature,
    SignatureError,
    signature_of,
    signature_valid,
)
from ordinance.identity.trust import TrustRoot
from ordinance.policy.decision import Effect
from ordinance.streams import Consumer
from ordinance.streams.log import ConsumedRecord, Headers
from ordinance.streams.serde import Decoded, Serde

# Deny codes of an intent that does not come from the agent it names.
UNKNOWN_AGENT = "unknown_agent"
AGENT_SUSPENDED = "agent_suspended"
AGENT_REVOKED = "agent_revoked"
#: The registry assigns the agent to another deployment target than the enforcer's.
WRONG_TARGET = "wrong_target"
#: The registry attribute that assigns an agent to a target (a name, or a list of names).
TARGET_ATTRIBUTE = "target"
INTENT_CODES = (
    UNSIGNED,
    BAD_SIGNATURE,
    UNKNOWN_AGENT,
    AGENT_SUSPENDED,
    AGENT_REVOKED,
    KEY_NOT_VALID,
    IDENTITY_MISMATCH,
    BODY_MISMATCH,
    WRONG_TARGET,
)
# Codes of the records a signed approval causes that do not end the request.
APPROVAL_RECORDED = "approval_recorded"
APPROVAL_REFUSED = "approval_refused"

_SERDE = Serde()
#: How a signature is checked: `signature_valid`, or a `PreVerifier`'s answer.
Verify = Callable[[Ed25519PublicKey, bytes, bytes], bool]


@dataclass
class PartitionIdentity:
    """The registry of one decisions partition: trust root from the owner's takeover,
    then the ``IdentityUpdate`` records folded in offset order."""

    trust: TrustRoot
    registry: Registry = field(init=False)
    registry_offset: int = -1  # the last identity.registry offset an update carried
    # What was installed, in order: the state is pickled (RocksDB cache) as these and
    # re-folded, because public key objects do not pickle.
    installed: list[tuple[bytes, Signature, dict[str, Any], dt.datetime]] = field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        self.registry = Registry(self.trust)

    def fold_update(self, datum: dict[str, Any]) -> Principal | Refusal:
        """Apply one IdentityUpdate: its record judged again, at the update's time."""
        self.registry_offset = max(self.registry_offset, datum["registry_offset"])
        value: bytes = datum["record"]
        decoded = _SERDE.decode(value)
        if not isinstance(decoded, Decoded) or decoded.name != IDENTITY_RECORD:
            return Refusal("undecodable", "the update does not carry an IdentityRecord")
        record = decoded.value
        if record["principal_id"] != datum["principal_id"]:
            return Refusal(BAD_SIGNATURE, "the update names another principal than its record")
        signature = Signature(datum["signer_id"], datum["key_id"], datum["signature"])
        result = self.registry.apply(value, signature, record, at=datum["at"])
        if isinstance(result, Principal):
            self.installed.append((value, signature, record, datum["at"]))
        return result

    def __getstate__(self) -> dict[str, Any]:
        return {
            "trust": self.trust.to_wire(),
            "registry_offset": self.registry_offset,
            "installed": self.installed,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.trust = TrustRoot.from_wire(state["trust"])
        self.registry = Registry(self.trust)
        self.registry_offset = state["registry_offset"]
        self.installed = state["installed"]
        for value, signature, record, at in self.installed:
            self.registry.apply(value, signature, record, at=at)


def takeover_identity(
    current: PartitionIdentity | None, trust_root: list[dict[str, Any]] | None
) -> PartitionIdentity | None:
    """The identity state after an EnforcerTakeover: none without a trust root; the same
    registry when the trust root is unchanged; else a fresh one (the new owner then
    writes updates for the whole registry again)."""
    if trust_root is None:
        return None
    try:
        trust = TrustRoot.from_wire(trust_root)
    except ValueError:
        trust = TrustRoot(())  # an unusable root trusts nobody: every intent is denied
    if current is not None and current.trust.fingerprint() == trust.fingerprint():
        return current
    return PartitionIdentity(trust)


@dataclass(frozen=True, slots=True)
class VerifiedIntent:
    """An intent that comes from the agent it names: the datum to evaluate (the
    registry's roles and attributes) and the key that signed it."""

    datum: dict[str, Any]
    key_id: str


def judge_intent(
    identity: PartitionIdentity,
    datum: dict[str, Any],
    value: bytes | None,
    headers: Headers,
    verify: Verify = signature_valid,
    target: str | None = None,
) -> VerifiedIntent | Refusal:
    """Whether an ActionRequest was signed by the agent it names with a key valid at its
    event time, and claims no roles or attributes other than the registry's; and, for
    the enforcer of ``target``, whether the registry lets that target decide for the
    agent (its ``target`` attribute, when it has one, names it)."""
    agent = datum["agent"]
    agent_id: str = agent["id"]
    try:
        signature = signature_of(headers)
        body = signed_body(headers)  # signed over HTTP (ordinance.identity.http_signing)
    except SignatureError as exc:
        return Refusal(BAD_SIGNATURE, str(exc))
    if signature is None or value is None:
        return Refusal(UNSIGNED, "the intent carries no signature")
    principal = identity.registry.get(agent_id)
    if principal is None:
        return Refusal(UNKNOWN_AGENT, f"agent {agent_id!r} is not in the identity registry")
    if principal.status == "suspended":
        return Refusal(AGENT_SUSPENDED, f"agent {agent_id!r} is suspended")
    if principal.status != "active":
        return Refusal(AGENT_REVOKED, f"agent {agent_id!r} is revoked")
    if signature.signer_id != agent_id:
        return Refusal(
            IDENTITY_MISMATCH,
            f"the intent of agent {agent_id!r} is signed by {signature.signer_id[:256]!r}",
        )
    at: dt.datetime = datum["event_time"]
    key = principal.key(signature.key_id)
    if key is None:
        return Refusal(KEY_NOT_VALID, f"key {signature.key_id[:64]} is not a key of {agent_id!r}")
    if not key.valid_at(at):
        return Refusal(
            KEY_NOT_VALID, f"key {key.key_id} of {agent_id!r} is not valid at {at.isoformat()}"
        )
    if body is None:
        valid = verify(key.public, value, signature.signature)
    else:  # the agent signed the HTTP body; the record must be exactly what it says
        valid = intent_body_valid(key.public, body, signature.signature)
    if not valid:
        return Refusal(BAD_SIGNATURE, f"the signature does not verify with key {key.key_id}")
    if body is not None:
        problem = intent_body_problem(datum, body)
        if problem is not None:
            return Refusal(BODY_MISMATCH, problem)
    roles = agent.get("roles") or []
    if roles and sorted(set(roles)) != sorted(set(principal.roles)):
        return Refusal(
            IDENTITY_MISMATCH,
            f"the intent claims roles {sorted(set(roles))}; the registry gives "
            f"{agent_id!r} {sorted(set(principal.roles))}",
        )
    attributes = agent.get("attributes") or {}
    if attributes and attributes != dict(principal.attributes):
        differing = sorted(
            k
            for k in attributes.keys() | principal.attributes.keys()
            if attributes.get(k) != principal.attributes.get(k)
        )
        return Refusal(
            IDENTITY_MISMATCH,
            f"the intent claims attributes the registry does not give {agent_id!r}: "
            + ", ".join(differing[:8]),
        )
    assigned = principal.attributes.get(TARGET_ATTRIBUTE)
    if target is not None and assigned is not None:
        targets = assigned if isinstance(assigned, list) else [assigned]
        if target not in targets:
            # Environments never mix: a staging agent pointed at prod's topics is not
            # judged by prod's bundle (docs/lifecycle.md, "Targets").
            return Refusal(
                WRONG_TARGET,
                f"the registry assigns agent {agent_id!r} to target(s) "
                f"{', '.join(map(str, targets))[:256]}; this enforcer serves {target!r}",
            )
    effective = dict(datum)
    effective["agent"] = {
        "id": agent_id,
        "roles": list(principal.roles),
        "attributes": dict(principal.attributes),
    }
    return VerifiedIntent(effective, key.key_id)


def judge_approver(
    identity: PartitionIdentity,
    original: dict[str, Any],
    approval: dict[str, Any],
    value: bytes | None,
    headers: Headers,
    at: dt.datetime,
) -> Principal | Refusal:
    """The principal who may answer ``original`` with this signed approval, or why not."""
    try:
        signature = signature_of(headers)
        body = signed_body(headers)  # signed over HTTP (ordinance.identity.http_signing)
    except SignatureError as exc:
        return Refusal(BAD_SIGNATURE, str(exc))
    if value is None:
        signature = None
    if body is None:
        signer = identity.registry.authenticate(signature, value or b"", at)
    else:
        signer = identity.registry.authenticate(signature, body, at, verify=approval_body_valid)
    if isinstance(signer, Refusal):
        return signer
    if body is not None:
        problem = approval_body_problem(approval, body)
        if problem is not None:
            return Refusal(BODY_MISMATCH, problem)
    if signer.id == original["agent_id"]:
        return Refusal(NOT_AUTHORISED, f"{signer.id} cannot approve its own request")
    if approval["approver"] != signer.id:
        return Refusal(
            IDENTITY_MISMATCH,
            f"the approval names {approval['approver'][:256]!r} but is signed by {signer.id}",
        )
    roles = original.get("approval_roles") or []
    if roles and not any(signer.has_role(role) for role in roles):
        return Refusal(
            NOT_AUTHORISED, f"{signer.id} holds none of the approver roles {', '.join(roles)}"
        )
    return signer


def answer_signed_approval(
    identity: PartitionIdentity,
    original: dict[str, Any],
    approval: dict[str, Any],
    value: bytes | None,
    headers: Headers,
    *,
    enforcer_id: str,
    evaluated_at: dt.datetime,
    expired: str,
    approved: str,
    rejected: str,
) -> dict[str, Any] | None:
    """The record a signed approval of the pending ``original`` causes (its ticket
    already matched), or None when it changes nothing (the same approver again)."""
    approvers: list[str] = list(original.get("approvers") or [])
    signer = judge_approver(identity, original, approval, value, headers, evaluated_at)
    if isinstance(signer, Refusal):
        claimed = str(approval.get("approver", ""))[:256]
        detail = f"{signer.code}: approval by {claimed!r} refused: {signer.detail}"
        return _record(
            original,
            Effect.REQUIRE_APPROVAL,
            APPROVAL_REFUSED,
            detail,
            enforcer_id,
            evaluated_at,
            approvers,
            original["event_time"],
            keep_reasons=True,
        )
    if signer.id in approvers:
        return None
    approvers.append(signer.id)
    expires_at = approval.get("expires_at")
    required = max(1, original.get("approvals_required") or 1)
    if expires_at is not None and evaluated_at > expires_at:
        effect, code = Effect.DENY, expired
        reason = f"approval by {signer.id} expired at {expires_at.isoformat()}"
    elif approval["verdict"] != "approved":
        effect, code, reason = Effect.DENY, rejected, f"rejected by {signer.id}"
    elif len(approvers) < required:
        effect, code = Effect.REQUIRE_APPROVAL, APPROVAL_RECORDED
        reason = f"approved by {signer.id} ({len(approvers)} of {required})"
    else:
        effect, code, reason = Effect.ALLOW, approved, "approved by " + ", ".join(approvers)
    if approval.get("reason"):
        reason += f": {approval['reason']}"
    # An approved action counts toward budgets from when it was approved.
    event_time = approval["at"] if effect == Effect.ALLOW else original["event_time"]
    return _record(original, effect, code, reason, enforcer_id, evaluated_at, approvers, event_time)


def _record(
    original: dict[str, Any],
    effect: str,
    code: str,
    reason: str,
    enforcer_id: str,
    evaluated_at: dt.datetime,
    approvers: list[str],
    event_time: dt.datetime,
    *,
    keep_reasons: bool = False,
) -> dict[str, Any]:
    datum = dict(original)
    datum.update(
        effect=str(effect),  # exact str: the generated encoder's fast path
        code=code,
        reasons=list(original["reasons"]) if keep_reasons else [*original["reasons"], reason],
        detail=reason,
        enforcer_id=enforcer_id,
        evaluated_at=evaluated_at,
        event_time=event_time,
        approvers=approvers,
        prev_hash=None,
        hash=None,
    )
    return datum


class RegistryTail:
    """The enforcer's view of ``identity.registry``: records read so far, and which of
    them each owned partition has been brought up to (`updates_for`)."""

    def __init__(self, reader: Consumer, registry_partition: int = 0) -> None:
        self.reader = reader
        self.registry_partition = registry_partition
        self.records: list[ConsumedRecord] = []
        self.scanned: dict[int, int] = {}  # decisions partition -> last registry offset judged

    def refresh(self) -> None:
        while batch := self.reader.poll(max_records=500, timeout=0.0):
            self.records.extend(batch)

    def forget(self, partition: int) -> None:
        self.scanned.pop(partition, None)

    def updates_for(
        self, partition: int, identity: PartitionIdentity, *, enforcer_id: str, at: dt.datetime
    ) -> list[dict[str, Any]]:
        """IdentityUpdate datums for the registry records this partition has not judged
        yet and the registry installs at ``at``, in offset order. The caller writes and
        folds each before deciding anything else on the partition."""
        start = max(self.scanned.get(partition, -1), identity.registry_offset)
        if not self.records or self.records[-1].offset <= start:
            return []
        trial = Registry(identity.trust, dict(identity.registry.principals))
        updates = []
        for record in self.records:
            if record.offset <= start:
                continue
            self.scanned[partition] = record.offset
            result = fold_registry_record(trial, _SERDE, record, at=at)
            if isinstance(result, Refusal):
                continue
            signature = signature_of(record.headers)
            assert signature is not None and record.value is not None  # it was installed
            updates.append(
                {
                    "enforcer_id": enforcer_id,
                    "partition": partition,
                    "principal_id": result.id,
                    "registry_partition": self.registry_partition,
                    "registry_offset": record.offset,
                    "record": bytes(record.value),
                    "signer_id": signature.signer_id,
                    "key_id": signature.key_id,
                    "signature": signature.signature,
                    "at": at,
                    "prev_hash": None,
                    "hash": None,
                }
            )
        return updates
