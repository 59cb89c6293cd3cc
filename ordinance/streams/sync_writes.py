"""The write face of a log whose every write is done before the call returns.

The embedded log and the in-memory log both append a batch, and commit the offsets that
go with it, inside one call (`exactly_once`): `produce` is that call without offsets,
`produce_async` answers before it returns, there is never a delivery left to serve, the
outbox writes each batch at once, and `produce_and_commit` accepts only a consumer of the
same log. That face was written out in both; here it is once, over the one thing each
backend does its own way, `_write`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from ordinance.streams.errors import LogError
from ordinance.streams.log import (
    Consumer,
    Delivered,
    Log,
    OnProduced,
    Outbox,
    Record,
    SyncOutbox,
    TopicPartition,
    produce_now,
)

C = TypeVar("C")


class WritesBeforeReturning(Generic[C]):
    """Mix into a `Log` whose consumers are ``C``; it supplies `_write` and
    `_own_consumer`."""

    def _write(
        self,
        outputs: Sequence[tuple[str, Record]],
        consumer: C | None,
        offsets: Mapping[TopicPartition, int],
    ) -> list[Delivered]:
        """Append ``outputs`` and, with a ``consumer``, commit its ``offsets`` in the same
        atomic step; refuse the whole batch (`ProduceError`, `FencedError`) or none of it."""
        raise NotImplementedError

    def _own_consumer(self, consumer: Consumer) -> C | None:
        """``consumer`` if this very log created it, else None."""
        raise NotImplementedError

    def produce(self, topic: str, records: Sequence[Record]) -> list[Delivered]:
        return self._write([(topic, r) for r in records], None, {})

    def produce_async(
        self: Log, topic: str, records: Sequence[Record], on_done: OnProduced
    ) -> None:
        produce_now(self, topic, records, on_done)

    def serve_deliveries(self, timeout: float = 0.0) -> int:
        return 0  # every produce_async finished before it returned

    def produce_and_commit(
        self,
        outputs: Sequence[tuple[str, Record]],
        consumer: Consumer,
        offsets: Mapping[TopicPartition, int],
    ) -> list[Delivered]:
        own = self._own_consumer(consumer)
        if own is None:
            raise LogError("produce_and_commit needs a consumer created by this same log")
        return self._write(outputs, own, offsets)

    def outbox(self: Log, consumer: Consumer) -> Outbox:
        return SyncOutbox(self, consumer)
