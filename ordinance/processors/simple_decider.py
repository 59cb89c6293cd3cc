"""A minimal decide loop over the log: the stand-in responder until the enforcer exists.

It consumes ``agent.actions`` as a consumer group, evaluates each ActionRequest against
one fixed ruleset, and writes one Decision per action to ``agent.decisions`` on the
action's partition, committing its input offsets in the same call (atomically on the
embedded log). Undecodable input is answered with a fail-closed deny.

What it deliberately lacks (the enforcer proper has it): takeover markers, state folded
from the decision log, de-duplication of re-sent request ids, hot swaps. Window state is
in memory, with the records' event time as the clock — the same logic as the demo's loop
in ``ordinance.commands.demo_log``, here as a reusable class so tests and the agent client
can run against a real responder.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ordinance.policy.decision import DENY, REQUIRE_APPROVAL, Decision
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.window import InMemoryWindows
from ordinance.processors.wire import content_ticket, decision_to_wire, request_from_wire
from ordinance.streams import ConsumedRecord, Consumer, Log, Record, TopicPartition, open_log
from ordinance.streams.serde import Decoded, Serde, UndecodableRecord
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, DEFAULT_PREFIX

UNDECODABLE = "undecodable"  # the code of a deny for a record that did not decode
ENFORCER_ID = "ordinance-simple-decider"


def _when(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class SimpleDecider:
    """Decides every action it is handed; see the module docstring for what it is not."""

    def __init__(
        self,
        log: Log,
        ruleset: Ruleset,
        *,
        prefix: str = DEFAULT_PREFIX,
        group: str = ENFORCER_ID,
        enforcer_id: str = ENFORCER_ID,
    ) -> None:
        self.log = log
        self.ruleset = ruleset
        self.actions = prefix + AGENT_ACTIONS
        self.decisions = prefix + AGENT_DECISIONS
        self.group = group
        self.enforcer_id = enforcer_id
        self.decided = 0
        self._serde = Serde()
        # Window functions see the event time of the record being decided, so a replay
        # of the same actions gives the same answers whatever the wall clock says.
        self._now = 0.0
        self._windows = InMemoryWindows(clock=lambda: self._now)

    def decide(self, record: ConsumedRecord) -> tuple[str, str, Decision, str | None]:
        """(request id, agent id, decision, approval ticket) for one consumed action; never
        raises. The ticket (the enforcer's content hash) is set on require_approval only."""
        decoded = self._serde.decode_record(record, expect={"ActionRequest"})
        if isinstance(decoded, UndecodableRecord):
            detail = f"{decoded.problem.value}: {decoded.detail}"
            return (
                f"{UNDECODABLE}@{record.partition}:{record.offset}",
                (record.key or b"").decode(errors="replace"),
                Decision(DENY, (), (detail,), (), self.ruleset.bundle_id, UNDECODABLE, detail),
                None,
            )
        assert isinstance(decoded, Decoded)
        datum = decoded.value
        self._now = datum["event_time"].timestamp()
        request = request_from_wire(datum)
        decision = self.ruleset.evaluate(request, self._windows)
        if decision.allowed:
            canonical = self.ruleset.canonical(request)
            self._windows.record(canonical.agent["id"], canonical.tool, canonical.args, self._now)
        ticket = content_ticket(datum) if decision.effect == REQUIRE_APPROVAL else None
        return datum["request_id"], datum["agent"]["id"], decision, ticket

    def step(self, consumer: Consumer, *, max_records: int = 500, timeout: float = 0.1) -> int:
        """Decide one poll's worth of actions; outputs and input offsets in one call."""
        records = consumer.poll(max_records=max_records, timeout=timeout)
        if not records:
            return 0
        outputs: list[tuple[str, Record]] = []
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            request_id, agent_id, decision, ticket = self.decide(record)
            datum = decision_to_wire(
                decision,
                request_id=request_id,
                agent_id=agent_id,
                enforcer_id=self.enforcer_id,
                evaluated_at=_when(self._now),
                action_offset=record.offset,
                approval_ticket=ticket,
            )
            # Same partition as the action: one writer per decisions partition, and the
            # client waiting for this answer reads only that partition.
            out = Record(
                record.key,
                self._serde.encode("Decision", datum),
                (),
                record.timestamp_ms,
                record.partition,
            )
            outputs.append((self.decisions, out))
            offsets[record.position] = record.offset + 1
        self.log.produce_and_commit(outputs, consumer, offsets)
        self.decided += len(records)
        return len(records)

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Decide until ``stop`` is set; ``ready`` is set once the group gave us partitions."""
        with self.log.consumer(self.group) as consumer:
            consumer.subscribe([self.actions])
            while not stop.is_set():
                self.step(consumer)
                if ready is not None and not ready.is_set() and consumer.assignment():
                    ready.set()


@contextmanager
def decider_thread(
    url: str,
    ruleset: Ruleset,
    *,
    prefix: str = DEFAULT_PREFIX,
    group: str = ENFORCER_ID,
    ready_timeout: float = 30.0,
) -> Iterator[SimpleDecider]:
    """Run a `SimpleDecider` on its own log connection in a background thread.

    Yields once the decider owns partitions (so requests published now are answered
    without waiting for a group join); on exit stops it and re-raises what killed it.
    """
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []
    with open_log(url) as log:
        decider = SimpleDecider(log, ruleset, prefix=prefix, group=group)

        def main() -> None:
            try:
                decider.run(stop, ready)
            except BaseException as exc:  # handed to the owner; a thread cannot raise
                failure.append(exc)
                ready.set()

        thread = threading.Thread(target=main, name="simple-decider", daemon=True)
        thread.start()
        try:
            if not ready.wait(ready_timeout):
                raise TimeoutError(f"the decider got no partitions within {ready_timeout}s")
            if failure:
                raise failure[0]
            yield decider
        finally:
            stop.set()
            thread.join()
        if failure:
            raise failure[0]


__all__ = ["ENFORCER_ID", "UNDECODABLE", "SimpleDecider", "decider_thread"]
