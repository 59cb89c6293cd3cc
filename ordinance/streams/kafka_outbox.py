"""`Outbox` on Kafka: a processor decides its next batch while the broker acknowledges the
last one.

Waiting for each batch's acknowledgement and then a synchronous offset commit put two
broker round trips between every batch and the next: at 1k actions/s on the local broker
the enforcer spent ~4 of every 5 seconds waiting and answers queued behind it
(bench/pipeline_bench.py). Here `send` only enqueues; acknowledgements are served on the
next `send` or `settle`, and input offsets are committed in batch order, at most every
``commit_interval_s``, once their batch and every earlier one are acknowledged.

Why this keeps the enforcer effectively-once:

* The idempotent producer keeps each partition's records in order, and a record that
  fails fails the ones after it: the log never holds a later decision without the
  earlier ones.
* A failure poisons the outbox (`ProduceError` on the next call, nothing after it
  committed), so the process stops as it did when each write was synchronous; the next
  owner refolds what was actually written.
* Before the group takes a partition away (`on_revoke`, which runs inside the consumer's
  poll, before it rejoins) the outbox settles: nothing of ours is in flight when the new
  owner writes its takeover marker.
* Offsets committed late only mean redelivery, which the fold answers (a request id
  already decided is not decided again).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ordinance.closing import Closing
from ordinance.streams.kafka_log import produce_failure
from ordinance.streams.log import Delivered, OnDelivered, Record, TopicPartition

if TYPE_CHECKING:
    from ordinance.streams.kafka_consumer import KafkaConsumer
    from ordinance.streams.kafka_log import KafkaLog

#: How stale committed offsets may get while batches keep coming (Kafka Streams commits
#: every 100 ms with exactly-once too). Staleness costs only redelivery after a crash.
COMMIT_INTERVAL_S = 0.1


class _Batch:
    __slots__ = ("done", "failed", "offsets")

    def __init__(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.offsets = dict(offsets)
        self.done = False
        self.failed = False


class KafkaOutbox(Closing):
    def __init__(
        self,
        log: KafkaLog,
        consumer: KafkaConsumer,
        *,
        commit_interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        self._log = log
        self._consumer = consumer
        self._interval = commit_interval_s
        self._batches: deque[_Batch] = deque()
        self._committable: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()
        self._failures: list[str] = []
        self._closed = False
        consumer.before_revoke(self._before_revoke)

    def send(
        self,
        outputs: Sequence[tuple[str, Record]],
        offsets: Mapping[TopicPartition, int],
        on_delivered: OnDelivered | None = None,
    ) -> None:
        self._raise_failure()
        batch = _Batch(offsets)

        def finished(delivered: list[Delivered], failures: list[str]) -> None:
            batch.done = True
            if failures:
                batch.failed = True
                self._failures.extend(failures)
            elif on_delivered is not None and outputs:
                on_delivered(delivered)

        self._log.send_batch(outputs, finished)
        # Queued only once handed over: a batch that was never sent must not be waited
        # for (by `settle`, or by the consumer's close through `_before_revoke`).
        self._batches.append(batch)
        self._log.serve_deliveries()  # the acknowledgements that have arrived meanwhile
        self._raise_failure()
        self._commit(force=False)

    def _raise_failure(self) -> None:
        if self._failures:
            raise produce_failure(self._failures)

    def _commit(self, *, force: bool) -> None:
        # Only a prefix of fully acknowledged batches: an offset never runs ahead of an
        # output that might still be lost.
        while self._batches and self._batches[0].done and not self._batches[0].failed:
            self._committable.update(self._batches.popleft().offsets)
        now = time.monotonic()
        if self._committable and (force or now - self._committed_at >= self._interval):
            self._consumer.commit(self._committable)
            self._committable = {}
            self._committed_at = now

    def settle(self) -> None:
        # A failure ends the wait at once: the processor is stopping anyway.
        self._log.flush_until(
            lambda: bool(self._failures) or all(batch.done for batch in self._batches)
        )
        self._raise_failure()
        self._commit(force=True)

    def _before_revoke(self) -> None:
        # A failure already known was (or will be) raised to the processor, which is
        # stopping; raising again from the consumer's close would only hide it.
        if not self._closed and not self._failures:
            self.settle()

    def close(self) -> None:
        try:
            self.settle()
        finally:
            self._closed = True
