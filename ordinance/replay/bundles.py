"""Bundles and the policy lifecycle as the log holds them.

A decision names its bundle by id; replay compiles the content the log stores under that
id — ``policy.active``'s ``bundle:<id>`` record (what the enforcer compiled), else the
``published`` event on ``policy.changes``. Content that does not hash to its id, two
stored copies that differ, a bundle that is missing or does not compile: each is a
bundle-level finding. Replay still evaluates with stored content whose id differs (the
question is then which decisions that content would have changed), where the enforcer
refuses such a bundle outright.

``policy at T`` folds ``policy.changes`` with the controller's own ``apply_change`` —
the same validation, the same rollout table — over the events with event time <= T.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ordinance.policy.bundle import compile_bundle
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.ruleset import Ruleset
from ordinance.processors.controller import (
    DEFAULT_TARGET,
    ROLLOUT_EVENTS,
    ControllerState,
    Rejected,
    apply_change,
    bundle_key,
    next_rollout,
    target_key,
)
from ordinance.replay.source import Source
from ordinance.streams.serde import Decoded, Serde


@dataclass(frozen=True, slots=True)
class Change:
    """One lifecycle event on ``policy.changes`` and what the controller made of it."""

    offset: int
    datum: dict[str, Any]
    rejected: str | None  # the controller's reason, from monitor.alerts

    @property
    def at(self) -> dt.datetime:
        at: dt.datetime = self.datum["at"]
        return at


@dataclass
class BundleProblem:
    bundle_id: str
    kind: str  # missing | does_not_compile | content_mismatch | copies_differ
    message: str

    def to_json(self) -> dict[str, str]:
        return {"bundle_id": self.bundle_id, "kind": self.kind, "message": self.message}


def files_of(stored: list[dict[str, str]]) -> dict[str, str]:
    return {f["path"]: f["content"] for f in stored}


@dataclass
class BundleStore:
    changes: list[Change] = field(default_factory=list)
    active_copies: dict[str, dict[str, str]] = field(default_factory=dict)
    published_copies: dict[str, dict[str, str]] = field(default_factory=dict)
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)  # policy.active now
    problems: dict[str, list[BundleProblem]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    compile_seconds: float = 0.0
    _compiled: dict[str, Ruleset | None] = field(default_factory=dict)
    _rollouts: dict[int, dict[str, Any]] | None = None  # by change offset (`rollout_by`)

    @classmethod
    def load(cls, source: Source, serde: Serde | None = None) -> BundleStore:
        serde = serde or Serde()
        store = cls()
        rejected: dict[int, str] = {}
        for partition in source.partitions("monitor.alerts"):
            for record in source.read("monitor.alerts", partition):
                alert = serde.decode_record(record, expect={"Alert"})
                if isinstance(alert, Decoded) and alert.value["kind"] == "policy_change_rejected":
                    offset = alert.value["details"].get("change_offset")
                    if isinstance(offset, int):
                        rejected[offset] = alert.value["message"]
        for partition in source.partitions("policy.changes"):
            for record in source.read("policy.changes", partition):
                change = serde.decode_record(record, expect={"PolicyChange"})
                if not isinstance(change, Decoded):
                    continue
                store.changes.append(
                    Change(record.offset, change.value, rejected.get(record.offset))
                )
                if change.value["event"] == "published" and change.value["files"]:
                    store.published_copies.setdefault(
                        change.value["bundle_id"], files_of(change.value["files"])
                    )
        for partition in source.partitions("policy.active"):
            for record in source.read("policy.active", partition):
                decoded = serde.decode_record(record, expect={"PolicyBundle", "ActiveRollout"})
                if not isinstance(decoded, Decoded) or record.key is None:
                    continue
                value = decoded.value
                if decoded.name == "PolicyBundle" and record.key == bundle_key(value["bundle_id"]):
                    store.active_copies[value["bundle_id"]] = files_of(value["files"])
                elif decoded.name == "ActiveRollout" and record.key == target_key(value["target"]):
                    store.rollouts[value["target"]] = value
        return store

    @property
    def bundle_ids(self) -> list[str]:
        return sorted(self.active_copies.keys() | self.published_copies.keys())

    def files(self, bundle_id: str) -> dict[str, str] | None:
        return self.active_copies.get(bundle_id) or self.published_copies.get(bundle_id)

    def resolve(self, prefix: str) -> str | None:
        """A bundle id from a unique prefix (``sha256:8d38`` or ``8d38``)."""
        wanted = prefix if prefix.startswith("sha256:") else f"sha256:{prefix}"
        found = [b for b in self.bundle_ids if b.startswith(wanted)]
        return found[0] if len(found) == 1 else None

    def ruleset(self, bundle_id: str) -> Ruleset | None:
        """The compiled stored content (cached), for a bundle replay uses; problems are
        recorded, not raised."""
        self.used.add(bundle_id)
        return self._ruleset(bundle_id)

    def _ruleset(self, bundle_id: str) -> Ruleset | None:
        if bundle_id not in self._compiled:
            started = time.perf_counter()
            self._compiled[bundle_id] = self._compile(bundle_id)
            self.compile_seconds += time.perf_counter() - started
        return self._compiled[bundle_id]

    def prepare(self) -> None:
        """Compile every stored bundle now (before forking workers), without counting any
        as used: a published bundle the controller rejected is nobody's problem."""
        for bundle_id in self.bundle_ids:
            self._ruleset(bundle_id)

    def used_problems(self) -> list[BundleProblem]:
        """Problems of the bundles replay used (named by a swap in force)."""
        return [p for b in sorted(self.used) for p in self.problems.get(b, [])]

    def _problem(self, bundle_id: str, kind: str, message: str) -> None:
        self.problems.setdefault(bundle_id, []).append(BundleProblem(bundle_id, kind, message))

    def _compile(self, bundle_id: str) -> Ruleset | None:
        active, published = self.active_copies.get(bundle_id), self.published_copies.get(bundle_id)
        if active is not None and published is not None and active != published:
            changed = sorted(
                p for p in active.keys() | published.keys() if active.get(p) != published.get(p)
            )
            self._problem(
                bundle_id,
                "copies_differ",
                f"policy.active and policy.changes hold different content ({', '.join(changed)}); "
                "replaying policy.active's copy (what the enforcer compiled)",
            )
        files = active or published
        if files is None:
            self._problem(
                bundle_id,
                "missing",
                "no content for this bundle in policy.active or policy.changes",
            )
            return None
        try:
            ruleset = compile_bundle(files)
        except PolicyErrors as exc:
            first = exc.errors[0]
            self._problem(
                bundle_id,
                "does_not_compile",
                f"stored content does not compile: {first.location}: {first.message}",
            )
            return None
        if ruleset.bundle_id != bundle_id:
            self._problem(
                bundle_id,
                "content_mismatch",
                f"stored content hashes to {ruleset.bundle_id}, not to its id: it was altered "
                "after publication; replay evaluates the stored content",
            )
        return ruleset

    def change_at(self, offset: int) -> Change | None:
        for change in self.changes:
            if change.offset == offset:
                return change
        return None

    def rollout_by(self, offset: int) -> dict[str, Any] | None:
        """The ActiveRollout the change at ``offset`` put in force (enforced, canary,
        shadow, rolled_back), by the controller's own transition; None when that change
        put nothing in force (not a rollout, rejected, or not there)."""
        if self._rollouts is None:
            # One fold of the accepted changes; only bundle ids matter to a transition,
            # and a published bundle that failed validation was rejected (an alert).
            self._rollouts = {}
            state = ControllerState()
            for change in sorted(self.changes, key=lambda c: c.offset):
                datum = change.datum
                if change.rejected is not None:
                    continue
                if datum["event"] == "published":
                    state.bundles.setdefault(datum["bundle_id"], [])
                elif datum["event"] in ROLLOUT_EVENTS:
                    target = datum.get("target") or DEFAULT_TARGET
                    try:
                        rollout = next_rollout(state, datum, target, change.offset)
                    except Rejected:
                        continue
                    state.rollouts[target] = self._rollouts[change.offset] = rollout
        return self._rollouts.get(offset)

    def state_at(self, at: dt.datetime) -> tuple[ControllerState, list[Change]]:
        """The controller's state after the changes with event time <= ``at``, folded by
        the controller's own code, and those changes. A change the controller rejected
        (an unauthorised signer, an invalid bundle...) changed nothing, so it is listed
        but not folded: an unauthorised enforce never shows as in force."""
        state = ControllerState()
        applied = [c for c in self.changes if c.at <= at]
        for change in applied:
            if change.rejected is None:
                apply_change(state, change.datum, change.offset, change.at)
        return state, applied


def rollout_json(rollout: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "target": rollout["target"],
        "mode": rollout["mode"],
        "stable_bundle_id": rollout["stable_bundle_id"],
        "candidate_bundle_id": rollout.get("candidate_bundle_id"),
        "canary_percent": rollout.get("canary_percent", 0),
        "change_offset": rollout["change_offset"],
        "since": rollout["updated_at"].isoformat().replace("+00:00", "Z"),
    }
