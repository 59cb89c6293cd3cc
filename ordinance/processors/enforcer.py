"""The enforcer: ``agent.actions`` in, one Decision per action out on the same partition of
``agent.decisions``, against the bundle ``policy.active`` names for its target.

Effectively-once (DESIGN.md): on taking over partition p the enforcer writes an
``EnforcerTakeover`` record with a fresh nonce to ``decisions[p]`` and folds the partition
until it reads that record back — its state is then exactly the fold of the log, whatever
a watermark says. Actions whose request id already has a decision are not decided again.
A decision and its input offset are committed together (one transaction on the embedded
log). A new bundle is compiled and its id verified before it is used, and the swap is a
``RulesetSwap`` record between two decisions. Fail-closed: no verified bundle, an
undecodable action, an evaluation error — each is a deny with a machine-readable code.
So is an action that is not one agent's to judge here and now (`enforcer_state.decide`):
an agent id not in canonical form, a key or partition that is not its agent id's
(``wrong_partition``), an event time beyond ``max_clock_skew_s`` of the enforcer's clock
(``clock_skew``). The takeover record names the partition count and the bound, so
they are part of the fold and replay applies the ones this enforcer applied.

Every record written to ``decisions[p]`` except the takeover marker carries the hash chain
headers (`audit.chain`): the partition state follows the chain head as it folds.

Approvals: ``agent.approvals`` is keyed by agent id, so its partition p is read by the
enforcer of actions partition p; an Approval whose ticket matches a pending
require_approval decision causes a follow-up decision for that request.

Identity (``trust``, docs/identity.md): the takeover record carries the trust root, the
enforcer tails ``identity.registry`` and writes an ``IdentityUpdate`` into each owned
partition, between batches, for every registry record the registry installs at its clock;
actions are then verified and decided with the registry's roles (`identity_gate`).

With ``state_dir`` the partition states are snapshotted to RocksDB with the offset they
reflect — incrementally, what changed since the last save in one atomic batch — and a
takeover folds only the tail after it (`state_cache`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ordinance.errors import OrdinanceError
from ordinance.identity.signing import signature_valid
from ordinance.identity.trust import TrustRoot
from ordinance.policy.bundle import compile_bundle
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.window import longest_window_seconds
from ordinance.processors.active_auth import STALE_ROLLOUT, ActiveGuard, ActiveTable
from ordinance.processors.audit.chain import record_hash
from ordinance.processors.change_auth import RegistryFollower
from ordinance.processors.controller import DEFAULT_TARGET
from ordinance.processors.enforcer_state import (
    PartitionState,
    answer_approval,
    decide,
    internal_error_decision,
)
from ordinance.processors.identity_gate import RegistryTail, Verify
from ordinance.processors.masking import Masking
from ordinance.processors.ownership import OwnershipWatch
from ordinance.processors.pre_verifier import PreVerifier
from ordinance.processors.rollout import CANARY, STABLE
from ordinance.processors.runtime import Emit, ProcessorBase, Runtime, Task
from ordinance.processors.state_cache import StateCache
from ordinance.streams import (
    AtOffset,
    ConsumedRecord,
    Consumer,
    Delivered,
    Log,
    Position,
    Record,
    StartAt,
    TopicPartition,
)
from ordinance.streams.errors import LogError
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    AGENT_ACTIONS,
    AGENT_APPROVALS,
    AGENT_DECISIONS,
    DEFAULT_PREFIX,
    IDENTITY_REGISTRY,
    POLICY_ACTIVE,
    ensure_topics,
)

Clock = Callable[[], float]
TAKEOVER_TIMEOUT_S = 30.0
ASSIGNMENT_WAIT_S = 30.0  # how long `until_idle` waits for a first partition
CACHE_SAVE_INTERVAL_S = 5.0
STATE_SIZE_INTERVAL_S = 1.0
#: What ``ordinance serve`` allows between an action's event time and the enforcer's clock.
DEFAULT_MAX_CLOCK_SKEW_S = 300.0


class TargetConflictError(OrdinanceError):
    """The partition belongs to another deployment target's enforcer."""


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


@dataclass
class EnforcerReport:
    decided: int = 0
    duplicates: int = 0
    swaps: int = 0
    takeovers: int = 0
    approvals: int = 0
    identity_updates: int = 0
    replayed: int = 0  # decisions records folded during takeovers
    refused_policy: int = 0  # policy.active records not believed (`active_auth`)
    internal_errors: int = 0  # records the step failed on, answered fail-closed
    retaken: int = 0  # partitions taken over again after a stale marker (`ownership`)


class Enforcer(ProcessorBase):
    name = "enforcer"

    def __init__(
        self,
        log: Log,
        *,
        enforcer_id: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        group: str = "ordinance.enforcer",
        target: str = DEFAULT_TARGET,
        clock: Clock = time.time,
        progress: Callable[[str], None] = lambda _message: None,
        state_dir: Path | None = None,
        masking: Masking | None = None,
        max_clock_skew_s: float | None = None,
        trust: TrustRoot | None = None,
        dedupe_horizon_s: float | None = None,
    ) -> None:
        """``max_clock_skew_s``: deny (``clock_skew``) an action whose event time is further
        than this from ``clock``; None for no bound (``serve`` defaults to
        `DEFAULT_MAX_CLOCK_SKEW_S`). ``trust``: enforce identity with this trust root
        (``serve --trust``); None decides with what requests claim, as before.
        ``dedupe_horizon_s``: how long the partitions remember request ids and window
        history (`state_horizon`; ``serve`` defaults to `DEFAULT_DEDUPE_HORIZON_S`); an
        intent dated further back is denied ``stale_request``. None: state grows unbounded."""
        if dedupe_horizon_s is not None and not dedupe_horizon_s > 0:
            raise ValueError(f"dedupe_horizon_s must be > 0, not {dedupe_horizon_s}")
        self.dedupe_horizon_ms = (
            round(dedupe_horizon_s * 1000) if dedupe_horizon_s is not None else None
        )
        if max_clock_skew_s is not None and not max_clock_skew_s >= 0:
            raise ValueError(f"max_clock_skew_s must be >= 0, not {max_clock_skew_s}")
        self.log = log
        self.masking = masking
        self.enforcer_id = enforcer_id or f"enforcer-{uuid.uuid4().hex[:8]}"
        self.group = group
        self.target = target
        self.clock = clock
        self.progress = progress
        self.serde = Serde()
        self.prefix = prefix
        specs = ensure_topics(log, prefix)
        self.actions = specs[AGENT_ACTIONS].name
        # Where each agent id belongs: the same hashing the client and Kafka use.
        self.agent_partitions = specs[AGENT_ACTIONS].partitions
        self.max_clock_skew_ms = (
            round(max_clock_skew_s * 1000) if max_clock_skew_s is not None else None
        )
        self.decisions = specs[AGENT_DECISIONS].name
        # Keyed by agent id like the actions, so partition p of approvals belongs with p.
        self.approvals = specs[AGENT_APPROVALS].name
        self.active_topic = specs[POLICY_ACTIVE].name
        self.registry_topic = specs[IDENTITY_REGISTRY].name
        self.trust = trust
        self.registry_tail: RegistryTail | None = None
        # Signatures of a batch verified on all cores before it is decided (`PreVerifier`).
        self.pre_verifier = PreVerifier(os.cpu_count() or 1) if trust is not None else None
        self.states: dict[int, PartitionState] = {}
        self.cache = (
            StateCache(
                state_dir, self.decisions, lambda m: self.progress(f"{self.enforcer_id}: {m}")
            )
            if state_dir is not None
            else None
        )
        self.ruleset: Ruleset | None = None  # the stable bundle
        self.candidate: Ruleset | None = None  # a canary or shadow rollout's (`rollout`)
        self.rollout: tuple[str, str | None, int] = (STABLE, None, 0)  # mode, candidate, %
        self.auto_rollback = False
        self.policy_offset: int | None = None
        self.report = EnforcerReport()
        self.runtime: Runtime | None = None
        self._table: ActiveTable | None = None
        self._started = time.monotonic()
        self._verify: Verify = signature_valid
        self.state_size = (0, 0)  # request ids, window events: `_note_state_size`
        self.ownership = OwnershipWatch()  # a stale takeover marker after ours (`ownership`)
        self._consumer: Consumer | None = None
        self._rewound: set[TopicPartition] = set()
        # Per owned partition: the approvals offset it was taken over at (what a
        # re-takeover after a stale marker reads again: `_reread_approvals`).
        self._approvals_from: dict[int, int] = {}
        self._compiled: dict[str, Ruleset | None] = {}
        self._held_back: set[int] = set()  # partitions refusing an older rollout (noted once)

    # -- policy ------------------------------------------------------------------------
    def _refused_policy(self, message: str) -> None:
        self.report.refused_policy += 1
        self.progress(f"{self.enforcer_id}: {message}")

    def _wanted_rollout(self, table: ActiveTable) -> None:
        """Set the stable ruleset, the candidate and the rollout the target's
        ``ActiveRollout`` asks for (each bundle compiled and verified once)."""
        rollout = table.rollouts.get(self.target)
        self.policy_offset = rollout["change_offset"] if rollout else None
        self.ruleset = self._usable(table, rollout["stable_bundle_id"] if rollout else None)
        mode = rollout["mode"] if rollout else STABLE
        candidate_id = rollout["candidate_bundle_id"] if rollout else None
        self.candidate = self._usable(table, candidate_id) if mode != STABLE else None
        if mode != STABLE and self.candidate is None:
            # Not compiled or not verified here: the stable bundle alone, on the record
            # (the swap says mode stable), rather than a share of agents denied.
            mode = STABLE
        canary = rollout is not None and mode == CANARY
        self.rollout = (
            mode,
            self.candidate.bundle_id if self.candidate is not None else None,
            rollout["canary_percent"] if rollout is not None and canary else 0,
        )
        self.auto_rollback = bool(rollout.get("auto_rollback")) if rollout and canary else False
        # Only the bundles in force stay compiled: over months of publishing, every bundle
        # ever seen would stay in memory (a rollback to an older one compiles it again).
        wanted = {rollout["stable_bundle_id"], candidate_id} if rollout else set()
        for bundle_id in [b for b in self._compiled if b not in wanted]:
            del self._compiled[bundle_id]

    def _usable(self, table: ActiveTable, bundle_id: str | None) -> Ruleset | None:
        if bundle_id is None:
            return None
        if bundle_id not in self._compiled and bundle_id in table.bundles:
            self._compiled[bundle_id] = self._verified(bundle_id, table.bundles[bundle_id])
        return self._compiled.get(bundle_id)

    def _verified(self, bundle_id: str, files: list[dict[str, str]]) -> Ruleset | None:
        """Compile and check the id against the content; a bundle that fails stays unusable."""
        try:
            ruleset = compile_bundle({f["path"]: f["content"] for f in files})
        except PolicyErrors as exc:
            self.progress(
                f"{self.enforcer_id}: bundle {bundle_id} does not compile: {exc.errors[0].message}"
            )
            return None
        if ruleset.bundle_id != bundle_id:
            self.progress(
                f"{self.enforcer_id}: bundle {bundle_id} content has id {ruleset.bundle_id}; refused"
            )
            return None
        conflicts = self.masking.conflicts(ruleset) if self.masking is not None else []
        if conflicts:
            self.progress(f"{self.enforcer_id}: bundle {bundle_id} refused: {conflicts[0]}")
            return None
        return ruleset

    def _swap_if_needed(self, state: PartitionState) -> None:
        bundle_id = self.ruleset.bundle_id if self.ruleset is not None else None
        mode, candidate_id, percent = self.rollout
        if bundle_id is None or (
            state.bundle_id == bundle_id
            and state.policy_offset == self.policy_offset
            and (state.mode, state.candidate_bundle_id, state.canary_percent) == self.rollout
        ):
            return
        if (
            self.trust is not None
            and self.policy_offset is not None
            and state.policy_offset is not None
            and self.policy_offset < state.policy_offset
        ):
            # The table holds an older rollout than this partition already ran: after
            # compaction, a replayed record may be all a fresh reader sees (`active_auth`).
            if state.partition not in self._held_back:
                self._held_back.add(state.partition)
                self._refused_policy(
                    f"partition {state.partition} stays on change {state.policy_offset}: "
                    f"policy.active names the older change {self.policy_offset} "
                    f"({STALE_ROLLOUT})"
                )
            return
        self._held_back.discard(state.partition)
        datum = {
            "enforcer_id": self.enforcer_id,
            "partition": state.partition,
            "bundle_id": bundle_id,
            "previous_bundle_id": state.bundle_id,
            "policy_offset": self.policy_offset if self.policy_offset is not None else -1,
            # How much window history this bundle can ask for: the partition keeps it.
            "longest_window_ms": max(
                _longest_window_ms(self.ruleset), _longest_window_ms(self.candidate)
            ),
            "candidate_bundle_id": candidate_id,
            "mode": mode,
            "canary_percent": percent,
            # The candidate's id: raising the percentage of a rollout only adds agents.
            "canary_seed": candidate_id if mode == CANARY else None,
            # For the monitor: it may roll this canary back on regression.
            "auto_rollback": self.auto_rollback,
            "at": _at(self.clock()),
            "prev_hash": None,
            "hash": None,
        }
        delivered = self._append_chained(state, "RulesetSwap", datum)
        self.report.swaps += 1
        beside = f" ({mode} {candidate_id[:19]}…)" if candidate_id else ""
        self.progress(
            f"{self.enforcer_id}: partition {state.partition} swaps to {bundle_id[:19]}…{beside} "
            f"at decisions offset {delivered.offset}"
        )

    def _sync_identity(self, state: PartitionState) -> None:
        """Write (and fold) an IdentityUpdate for each registry record this partition has
        not judged yet and the registry installs now: between batches, so the change
        takes effect at one decisions offset."""
        if self.registry_tail is None or state.identity is None:
            return
        updates = self.registry_tail.updates_for(
            state.partition, state.identity, enforcer_id=self.enforcer_id, at=_at(self.clock())
        )
        for datum in updates:
            delivered = self._append_chained(state, "IdentityUpdate", datum)
            self.report.identity_updates += 1
            self.progress(
                f"{self.enforcer_id}: partition {state.partition} knows {datum['principal_id']} "
                f"as of registry offset {datum['registry_offset']} from decisions offset "
                f"{delivered.offset}"
            )

    def _append_chained(
        self, state: PartitionState, schema: str, datum: dict[str, Any]
    ) -> Delivered:
        """Append a control record to the partition's hash chain, and fold it: from the
        offset it lands at, the partition's state includes it."""
        value = self.serde.encode(schema, datum)
        record = Record(
            None, value, state.link(None, value), int(self.clock() * 1000), state.partition
        )
        [delivered] = self.log.produce(self.decisions, [record])
        self.ownership.wrote(state.partition, delivered.offset)
        state.fold(schema, datum, delivered.offset)
        return delivered

    # -- partitions ----------------------------------------------------------------------
    def _control(self, partition: int, schema: str, datum: dict[str, Any]) -> Record:
        return Record(
            None, self.serde.encode(schema, datum), (), int(self.clock() * 1000), partition
        )

    def _take_over(self, partition: int) -> PartitionState:
        """Write a takeover marker, then fold decisions[p] until it comes back."""
        nonce = uuid.uuid4().hex
        datum = {
            "enforcer_id": self.enforcer_id,
            "partition": partition,
            "previous_enforcer_id": None,
            "nonce": nonce,
            "at": _at(self.clock()),
            # The checks this enforcer applies, on the log so the fold (and replay) has them.
            "agent_partitions": self.agent_partitions,
            "max_clock_skew_ms": self.max_clock_skew_ms,
            "trust_root": self.trust.to_wire() if self.trust is not None else None,
            "dedupe_horizon_ms": self.dedupe_horizon_ms,
            "target": self.target,
            "prev_hash": None,
            "hash": None,
        }
        [marker] = self.log.produce(
            self.decisions, [self._control(partition, "EnforcerTakeover", datum)]
        )
        cached = self.cache.load(partition) if self.cache is not None else None
        if cached is not None and not 0 <= cached.offset < marker.offset:
            cached = None  # a cache of records this partition does not hold: not this log's
        state = cached or PartitionState(partition)
        # With a snapshot, the fold resumes after its offset — once the record at that
        # offset proves the snapshot is of this log (`_matches`).
        start: StartAt = AtOffset(state.offset) if cached is not None else Position.BEGINNING
        unproven = cached is not None
        deadline = time.monotonic() + TAKEOVER_TIMEOUT_S
        tp = TopicPartition(self.decisions, partition)
        with self.log.consumer(None) as reader:
            reader.assign({tp: start})
            while True:
                if time.monotonic() > deadline:
                    raise LogError(
                        f"takeover of partition {partition}: own marker not seen in {TAKEOVER_TIMEOUT_S}s"
                    )
                for record in reader.poll(max_records=1000, timeout=0.5):
                    if unproven:
                        unproven = False
                        if _matches(state, record):
                            continue  # folded already: the snapshot's own last record
                        self.progress(
                            f"{self.enforcer_id}: the state cache of partition {partition} does "
                            f"not match this log at offset {state.offset}; refolding from the log"
                        )
                        state = PartitionState(partition)
                        reader.assign({tp: Position.BEGINNING})
                        break
                    decoded = self.serde.decode_record(record)
                    self.report.replayed += 1
                    if not isinstance(decoded, Decoded):
                        state.follow(record.key, record.value)  # the chain covers it too
                        continue
                    if state.fences(decoded.name, decoded.value):
                        # Its writer had lost the partition: not in the chain, and not
                        # folded (`enforcer_state`, "Fencing"); fold() counts it.
                        state.fold(decoded.name, decoded.value, record.offset)
                        continue
                    state.follow(record.key, record.value)
                    mine = decoded.name == "EnforcerTakeover" and decoded.value["nonce"] == nonce
                    if mine:
                        self._refuse_another_targets(state)
                    state.fold(decoded.name, decoded.value, record.offset)
                    if mine:
                        self.ownership.taken_over(partition, record.offset)
                        self.report.takeovers += 1
                        self.progress(
                            f"{self.enforcer_id}: took over partition {partition} at decisions offset {record.offset}"
                        )
                        return state

    def _refuse_another_targets(self, state: PartitionState) -> None:
        """Before our marker is folded, ``state.target`` is the previous owner's. A
        partition another target's enforcer decided is not ours to decide: two targets
        sharing the topics (and so the enforcer group) would each get some partitions,
        and agents would run whichever bundle their partition's owner has. Stop loudly
        instead; the group gives the partition back to its target's enforcer."""
        if state.target is not None and state.target != self.target:
            raise TargetConflictError(
                f"decisions partition {state.partition} is decided for target "
                f"{state.target!r}; this enforcer serves {self.target!r}. Two targets on one "
                "set of topics would mix bundles across agents: give each target its own "
                "topic prefix (serve --prefix; docs/lifecycle.md, 'Targets')"
            )

    # -- the loop (run by `runtime.Runtime`) -------------------------------------------
    def run(
        self, *, stop: threading.Event | None = None, until_idle: bool = False, idle_s: float = 1.0
    ) -> EnforcerReport:
        """Decide until ``stop`` is set (or, with ``until_idle``, once no action arrived for ``idle_s``)."""
        self.runtime = Runtime(
            self.log,
            self,
            max_records=200,
            progress=lambda m: self.progress(f"{self.enforcer_id}: {m}"),
        )
        self.runtime.run(stop=stop, until_idle=until_idle, idle_s=idle_s)
        return self.report

    @property
    def last_poll(self) -> float:
        """time.monotonic() of the loop's last poll (0: not yet): serve --http's /healthz."""
        return self.runtime.health.last_poll if self.runtime is not None else 0.0

    def open(self, log: Log, resources: contextlib.ExitStack) -> Consumer:
        if self.pre_verifier is not None:
            resources.callback(self.pre_verifier.close)
        if self.cache is not None:
            resources.callback(self.cache.close)
        # The policy table need not be read within milliseconds: a relaxed consumer
        # leaves the broker to the decision path.
        reader = resources.enter_context(log.consumer(None, relaxed=True))
        reader.assign({TopicPartition(self.active_topic, 0): Position.BEGINNING})
        guard = None
        if self.trust is not None:
            guard = ActiveGuard(log, RegistryFollower.start(self.trust, self.prefix))
            registry_reader = resources.enter_context(log.consumer(None, relaxed=True))
            registry_reader.assign({TopicPartition(self.registry_topic, 0): Position.BEGINNING})
            self.registry_tail = RegistryTail(registry_reader)
        self._table = ActiveTable(reader, self.serde, guard, self._refused_policy)
        consumer = resources.enter_context(log.consumer(self.group))
        consumer.subscribe([self.actions, self.approvals])
        self._consumer = consumer
        self._started = time.monotonic()
        return consumer

    def before_poll(self) -> None:
        assert self._table is not None
        self._table.refresh()
        if self.registry_tail is not None:
            self.registry_tail.refresh()
        self._wanted_rollout(self._table)

    def rebalanced(self, gained: set[TopicPartition], lost: set[TopicPartition]) -> None:
        """Take over each actions partition gained (the runtime has settled our earlier
        writes: they land before the new markers, where they would otherwise count as
        the new owner's — same enforcer id); forget each one lost."""
        for partition in sorted(tp.partition for tp in lost if tp.topic == self.actions):
            self._drop(partition)  # another member owns it now
        for partition in sorted(tp.partition for tp in gained if tp.topic == self.actions):
            self.states[partition] = self._take_over(partition)
            self._resume_actions(self.states[partition])
            approvals = TopicPartition(self.approvals, partition)
            assert self._consumer is not None
            self._approvals_from[partition] = (
                self._consumer.committed([approvals]).get(approvals) or 0
            )

    def _drop(self, partition: int) -> None:
        self.states.pop(partition, None)
        self._approvals_from.pop(partition, None)
        self.ownership.forget(partition)
        if self.registry_tail is not None:
            self.registry_tail.forget(partition)

    def _resume_actions(self, state: PartitionState) -> None:
        """Read the partition's actions from the first one no decision in force answers
        (`PartitionState.actions_through`) when the committed position is past it — the
        actions of decisions fenced by a stale marker; re-reading a decided one is
        harmless (its request id is known)."""
        assert self._consumer is not None
        tp = TopicPartition(self.actions, state.partition)
        # The committed offset, not the position: this poll may have read past it already.
        committed = self._consumer.committed([tp]).get(tp)
        if committed is not None and committed > state.actions_through:
            self.progress(
                f"{self.enforcer_id}: partition {state.partition}: reading actions again from "
                f"offset {state.actions_through} (committed {committed}): the decisions after "
                "it are not in force"
            )
            self._consumer.seek(tp, AtOffset(state.actions_through))
            self._rewound.add(tp)

    def _reread_approvals(self, partition: int, since: int) -> None:
        """Read the partition's approvals again from ``since`` (where it was first taken
        over). A stale marker fences the follow-up decisions written after it too, and an
        approval, unlike an action, leaves no offset in the decision that answers it, so
        every approval read since the takeover is read again; one whose follow-up is in
        force answers nothing (its request is no longer pending, or its approver already
        counted), one whose follow-up was fenced answers its request now."""
        assert self._consumer is not None
        tp = TopicPartition(self.approvals, partition)
        self._approvals_from[partition] = since
        committed = self._consumer.committed([tp]).get(tp)
        if committed is not None and committed > since:
            self._consumer.seek(tp, AtOffset(since))
            self._rewound.add(tp)

    def settle_first(self) -> bool:
        # Our writes landed after someone else's: know where every one of them landed
        # before asking whether a takeover marker is among the others.
        return self.ownership.suspect()

    def rewound(self) -> set[TopicPartition]:
        rewound, self._rewound = self._rewound, set()
        return rewound

    def between_batches(self) -> None:
        for partition in self.ownership.taken_from_us(self.log, self.decisions, self.serde):
            if partition not in self.states:
                continue
            self.report.retaken += 1
            self.progress(
                f"{self.enforcer_id}: another enforcer's takeover marker landed after ours on "
                f"partition {partition} (a stale one: the group gives the partition to us); "
                "taking it over again"
            )
            approvals_from = self._approvals_from.get(partition, 0)
            self._drop(partition)
            self.states[partition] = self._take_over(partition)
            self._resume_actions(self.states[partition])
            self._reread_approvals(partition, approvals_from)
        for state in self.states.values():
            self._swap_if_needed(state)  # between two batches, never inside one
            self._sync_identity(state)

    def busy(self) -> bool:
        # Joining a Kafka group can take seconds: an enforcer that owns nothing yet has
        # seen nothing yet, and is not idle.
        return not self.states and time.monotonic() - self._started < ASSIGNMENT_WAIT_S

    def tasks(self) -> list[Task]:
        sizes = Task(STATE_SIZE_INTERVAL_S, self._note_state_size)
        if self.cache is None:
            return [sizes]
        return [sizes, Task(CACHE_SAVE_INTERVAL_S, self._save_states, settled=True)]

    def _note_state_size(self) -> None:
        """(request ids, window events) of the owned partitions, for ``/metrics``."""
        states = list(self.states.values())
        self.state_size = (
            sum(len(s.decided) for s in states),
            sum(s.windows.events() for s in states),
        )

    def finish(self) -> list[Emit]:
        self._save_states()
        return []

    def _save_states(self) -> None:
        """Snapshot every owned partition's state with the offset it reflects: what changed
        since the last save, one atomic batch per partition. The runtime has settled the
        outbox (a snapshot must not hold folds of decisions the log may still lose). A
        crash loses at most an interval of changes, never correctness: the tail is
        refolded."""
        if self.cache is None:
            return
        for state in self.states.values():
            self.cache.save(state)

    def prepare(self, records: Sequence[ConsumedRecord]) -> None:
        """Verify the batch's signatures on all cores before it is decided (`PreVerifier`)."""
        self._verify = signature_valid
        if self.pre_verifier is not None:
            self.pre_verifier.prepare(
                [
                    (state.identity, record.value, record.headers)
                    for record in records
                    if record.topic == self.actions
                    and (state := self.states.get(record.partition)) is not None
                    and state.identity is not None
                ]
            )
            self._verify = self.pre_verifier.verify

    def step(self, record: ConsumedRecord) -> list[Emit] | None:
        """Decide one action (or answer one approval) and fold the decision into the
        partition's state as it is made, so later actions see earlier ones (budgets,
        duplicates). The runtime sends the batch's decisions with its offsets (one
        transaction on the embedded log; on Kafka the next batch is decided while this
        one is acknowledged); if a write fails the run ends, and the next takeover
        rebuilds the state from the log."""
        state = self.states.get(record.partition)
        if state is None:
            return None  # not ours (any more): its owner will read it
        evaluated_at = _at(self.clock())
        if record.topic == self.approvals:
            decoded = self.serde.decode_record(record, expect={"Approval"})
            datum = (
                answer_approval(
                    state,
                    decoded.value,
                    enforcer_id=self.enforcer_id,
                    evaluated_at=evaluated_at,
                    value=record.value,
                    headers=record.headers,
                )
                if isinstance(decoded, Decoded)
                else None  # an approval that does not decode answers nothing
            )
            self.report.approvals += datum is not None
        else:
            datum = decide(
                state,
                self.ruleset,
                self.serde.decode_record(record, expect={"ActionRequest"}),
                action_offset=record.offset,
                agent_key=record.key,
                enforcer_id=self.enforcer_id,
                evaluated_at=evaluated_at,
                value=record.value,
                headers=record.headers,
                verify=self._verify,
                candidate=self.candidate,
            )
            if datum is None:
                self.report.duplicates += 1
            else:
                self.report.decided += 1
                if self.masking is not None:
                    self.masking.apply(datum)  # follow-ups copy the masked original
        if datum is None:
            return []
        return [self._decision(state, record, datum)]

    def failed(self, record: ConsumedRecord, error: Exception) -> list[Emit]:
        """A record the step failed on (a bug, not the input: ``decide`` never raises) is
        still answered, fail-closed: an action is denied ``internal_error`` naming the
        failure; an approval answers nothing (its request stays pending). Replay reports
        such a decision, since policy alone does not produce it."""
        state = self.states.get(record.partition)
        self.report.internal_errors += 1
        if state is None or record.topic != self.actions:
            return []
        decoded = self.serde.decode_record(record, expect={"ActionRequest"})
        datum = internal_error_decision(
            state,
            decoded,
            f"the enforcer failed on this action: {type(error).__name__}: {error}",
            action_offset=record.offset,
            agent_key=record.key,
            enforcer_id=self.enforcer_id,
            evaluated_at=_at(self.clock()),
        )
        return [] if datum is None else [self._decision(state, record, datum)]

    def _decision(
        self, state: PartitionState, record: ConsumedRecord, datum: dict[str, Any]
    ) -> Emit:
        """Encode, fold and chain a decision (encoded first: nothing is folded that is
        not written)."""
        value = self.serde.encode("Decision", datum)
        state.fold("Decision", datum, state.offset)
        headers = state.link(record.key, value)

        def delivered(where: Delivered) -> None:
            state.offset = max(state.offset, where.offset)
            if self.states.get(state.partition) is state:
                self.ownership.wrote(state.partition, where.offset)

        return Emit(
            self.decisions,
            Record(record.key, value, headers, record.timestamp_ms, record.partition),
            delivered,
        )


def _matches(state: PartitionState, record: Any) -> bool:
    """Whether ``record`` is the one a snapshot's state last folded: it sits at the
    state's offset, and the chain over it from the state's previous head is the state's
    head. A snapshot of another log (a reused cache directory, a recreated topic) fails
    this and is refolded, never trusted."""
    return bool(
        record.offset == state.offset
        and record_hash(state.prev_chain_head, record.key, record.value) == state.chain_head
    )


def _longest_window_ms(ruleset: Ruleset | None) -> int:
    """Computed at each swap (swaps are rare; a walk over the rules' conditions)."""
    if ruleset is None:
        return 0
    return 1000 * longest_window_seconds(cr.rule.condition.expr for cr in ruleset.rules)
