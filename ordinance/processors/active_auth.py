"""Who wrote ``policy.active``: with a trust root, only the controller is believed.

``policy.active`` is the table every enforcer obeys: an ``ActiveRollout`` there names the
bundles a target runs. Anyone able to append to the log could otherwise write one naming
any bundle — or append again an old, genuine one — and every enforcer would swap to it.
So where identities are verified (a trust root), the controller signs each record it
writes there (the headers of `ordinance.identity.signing`, over the exact value bytes)
as a registry principal holding `CONTROLLER_ROLE`, and its readers — the enforcers, and
the controller itself when it rebuilds its state from the table — believe a record only
when `authorise_active_record` accepts it:

1. signed over its value by a key of an active registry principal, the key valid at the
   record's log timestamp (the time the controller wrote it: a rotated-out controller key
   does not void the table it signed while valid; a revoked or suspended controller does);
2. that principal holds `CONTROLLER_ROLE` (authors and approvers sign *changes*, which the
   controller judges; none of them may write the outcome directly).

A signature proves who wrote a record, not that it is current. `ActiveGuard` adds the
order rule for ``ActiveRollout``: its ``change_offset`` (the ``policy.changes`` offset of
the change that produced it, increasing with every rollout) may not go below the one
already believed for its target — an old signed rollout appended again is refused
(`STALE_ROLLOUT`). A rollback is no exception to need: it is a new change with a new,
higher offset. After compaction a fresh reader may see only a replayed record; the
enforcer's partitions then hold the offset of the rollout they last swapped to (their
``RulesetSwap.policy_offset``) and refuse to swap backwards (`Enforcer`).

A refused record is kept (the latest per key) and judged again when the registry grows:
a controller registered a moment after it wrote its first record is believed then. The
registry is read again at most once per batch of records and once per `RETRY_INTERVAL_S`
while records wait, so a flood of forged records costs one registry read, not one each.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ordinance.identity.registry import BAD_SIGNATURE, NOT_AUTHORISED, Principal, Refusal, Registry
from ordinance.identity.signing import SignatureError, signature_of
from ordinance.processors.change_auth import RegistryFollower
from ordinance.processors.controller import bundle_key, target_key
from ordinance.streams.log import ConsumedRecord, Consumer, Log
from ordinance.streams.serde import Decoded, Serde

#: The registry role of the service that writes ``policy.active`` (``serve
#: --controller-key``, ``controller --key``).
CONTROLLER_ROLE = "policy-controller"
#: An ActiveRollout older (by its change offset) than one already believed for its target.
STALE_ROLLOUT = "stale_rollout"
#: How often refused records waiting for the registry are judged again.
RETRY_INTERVAL_S = 2.0


def authorise_active_record(registry: Registry, record: ConsumedRecord) -> Principal | Refusal:
    """The controller principal that signed ``record`` of ``policy.active``, or why the
    record is not to be believed. Never raises for anything the record holds."""
    try:
        signature = signature_of(record.headers)
    except SignatureError as exc:
        return Refusal(BAD_SIGNATURE, str(exc))
    at = dt.datetime.fromtimestamp(record.timestamp_ms / 1000, dt.UTC)
    signer = registry.authenticate(signature, bytes(record.value or b""), at)
    if isinstance(signer, Refusal):
        return signer
    if not signer.has_role(CONTROLLER_ROLE):
        return Refusal(
            NOT_AUTHORISED,
            f"{signer.id} may not write policy.active: it needs the {CONTROLLER_ROLE} role",
        )
    return signer


@dataclass
class ActiveGuard:
    """A reader's judge of ``policy.active`` records (see the module docstring): the
    registry as of the last refresh, and the refused records to judge again."""

    log: Log
    follower: RegistryFollower
    pending: dict[bytes, ConsumedRecord] = field(default_factory=dict)  # key -> latest refused
    monotonic: Callable[[], float] = time.monotonic
    _judged_at_registry: int = -1  # the follower's end offset when `pending` was last judged
    _fresh: bool = False  # the registry was read during this batch
    _retried_at: float = float("-inf")

    def new_batch(self) -> None:
        """Records read from here on may be judged against a registry read once more."""
        self._fresh = False

    def judge(self, record: ConsumedRecord) -> Refusal | None:
        """None when ``record`` is the controller's; else the refusal, and the record is
        kept to be judged again once the registry has grown (`retry`)."""
        verdict = authorise_active_record(self.follower.registry, record)
        if isinstance(verdict, Refusal) and not self._fresh:
            # The registry may lag the controller's first records: read it once more.
            self.follower.refresh(self.log)
            self._fresh = True
            verdict = authorise_active_record(self.follower.registry, record)
        key = record.key or b""
        if isinstance(verdict, Refusal):
            self.pending[key] = record
            self._judged_at_registry = self.follower.end_offset
            return verdict
        self.pending.pop(key, None)
        return None

    def retry(self) -> list[ConsumedRecord]:
        """The refused records the registry now vouches for (offset order), once it has
        grown since they were judged; they leave `pending`."""
        now = self.monotonic()
        if not self.pending or now - self._retried_at < RETRY_INTERVAL_S:
            return []
        self._retried_at = now
        self.follower.refresh(self.log)
        if self.follower.end_offset == self._judged_at_registry:
            return []
        self._judged_at_registry = self.follower.end_offset
        accepted = [
            r
            for r in sorted(self.pending.values(), key=lambda r: r.offset)
            if not isinstance(authorise_active_record(self.follower.registry, r), Refusal)
        ]
        for record in accepted:
            self.pending.pop(record.key or b"", None)
        return accepted


@dataclass
class ActiveTable:
    """``policy.active`` read incrementally: rollouts per target, bundle files by id.
    With a ``guard`` (a trust root) only the controller's signed records are believed, and
    a target's rollout never goes back to an older change."""

    reader: Consumer
    serde: Serde
    guard: ActiveGuard | None = None
    progress: Callable[[str], None] = lambda _message: None
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    bundles: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def refresh(self) -> None:
        if self.guard is not None:
            self.guard.new_batch()
            for record in self.guard.retry():  # now vouched for by a grown registry
                self._take(record)
        while records := self.reader.poll(max_records=500, timeout=0.0):
            for record in records:
                refusal = self.guard.judge(record) if self.guard is not None else None
                if refusal is None:
                    self._take(record)
                else:
                    self._refuse(record, f"{refusal.code}: {refusal.detail}")

    def _refuse(self, record: ConsumedRecord, why: str) -> None:
        self.progress(f"policy.active offset {record.offset} refused: {why}")

    def _take(self, record: ConsumedRecord) -> None:
        decoded = self.serde.decode_record(record, expect={"ActiveRollout", "PolicyBundle"})
        if not isinstance(decoded, Decoded) or record.key is None:
            return  # the controller writes only these; anything else is not ours to trust
        key = record.key.decode(errors="replace")
        value = decoded.value
        if decoded.name == "ActiveRollout" and key == target_key(value["target"]).decode():
            believed = self.rollouts.get(value["target"])
            if (
                self.guard is not None
                and believed is not None
                and value["change_offset"] < believed["change_offset"]
            ):
                self._refuse(
                    record,
                    f"{STALE_ROLLOUT}: change {value['change_offset']} is older than change "
                    f"{believed['change_offset']} in force on {value['target']!r}",
                )
                return
            self.rollouts[value["target"]] = value
        elif decoded.name == "PolicyBundle" and key == bundle_key(value["bundle_id"]).decode():
            self.bundles[value["bundle_id"]] = value["files"]
