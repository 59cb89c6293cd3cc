"""``replay verify``: re-run the enforcer over the recorded actions and compare.

For every Decision on ``agent.decisions[p]`` whose event time falls in the window, the
action it names is decided again by ``enforcer_state.decide`` — the enforcer's function —
with the state folded from the log up to that record and the bundle the state says was in
force (``RulesetSwap`` records), compiled from the content the log stores for that id.
Records the fold fences (written by an enforcer after another's takeover marker:
`enforcer_state`, "Fencing") are counted and not re-decided; the owner's decision of the
same request is verified instead. Follow-up decisions are recomputed by ``answer_approval`` from the ``agent.approvals``
record they answer. The recorded and recomputed datums are compared field by field
(effect, rule ids, reasons, code, bundle id, policy offset, the canonical action and
event time that feed the window counters, ...); the evaluation time and enforcer id are
inputs and are copied, the hash fields belong to the audit chain. Every difference is a
finding with both decisions and the window values the recomputation read.

The window state is the fold of the *recorded* log, as the enforcer rebuilds it on a
takeover: an altered counter input (a decision's ``args``) is a finding on that record,
and on every later decision whose outcome the altered counter changes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection
from typing import Any

from ordinance.policy.ruleset import Ruleset
from ordinance.processors.enforcer_state import (
    APPROVAL_ANSWERS,
    PartitionState,
    answer_approval,
    decide,
)
from ordinance.replay.bundles import BundleProblem, BundleStore
from ordinance.replay.findings import (
    Finding,
    PartitionCounts,
    Tick,
    VerifyReport,
    compare,
)
from ordinance.replay.parallel import Opener, map_partitions
from ordinance.replay.source import Source
from ordinance.replay.times import Window, decision_time
from ordinance.replay.walk import ActionCursor, ObservedWindows, Step, new_state, walk
from ordinance.streams.log import ConsumedRecord, Headers
from ordinance.streams.serde import Decoded, Serde, UndecodableRecord

_ACTION = frozenset({"ActionRequest"})


def decide_again(
    state: PartitionState,
    ruleset: Ruleset | None,
    action: Decoded | UndecodableRecord,
    *,
    action_offset: int,
    agent_key: bytes | None,
    recorded: dict[str, Any],
    value: bytes | None = None,
    headers: Headers = (),
    candidate: Ruleset | None = None,
) -> dict[str, Any] | None:
    """``decide`` with the recorded inputs that are not on the log as data (evaluation time,
    enforcer id). Stored content whose hash is not its id is evaluated as if it were
    (the bundle-level finding says it is not), so the records it changes stand out."""
    claimed = state.bundle_id
    altered = ruleset is not None and ruleset.bundle_id != claimed
    if altered:
        assert ruleset is not None
        state.bundle_id = ruleset.bundle_id
    try:
        datum = decide(
            state,
            ruleset,
            action,
            action_offset=action_offset,
            agent_key=agent_key,
            enforcer_id=recorded["enforcer_id"],
            evaluated_at=recorded["evaluated_at"],
            value=value,
            headers=headers,
            candidate=candidate,
        )
    finally:
        state.bundle_id = claimed
    if (
        altered
        and datum is not None
        and ruleset is not None
        and datum["bundle_id"] == ruleset.bundle_id
    ):
        datum["bundle_id"] = claimed
    return datum


class PartitionVerifier:
    def __init__(
        self,
        source: Source,
        partition: int,
        bundles: BundleStore,
        window: Window,
        agents: Collection[str] | None,
        serde: Serde,
    ) -> None:
        self.source = source
        self.partition = partition
        self.bundles = bundles
        self.window = window
        self.agents = agents
        self.serde = serde
        self.state = new_state(partition)
        self.counts = PartitionCounts()
        self.findings: list[Finding] = []
        # With headers: where identity is enforced, an intent's signature is in them.
        self.actions = ActionCursor(iter(source.read("agent.actions", partition)))
        self._approvals: dict[str, list[ConsumedRecord]] | None = None
        # request id -> the action offset its (original) decision names
        self.claimed: dict[str, int] = {}

    @property
    def approvals(self) -> dict[str, list[ConsumedRecord]]:
        """Read at the first follow-up, after the decisions read began: on a live log the
        approvals snapshot then holds every approval a replayed decision answered."""
        if self._approvals is None:
            self._approvals = {}
            for record in self.source.read("agent.approvals", self.partition):
                approval = self.serde.decode_record(record, expect={"Approval"})
                if isinstance(approval, Decoded):
                    self._approvals.setdefault(approval.value["request_id"], []).append(record)
        return self._approvals

    def _wanted(self, agent_id: str | None, at: dt.datetime) -> bool:
        return at in self.window and (self.agents is None or agent_id in self.agents)

    def run(self, tick: Tick = lambda _n: None) -> None:
        windows = self.state.windows
        assert isinstance(windows, ObservedWindows)
        # Without --from/--to/--agent every decision is verified: no per-record test.
        everything = self.window.start is None and self.window.end is None and self.agents is None
        records = 0
        for step in walk(self.source, self.partition, self.state, self.serde):
            records += 1
            if records % 1000 == 0:
                tick(1000)
            if step.fenced:
                # Its writer had lost the partition; the owner decided the request
                # itself. Counted, not re-decided: it was never in force.
                self.counts.fenced += 1
            elif step.name == "Decision":
                datum = step.datum
                if everything or self._wanted(datum["agent_id"], decision_time(datum)):
                    windows.reads = []
                    self._verify_decision(step, datum, windows.reads)
                    windows.reads = None
                elif datum["code"] not in APPROVAL_ANSWERS and datum["action_offset"] is not None:
                    # Not verified, but its action is accounted for: the gap check below
                    # then decodes only actions that no decision names.
                    self._claim_unverified(datum)
            elif step.name == "RulesetSwap":
                self._verify_swap(step)
            elif step.name is None and self.agents is None:
                assert isinstance(step.decoded, UndecodableRecord)
                self._finding(
                    "undecodable_record",
                    f"decisions record does not decode: {step.decoded.problem.value}: {step.decoded.detail}",
                    step,
                )
        self.counts.records = records
        tick(records % 1000)
        self._check_unclaimed_actions()

    def _claim_unverified(self, datum: dict[str, Any]) -> None:
        if self.actions.take(datum["action_offset"]) is not None:
            self.claimed.setdefault(datum["request_id"], datum["action_offset"])

    def _finding(self, kind: str, message: str, step: Step, **extra: Any) -> None:
        datum = step.datum if isinstance(step.decoded, Decoded) else {}
        self.findings.append(
            Finding(
                kind,
                message,
                self.partition,
                step.record.offset,
                datum.get("request_id"),
                datum.get("agent_id"),
                decision_time(datum) if step.name == "Decision" else datum.get("at"),
                **extra,
            )
        )

    def _verify_decision(
        self, step: Step, recorded: dict[str, Any], reads: list[dict[str, Any]]
    ) -> None:
        self.counts.decisions += 1
        if recorded["code"] in APPROVAL_ANSWERS:
            self.counts.follow_ups += 1
            recomputed = self._answer_again(recorded)
            if recomputed is None:
                self._finding(
                    "approval_missing",
                    "a follow-up decision that no record on agent.approvals answers",
                    step,
                    recorded=recorded,
                )
                return
        else:
            offset = recorded["action_offset"]
            action = self.actions.take(offset) if offset is not None else None
            if action is None and offset in self.actions.taken:
                self._finding(
                    "duplicate_decision",
                    f"a second decision names action offset {offset}; the enforcer decides an action once",
                    step,
                    recorded=recorded,
                )
                return
            if action is None:
                self._finding(
                    "action_missing",
                    f"the decision names action offset {offset}, which agent.actions[{self.partition}] does not hold",
                    step,
                    recorded=recorded,
                )
                return
            self.claimed.setdefault(recorded["request_id"], action.offset)
            bundle_id = self.state.bundle_id
            ruleset = self.bundles.ruleset(bundle_id) if bundle_id is not None else None
            candidate_id = self.state.candidate_bundle_id
            candidate = self.bundles.ruleset(candidate_id) if candidate_id is not None else None
            recomputed = decide_again(
                self.state,
                ruleset,
                self.serde.decode_record(action, expect=_ACTION),
                action_offset=action.offset,
                agent_key=action.key,
                recorded=recorded,
                value=action.value,
                headers=action.headers,
                candidate=candidate,
            )
            if recomputed is None:
                self._finding(
                    "duplicate_decision",
                    "the request already had a decision on this partition; the enforcer decides a request once",
                    step,
                    recorded=recorded,
                )
                return
        differences = compare(recorded, recomputed)
        if not differences:
            self.counts.agreed += 1
            return
        self._finding(
            "decision_mismatch",
            "the recomputed decision differs in " + ", ".join(differences),
            step,
            differences=differences,
            recorded=recorded,
            recomputed=recomputed,
            window_reads=list(reads),
        )

    def _answer_again(self, recorded: dict[str, Any]) -> dict[str, Any] | None:
        candidates = self.approvals.get(recorded["request_id"], [])
        for index, record in enumerate(candidates):
            approval = self.serde.decode_record(record, expect={"Approval"})
            assert isinstance(approval, Decoded)  # only decoded records were kept
            answer = answer_approval(
                self.state,
                approval.value,
                enforcer_id=recorded["enforcer_id"],
                evaluated_at=recorded["evaluated_at"],
                value=record.value,
                headers=record.headers,
            )
            if answer is not None:
                del candidates[index]  # one approval answers once
                return answer
        return None

    def _verify_swap(self, step: Step) -> None:
        swap = step.datum
        if self.agents is not None or swap["at"] not in self.window:
            return
        rollout = self.bundles.rollout_by(swap["policy_offset"])
        expected = rollout["stable_bundle_id"] if rollout is not None else None
        if expected != swap["bundle_id"]:
            self._finding(
                "swap_mismatch",
                f"the swap names {swap['bundle_id']} at policy offset {swap['policy_offset']}, "
                f"where policy.changes puts {expected or 'no bundle'} in force",
                step,
                recorded=swap,
            )
            return
        assert rollout is not None
        candidate = swap.get("candidate_bundle_id")
        # An enforcer that cannot verify a candidate runs the stable bundle alone and says
        # so (mode stable); a candidate it does name must be the rollout's, as the rollout.
        named = (candidate, swap.get("mode"), swap.get("canary_percent") or 0)
        wanted = (rollout["candidate_bundle_id"], rollout["mode"], rollout["canary_percent"])
        if candidate is not None and named != wanted:
            self._finding(
                "swap_mismatch",
                f"the swap runs {named[0]} as {named[1]} ({named[2]}%) at policy offset "
                f"{swap['policy_offset']}, where policy.changes puts {wanted[0]} in "
                f"{wanted[1]} ({wanted[2]}%)",
                step,
                recorded=swap,
            )

    def _check_unclaimed_actions(self) -> None:
        """An action no decision names is fine if a decision of another action record
        decided its request (a re-delivery or re-send) or if it comes after the last
        decided action (not processed yet); otherwise the enforcer skipped it. (Not the
        state's ``decided`` set: a follow-up decision puts its request there too.)"""
        for record in self.actions.unclaimed():
            action = self.serde.decode_record(record, expect={"ActionRequest"})
            if not isinstance(action, Decoded):
                # Its event time and agent are unknown: reported unless an agent was asked
                # for, if later actions were decided.
                if self.agents is None and record.offset < self.actions.last_taken:
                    self.findings.append(
                        Finding(
                            "action_without_decision",
                            f"agent.actions[{self.partition}] offset {record.offset} (undecodable) "
                            "has no decision, though later actions do",
                            self.partition,
                            record.offset,
                        )
                    )
                continue
            value = action.value
            if not self._wanted(value["agent"]["id"], value["event_time"]):
                continue
            if self.claimed.get(value["request_id"], record.offset) != record.offset:
                self.counts.duplicates_skipped += 1
            elif record.offset > self.actions.last_taken:
                self.counts.undecided += 1
            else:
                self.findings.append(
                    Finding(
                        "action_without_decision",
                        f"agent.actions[{self.partition}] offset {record.offset} has no decision, "
                        "though later actions do",
                        self.partition,
                        record.offset,
                        value["request_id"],
                        value["agent"]["id"],
                        value["event_time"],
                    )
                )


def verify(
    source: Source,
    *,
    window: Window | None = None,
    agents: Collection[str] | None = None,
    partitions: Collection[int] | None = None,
    bundles: BundleStore | None = None,
    tick: Tick = lambda _n: None,
    jobs: int = 1,
    reopen: Opener | None = None,
) -> VerifyReport:
    """Verify every decisions partition (``partitions`` to choose); with ``jobs`` > 1 and
    a ``reopen`` for workers, partitions run in forked processes."""
    started = time.perf_counter()
    serde = Serde()
    window = window or Window()
    bundles = bundles or BundleStore.load(source, serde)
    report = VerifyReport(source.label, window, frozenset(agents) if agents is not None else None)
    wanted = [
        p for p in source.partitions("agent.decisions") if partitions is None or p in partitions
    ]

    forked = jobs > 1 and reopen is not None and len(wanted) > 1

    def one(
        src: Source, partition: int
    ) -> tuple[int, PartitionCounts, list[Finding], list[BundleProblem]]:
        verifier = PartitionVerifier(src, partition, bundles, window, agents, serde)
        verifier.run(_silent if forked else tick)
        # Problems, not the store: compiled rulesets hold generated functions (unpicklable).
        return (
            partition,
            verifier.counts,
            verifier.findings,
            bundles.used_problems(),
        )

    if forked:
        assert reopen is not None
        bundles.prepare()  # compiled once, inherited by the workers
        results = []
        for result in map_partitions(one, wanted, jobs, reopen, source.sizes("agent.decisions")):
            tick(result[1].records)  # progress as each partition comes back
            results.append(result)
    else:
        results = [one(source, p) for p in wanted]
    problems: dict[tuple[str, str], BundleProblem] = {}
    for partition, counts, findings, found in sorted(results, key=lambda r: r[0]):
        report.partitions[partition] = counts
        report.findings.extend(findings)
        for problem in found:
            problems.setdefault((problem.bundle_id, problem.kind), problem)
    report.bundle_problems = list(problems.values())
    report.seconds = time.perf_counter() - started
    report.compile_seconds = bundles.compile_seconds
    return report


def _silent(_n: int) -> None:
    return None
