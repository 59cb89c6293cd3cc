"""Who may change policy: the controller's check of one signed ``PolicyChange``.

`authorise_change` is a pure function of (registry, the change's value bytes, its record
headers, the time it is judged at): it reads no log and no clock, so it is unit-testable
and a controller, ``policy history --trust`` and a test judging the same inputs agree.

A change is believed only when all of these hold (docs/identity.md, "Policy changes"):

1. it carries a signature over its exact value bytes, by a key of an active registry
   principal valid at the judging time — the controller's clock, never the change's own
   ``at``, which whoever signs it chooses (`Registry.authenticate`);
2. the signer is the change's ``actor``: the name history shows is the name that signed;
3. the signer holds a role that allows the event (`ROLES_FOR_EVENT`).

Trust-root admins sign registry changes only; they are not registry principals and so
cannot sign policy changes: a publisher is someone the registry names, with a role.

A signature proves who wrote a change, not that it is new: the same signed bytes can be
appended again. `check_order` is the controller's answer (it needs the controller's
state, so it is apart from `authorise_change`): a rollout — ``enforced`` or
``rolled_back`` — must be signed later than the rollout in force on its target, so an
old, validly signed enforce appended again cannot bring back an old bundle
(``stale_change``); and its ``at`` may not lie further ahead of the controller's clock
than the allowed skew (``future_change``), or one change dated in 2100 would make every
later one stale. Every other event is idempotent when replayed: ``published`` of a known
bundle, ``approved``, ``staged`` and ``retired`` change no state.

`RegistryFollower` keeps the controller's registry: ``identity.registry`` folded with the
readers' shared step (`fold_registry_record`, each registry record judged at its own
signed ``at``, as ``identity list`` judges it), brought up to the end of the topic before
the controller judges the changes it has just read — so a principal added or revoked
before a change was appended is known when the change is judged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ordinance.identity.registry import (
    ADMIN_ROLE,
    BAD_SIGNATURE,
    IDENTITY_MISMATCH,
    NOT_AUTHORISED,
    Principal,
    Refusal,
    Registry,
)
from ordinance.identity.registry_log import fold_registry_record
from ordinance.identity.signing import SignatureError, signature_of
from ordinance.identity.trust import TrustRoot
from ordinance.processors.controller import DEFAULT_TARGET
from ordinance.streams.log import Headers, Log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import DEFAULT_PREFIX, IDENTITY_REGISTRY

POLICY_AUTHOR = "policy-author"
POLICY_APPROVER = "policy-approver"
#: A change that is not a decodable PolicyChange (the controller rejects it before this).
UNDECODABLE = "undecodable"
#: A rollout signed no later than the rollout in force on its target (a replay).
STALE_CHANGE = "stale_change"
#: A change dated further ahead of the controller's clock than the allowed skew.
FUTURE_CHANGE = "future_change"
DEFAULT_MAX_SKEW = dt.timedelta(minutes=5)
_ROLLOUTS = frozenset({"enforced", "rolled_back", "canary", "shadow"})

# Authoring and putting in force are separate duties: whoever writes a bundle is not by
# that alone allowed to make agents run it. ``admin`` may act as an approver (it can grant
# itself the role anyway, on the log, where everyone sees it) but does not author.
_APPROVER_ROLES = frozenset({POLICY_APPROVER, ADMIN_ROLE})
ROLES_FOR_EVENT: Mapping[str, frozenset[str]] = {
    "published": frozenset({POLICY_AUTHOR}),
    "reviewed": frozenset({POLICY_AUTHOR, *_APPROVER_ROLES}),
    "approved": _APPROVER_ROLES,
    "staged": _APPROVER_ROLES,
    "canary": _APPROVER_ROLES,
    "shadow": _APPROVER_ROLES,
    "enforced": _APPROVER_ROLES,
    "rolled_back": _APPROVER_ROLES,
    "retired": _APPROVER_ROLES,
}

_serde: Serde | None = None


def _decoder() -> Serde:
    # One schema registry per process, built on first use: the module is imported by
    # commands that never judge a change.
    global _serde
    if _serde is None:
        _serde = Serde()
    return _serde


@dataclass(frozen=True, slots=True)
class Authorised:
    """A change whose signer was proven and allowed: who, with which key."""

    principal: Principal
    key_id: str


def authorise_change(
    registry: Registry, value: bytes, headers: Headers, now: dt.datetime
) -> Authorised | Refusal:
    """Whether the ``PolicyChange`` stored as ``value`` with ``headers`` may take effect
    when judged at ``now``; a `Refusal` carries the identity code and why. Never raises
    for anything the record holds."""
    try:
        signature = signature_of(headers)
    except SignatureError as exc:
        return Refusal(BAD_SIGNATURE, str(exc))
    signer = registry.authenticate(signature, value, now)
    if isinstance(signer, Refusal):
        return signer
    assert signature is not None  # authenticate refuses an unsigned record
    decoded = _decoder().decode(value, expect={"PolicyChange"})
    if not isinstance(decoded, Decoded):
        return Refusal(UNDECODABLE, f"{decoded.problem.value}: {decoded.detail}")
    actor, event = decoded.value["actor"], decoded.value["event"]
    if actor != signer.id:
        return Refusal(
            IDENTITY_MISMATCH, f"the change names actor {actor!r} but is signed by {signer.id!r}"
        )
    allowed = ROLES_FOR_EVENT.get(event, frozenset())
    if not allowed.intersection(signer.roles):
        needed = " or ".join(sorted(allowed)) or "no role (not a known lifecycle event)"
        return Refusal(NOT_AUTHORISED, f"{signer.id} may not sign {event!r}: it needs {needed}")
    return Authorised(signer, signature.key_id)


def check_order(
    rollouts: Mapping[str, Mapping[str, Any]],
    change: Mapping[str, Any],
    offset: int,
    now: dt.datetime,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
) -> Refusal | None:
    """None when ``change`` (at ``offset``) may be applied after the rollouts in force
    (the controller's ``state.rollouts``, by target); else why not (see the module
    docstring). The change that put a rollout in force (its ``change_offset``) passes: a
    controller that wrote its outputs but stopped before committing reads it again."""
    at = change.get("at")
    if not isinstance(at, dt.datetime):
        return None  # not a PolicyChange; apply_change rejects it with its own reason
    if at > now + max_skew:
        return Refusal(
            FUTURE_CHANGE,
            f"the change is dated {at.isoformat()}, more than {max_skew} after the "
            f"controller's clock ({now.isoformat()})",
        )
    if change.get("event") not in _ROLLOUTS:
        return None
    current = rollouts.get(change.get("target") or DEFAULT_TARGET)
    if current is None or current.get("change_offset") == offset:
        return None
    in_force = current.get("updated_at")
    if isinstance(in_force, dt.datetime) and at <= in_force:
        return Refusal(
            STALE_CHANGE,
            f"signed at {at.isoformat()}, not after the rollout in force on "
            f"{current.get('target')!r} (change {current.get('change_offset')}, signed at "
            f"{in_force.isoformat()}): a replayed or out-of-order change",
        )
    return None


@dataclass
class RegistryFollower:
    """``identity.registry`` as the controller knows it: folded from the start, then
    caught up with `refresh` (every record once, in offset order)."""

    registry: Registry
    prefix: str = DEFAULT_PREFIX
    end_offset: int = 0  # one past the last record folded
    refused: int = 0

    @classmethod
    def start(cls, trust: TrustRoot, prefix: str = DEFAULT_PREFIX) -> RegistryFollower:
        return cls(Registry(trust), prefix)

    def refresh(self, log: Log) -> None:
        """Fold the records appended since the last refresh. Raises only `LogError`
        (the log itself), never for a record."""
        serde = _decoder()
        for record in log.read_to_end(self.prefix + IDENTITY_REGISTRY):
            if record.offset < self.end_offset:
                continue
            self.end_offset = record.offset + 1
            if isinstance(fold_registry_record(self.registry, serde, record), Refusal):
                self.refused += 1


def judge_change(
    registry: Registry,
    rollouts: Mapping[str, Mapping[str, Any]],
    value: bytes,
    headers: Headers,
    change: Mapping[str, Any],
    offset: int,
    now: dt.datetime,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
) -> Authorised | Refusal:
    """The controller's whole check of one decoded change: who signed it
    (`authorise_change`), then whether it comes in order (`check_order`)."""
    verdict = authorise_change(registry, value, headers, now)
    if isinstance(verdict, Refusal):
        return verdict
    out_of_order = check_order(rollouts, change, offset, now, max_skew)
    return verdict if out_of_order is None else out_of_order
