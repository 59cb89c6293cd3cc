"""Run an `Enforcer` until it has read everything written before the run, then stop it.

`Enforcer.run(until_idle=True, idle_s=...)` stops after ``idle_s`` without actions, so a
test pays that wait on every run, and a first fetch slower than ``idle_s`` after a Kafka
group join (or a slow takeover, which counts as idle) ends a run before it decided
anything. Here the run ends once the enforcer owns every actions and approvals partition
and each of its readers (actions, approvals, policy.active and, with a trust root, the
registry) stands at or past the end those topics had when the run began: the end is exact
on the embedded log, and on Kafka it is past a marker written before the run (a true end,
as `read_to_end` and `Position.END` use; every consumer skips markers). The iteration that
gets there still takes over, swaps, syncs identity and decides what it polled, and the run
then settles its outbox as any stopped run does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ordinance.processors.enforcer import Enforcer, EnforcerReport
from ordinance.streams import Log, TopicPartition
from ordinance.streams.kafka_log import KafkaLog
from ordinance.streams.reading import known_position

#: How long a run may take to catch up before the test fails (a stuck run, not a slow one).
CATCH_UP_TIMEOUT_S = 120.0


def topic_ends(log: Log, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """Each partition's true end now: exact on the embedded log, past a marker on Kafka."""
    ends: dict[TopicPartition, int] = {}
    for topic in topics:
        partitions = log.partitions(topic)
        if isinstance(log, KafkaLog):
            found = {p: offset + 1 for p, offset in log.end_marker(topic, partitions).items()}
        else:
            found = log.end_offsets(topic)
        ends.update({TopicPartition(topic, p): end for p, end in found.items()})
    return ends


class _Watched:
    """The enforcer's log, noting the consumers `Enforcer.run` opens first (the policy
    reader, the registry reader, then the group consumer; the short-lived readers of a
    takeover come later and are not the run's); the group consumer's poll asks after each
    batch whether the run has caught up."""

    def __init__(self, log: Log, after_poll: Callable[[Any], None]) -> None:
        self._log = log
        self._after_poll = after_poll
        self.consumers: list[Any] = []
        self._grouped = False

    def consumer(self, group: str | None = None, **options: Any) -> Any:
        consumer = self._log.consumer(group, **options)
        if self._grouped:
            return consumer
        self.consumers.append(consumer)
        if group is not None:
            self._grouped = True
            poll = consumer.poll

            def watched_poll(*args: Any, **kwargs: Any) -> Any:
                records = poll(*args, **kwargs)
                self._after_poll(consumer)
                return records

            consumer.poll = watched_poll  # type: ignore[method-assign]
        return consumer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def run_caught_up(enforcer: Enforcer, timeout_s: float = CATCH_UP_TIMEOUT_S) -> EnforcerReport:
    """Run ``enforcer`` (the only member of its group) until it has decided everything
    on its input topics written before this call; see the module docstring."""
    log = enforcer.log
    inputs = [enforcer.actions, enforcer.approvals]
    read = [*inputs, enforcer.active_topic]
    if enforcer.trust is not None:
        read.append(enforcer.registry_topic)
    ends = topic_ends(log, read)
    owned_needed = {tp for tp in ends if tp.topic in inputs}
    stop = threading.Event()
    deadline = time.monotonic() + timeout_s

    def after_poll(group_consumer: Any) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the enforcer did not catch up within {timeout_s}s")
        if not owned_needed <= group_consumer.assignment():
            return
        for consumer in watched.consumers:
            for tp in consumer.assignment():
                end = ends.get(tp)
                if end is None:
                    continue
                position = known_position(consumer, tp)  # None: nothing fetched yet
                if position is None or position < end:
                    return
        stop.set()  # this iteration still decides what it polled; then the run ends

    watched = _Watched(log, after_poll)
    enforcer.log = watched
    try:
        return enforcer.run(stop=stop)
    finally:
        enforcer.log = log
