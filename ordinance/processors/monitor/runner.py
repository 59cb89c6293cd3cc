"""The monitor process: fold ``agent.decisions``, write alerts, watch the other processors.

One monitor reads every partition of the decisions topic (it is cheap: a fold of counters)
as the consumer group ``ordinance.monitor``. On start it folds each partition from the
beginning of retention up to the group's committed position *quietly* — the alerts those
records raise were written before — and from there on writes the alerts each batch raises
together with the batch's offsets (one transaction on the embedded log; on Kafka a
replayed batch rewrites alerts with the same ids, which readers deduplicate).

Automatic rollback (docs/lifecycle.md): a ``canary_regression`` alert raised live for a
canary started with ``--auto-rollback`` makes the monitor append one signed ``rolled_back``
event for the candidate on its target (`AutoRollback`: the monitor's principal, which needs
the ``policy-approver`` role where the controller has a trust root), with the alert as its
reason — once the alert itself is on the log (its delivery triggers the event); the
controller ends the canary and every enforcer swaps back at one offset. The
alert is a function of the fold, so a replay of the same decisions raises it at the same
offset; the event is written once per candidate and rollout by this process. (A monitor
that dies between writing the event and committing its batch raises the alert again on
restart and writes a second event, which the controller refuses: no canary is left to
end.)

Liveness is judged on the injected clock, not on the log, so it is not part of the
replayable fold: every ``check_every_s`` the monitor compares each processor group's
committed offsets with its input's end offsets (``lag``), and each decisions partition's
decided-through action offset with the actions written (``silence``: actions waiting
longer than ``silence.after_s`` with no decision). Those alerts open and resolve like the
others.

The loop is `runtime.Runtime`'s: records are steps, the readiness note and the liveness
check are tasks; a session that fails starts over (`Monitor.run`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ordinance.identity.signing import PrincipalSigner
from ordinance.processors.monitor.canary import CANARY_REGRESSION
from ordinance.processors.monitor.config import MonitorConfig
from ordinance.processors.monitor.fold import MonitorState, alert_datum, episode
from ordinance.processors.policy_log import append_change
from ordinance.processors.runtime import Emit, ProcessorBase, Runtime, Task
from ordinance.streams import Log, Record
from ordinance.streams.log import AtOffset, ConsumedRecord, Consumer, TopicPartition
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    AGENT_ACTIONS,
    AGENT_DECISIONS,
    DEFAULT_PREFIX,
    MONITOR_ALERTS,
    POLICY_CHANGES,
    ensure_topics,
)

MONITOR_GROUP = "ordinance.monitor"
LAG = "lag"
SILENCE = "silence"
#: The processor groups whose lag the monitor watches, and the topic each consumes.
WATCHED_GROUPS = (
    ("ordinance.enforcer", AGENT_ACTIONS),
    ("ordinance.controller", POLICY_CHANGES),
    (MONITOR_GROUP, AGENT_DECISIONS),
)
_SCHEMAS = frozenset({"Decision", "RulesetSwap", "EnforcerTakeover", "IdentityUpdate"})


@dataclass(frozen=True)
class AutoRollback:
    """Who the monitor writes a rollback as, and for which target."""

    actor: str
    signer: PrincipalSigner | None
    target: str = "default"


@dataclass
class Health:
    """What ``/healthz`` and ``/readyz`` answer."""

    ready: bool = False  # caught up with what was committed before this process started
    last_poll: float = 0.0  # clock time of the last successful poll
    error: str | None = None  # the last failure of the loop, if it is failing
    records: int = 0  # records folded by this process
    undecodable: int = 0  # records of the decisions topic that did not decode
    lag: dict[str, int] = field(default_factory=dict)  # group -> records behind
    started: float = 0.0


class Monitor(ProcessorBase):
    name = "monitor"

    def __init__(
        self,
        log: Log,
        *,
        config: MonitorConfig | None = None,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        check_every_s: float = 5.0,
        progress: Callable[[str], None] = lambda _message: None,
        read_only: bool = False,
        auto_rollback: AutoRollback | None = None,
    ) -> None:
        """``read_only``: fold and judge, but write no alert and commit nothing (a report
        of the log as it stands, beside a running monitor). ``auto_rollback``: roll back a
        canary whose rollout asked for it when its regression alert opens; None: only
        alert."""
        self.auto_rollback = auto_rollback
        # events written: candidate, rollout policy offset, alert, change offset, reason, at
        self.rollbacks: list[dict[str, Any]] = []
        # Delivered alerts whose rollback is still to be written (`_roll_back_due`); kept
        # across sessions: the alert is on the log, so a new session will not raise it again.
        self._rollbacks_due: list[dict[str, Any]] = []
        self.log = log
        self.read_only = read_only
        self.config = config or MonitorConfig()
        self.clock = clock
        self.check_every_s = check_every_s
        self.progress = progress
        self.state = MonitorState(self.config)
        self.health = Health(started=clock())
        self.lock = threading.Lock()  # the HTTP thread reads what the loop writes
        self.serde = Serde()
        specs = ensure_topics(log, prefix)
        self.prefix = prefix
        self.decisions = specs[AGENT_DECISIONS].name
        self.actions = specs[AGENT_ACTIONS].name
        self.alerts_topic = specs[MONITOR_ALERTS].name
        self._specs = specs
        self._quiet_until: dict[int, int] = {}
        self._live_open: dict[tuple[str, str], dict[str, Any]] = {}
        self._waiting_since: dict[int, float] = {}
        self._until: Callable[[MonitorState], bool] | None = None
        self._polled = False  # this session has polled at least once
        self.alerts_written = 0

    # -- the loop -----------------------------------------------------------------

    def fold_to_end(self) -> None:
        """Fold every decisions record present now (`Log.read_to_end`), writing nothing:
        the one-shot report of ``ordinance monitor --report``."""
        with self.lock:
            for record in self.log.read_to_end(self.decisions):
                self._fold(record)
            self.health.ready = True
        self._check_liveness()  # the groups' lag as it stands (nothing is written)

    def run(
        self, stop: threading.Event, *, until: Callable[[MonitorState], bool] | None = None
    ) -> None:
        """Fold until ``stop`` is set (or ``until`` holds of the state after a batch).

        A failure (the log unreachable, a write refused) is reported in health and the
        session starts over after a pause: a fresh state folded quietly up to what was
        committed, so an alert whose write failed is raised and written again — never
        lost, never written beside a commit that skipped it."""
        while not stop.is_set():
            try:
                self._session(stop, until)
                return
            except Exception as exc:
                with self.lock:
                    self.health.error = f"{type(exc).__name__}: {exc}"
                    self.health.ready = False
                    self.state = MonitorState(self.config)
                self.progress(f"monitor: {self.health.error}; starting over in 1s")
                stop.wait(1.0)

    def _session(self, stop: threading.Event, until: Callable[[MonitorState], bool] | None) -> None:
        self._until = until
        Runtime(self.log, self, max_records=2000, progress=self.progress).run(stop=stop)

    # -- steps (run by `runtime.Runtime`) --------------------------------------------
    def open(self, log: Log, resources: contextlib.ExitStack) -> Consumer:
        """Every decisions partition from its start, folded quietly up to the group's
        committed position (those alerts were written by an earlier session); a
        read-only monitor has no group, so it commits nothing."""
        self._polled = False
        group = None if self.read_only else MONITOR_GROUP
        consumer = resources.enter_context(log.consumer(group, relaxed=True))
        tps = [TopicPartition(self.decisions, p) for p in log.partitions(self.decisions)]
        committed = consumer.committed(tps)
        self._quiet_until = {tp.partition: committed[tp] or 0 for tp in tps}
        consumer.assign({tp: AtOffset(0) for tp in tps})
        return consumer

    def finished(self) -> bool:
        # ``until`` is asked after a poll (and its checks), never before the first.
        return self._polled and self._until is not None and self._until(self.state)

    def before_poll(self) -> None:
        self._polled = True
        with self.lock:
            self.health.last_poll = self.clock()
            self.health.error = None
        self._roll_back_due()

    def finish(self) -> list[Emit]:
        self._roll_back_due()  # alerts delivered by the runtime's last settle
        return []

    def _roll_back_due(self) -> None:
        """Write the rollbacks of the alerts delivered since the last call — here, in the
        loop, never inside the delivery callback: on Kafka that callback runs inside the
        producer's flush, and the rollback's own synchronous write flushed the same
        producer again from within it, which librdkafka does not allow (the process
        aborted, once, in CI)."""
        due, self._rollbacks_due = self._rollbacks_due, []
        for alert in due:
            self._maybe_roll_back(alert)

    def step(self, record: ConsumedRecord) -> list[Emit] | None:
        with self.lock:
            raised = self._fold(record)
        if record.offset < self._quiet_until.get(record.partition, 0):
            return None  # written by an earlier session; never move a commit backwards
        if self.read_only:
            return []
        self.alerts_written += len(raised)
        return [self._emit(alert) for alert in raised]

    def tasks(self) -> list[Task]:
        # The first liveness check comes with the first poll, then every check_every_s.
        liveness = Task(self.check_every_s, self._check_liveness, last=float("-inf"))
        return [Task(0.0, self._note_ready), liveness]

    def _note_ready(self) -> None:
        # Ready once every partition is folded up to what was committed before.
        with self.lock:
            self.health.ready = self.health.ready or all(
                self.state.positions.get(p, 0) >= end for p, end in self._quiet_until.items()
            )

    def _fold(self, record: ConsumedRecord) -> list[dict[str, Any]]:
        """Fold one decisions record (the caller holds ``lock``); the alerts it raises. An
        undecodable record is counted and passed over, never a reason to stop."""
        decoded = self.serde.decode_record(record, expect=_SCHEMAS)
        if not isinstance(decoded, Decoded):
            self.health.undecodable += 1
            self.state.positions[record.partition] = record.offset + 1
            return []
        self.health.records += 1
        return self.state.fold(record.partition, record.offset, decoded.name, decoded.value)

    def _maybe_roll_back(self, alert: dict[str, Any]) -> None:
        """Write the rolled_back event a live canary regression alert asks for (once per
        candidate and rollout)."""
        details = alert["details"]
        if alert["kind"] != CANARY_REGRESSION or details.get("auto_rollback") is not True:
            return
        candidate, offset = str(details["candidate_bundle_id"]), details["policy_offset"]
        if self.auto_rollback is None:
            self.progress(
                f"monitor: {alert['alert_id']} asks for a rollback of {candidate[:19]}…, but "
                "this monitor was started without --rollback-actor; alerting only"
            )
            return
        if any(
            r["candidate"] == candidate and r["policy_offset"] == offset for r in self.rollbacks
        ):
            return  # another partition's alert for the same rollout: one event is enough
        reason = f"{alert['alert_id']}: {alert['message']}"
        change_offset = append_change(
            self.log,
            "rolled_back",
            candidate,
            actor=self.auto_rollback.actor,
            signer=self.auto_rollback.signer,
            target=self.auto_rollback.target,
            reason=reason,
            prefix=self.prefix,
            clock=self.clock,
        )
        self.rollbacks.append(
            {
                "candidate": candidate,
                "policy_offset": offset,
                "alert_id": alert["alert_id"],
                "change_offset": change_offset,
                "reason": reason,
                "at": dt.datetime.fromtimestamp(self.clock(), dt.UTC),  # when it was written
            }
        )
        self.progress(
            f"monitor: rolled back the canary {candidate[:19]}… on {self.auto_rollback.target!r} "
            f"(policy.changes offset {change_offset}) for {alert['alert_id']}"
        )

    def _emit(self, alert: dict[str, Any]) -> Emit:
        """The alert's record; once it is on the log, the rollback it may ask for is due."""
        value = self.serde.encode("Alert", alert)
        record = Record(str(alert["kind"]).encode(), value, (), _ms(alert["at"]))
        return Emit(self.alerts_topic, record, lambda _where: self._rollbacks_due.append(alert))

    # -- liveness (clock-based, outside the fold) ---------------------------------

    def _check_liveness(self) -> list[Emit]:
        """Compare the groups' committed offsets with their inputs' ends; the lag and
        silence alerts that open or close (none written by a read-only monitor)."""
        now = self.clock()
        lag: dict[str, int] = {}
        for group, topic_key in WATCHED_GROUPS:
            topic = self._specs[topic_key].name
            ends = self.log.end_offsets(topic)
            with self.log.consumer(group, relaxed=True) as reader:
                committed = reader.committed([TopicPartition(topic, p) for p in ends])
            if all(c is None for c in committed.values()):
                continue  # the group never ran here
            lag[group] = sum(max(0, ends[tp.partition] - (c or 0)) for tp, c in committed.items())
        action_ends = self.log.end_offsets(self.actions)
        with self.lock:
            self.health.lag = lag
            decided = dict(self.state.decided_through)
        alerts: list[dict[str, Any]] = []
        for group, behind in sorted(lag.items()):
            firing = behind > self.config.lag.max_records
            clear = behind <= self.config.lag.max_records // 2
            message = f"consumer group {group} is {behind} records behind its input"
            alerts += self._live(
                LAG, group, firing, clear, now, message, {"records_behind": behind}
            )
        for partition, end in sorted(action_ends.items()):
            waiting = end > decided.get(partition, 0)
            if waiting:
                self._waiting_since.setdefault(partition, now)
            else:
                self._waiting_since.pop(partition, None)
            waited = now - self._waiting_since.get(partition, now)
            firing = waiting and waited >= self.config.silence.after_s
            message = (
                f"partition {partition}: {end - decided.get(partition, 0)} actions have waited "
                f"{waited:.0f}s with no decision: is its enforcer running?"
            )
            evidence = {
                "partition": partition,
                "actions_end": end,
                "decided_through": decided.get(partition, 0),
                "waited_ms": int(waited * 1000),
            }
            alerts += self._live(
                SILENCE, str(partition), firing, not waiting, now, message, evidence
            )
        if self.read_only:
            return []
        self.alerts_written += len(alerts)
        return [self._emit(alert) for alert in alerts]

    def _live(
        self,
        kind: str,
        subject: str,
        firing: bool,
        clear: bool,
        now: float,
        message: str,
        evidence: dict[str, Any],
    ) -> list[dict[str, Any]]:
        at = dt.datetime.fromtimestamp(now, dt.UTC)

        def make(kind: str, severity: str, evidence: dict[str, Any]) -> dict[str, Any]:
            alert_id = f"{kind}:{subject}:{_ms(at)}"
            details = {"subject": subject, **evidence}
            return alert_datum(alert_id, kind, severity, at, message, details)

        return episode(self._live_open, (kind, subject), kind, firing, clear, make, evidence)

    def open_alerts(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.open_alerts_unlocked()

    def open_alerts_unlocked(self) -> list[dict[str, Any]]:
        """Open alerts of the fold and of the liveness checks; the caller holds ``lock``."""
        live = sorted(self._live_open.values(), key=lambda a: str(a["alert_id"]))
        return self.state.open() + live


def _ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)
