"""`Consumer` on a librdkafka consumer; the settings are explained in kafka_log."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_STORED,
    KafkaError,
    KafkaException,
    Message,
)
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import TopicPartition as KafkaTP

from ordinance.closing import Closing
from ordinance.streams.errors import FencedError, LogError
from ordinance.streams.log import (
    MARKER_HEADER,
    AtOffset,
    AtTime,
    ConsumedRecord,
    Headers,
    Position,
    StartAt,
    TopicPartition,
)

if TYPE_CHECKING:
    from ordinance.streams.kafka_log import KafkaLog

_log = logging.getLogger(__name__)

# Commit errors that mean "you are no longer the owner of this partition".
_FENCED = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
}


def new_consumer(
    client_config: Mapping[str, Any], group: str | None, reset: str, *, relaxed: bool = False
) -> RawConsumer:
    from ordinance.streams.kafka_log import CONSUMER_DEFAULTS, RELAXED_CONSUMER

    return RawConsumer(
        {
            # Settings given in the URL win over the defaults.
            **CONSUMER_DEFAULTS,
            **(RELAXED_CONSUMER if relaxed else {}),
            **client_config,
            # librdkafka wants a group even for assign-only reading; a private
            # one is never committed to, so it leaves no trace on the broker.
            "group.id": group or f"ordinance-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": reset,
        }
    )


def _headers(msg: Message) -> Headers:
    raw = msg.headers()
    if not raw:
        return ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((str(k), v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs)


class KafkaConsumer(Closing):
    def __init__(
        self,
        log: KafkaLog,
        group: str | None,
        reset: Literal["earliest", "latest"],
        *,
        keep_markers: bool = False,
        relaxed: bool = False,
    ) -> None:
        self._log = log
        self._group = group
        self._keep_markers = keep_markers
        self._reset = reset
        self._raw = new_consumer(log.client_config, group, reset, relaxed=relaxed)
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._revoke_hooks: list[Callable[[], None]] = []
        self._closed = False

    def before_revoke(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` when the group is about to take partitions away, while they are
        still ours (inside `poll`, before this member rejoins)."""
        self._revoke_hooks.append(hook)

    @property
    def group(self) -> str | None:
        return self._group

    def subscribe(self, topics: Sequence[str]) -> None:
        if self._group is None:
            raise LogError("subscribe needs a consumer group")
        for topic in topics:
            self._log.partitions(topic)

        def on_assign(_: RawConsumer, tps: list[KafkaTP]) -> None:
            self._assigned = {TopicPartition(tp.topic, tp.partition) for tp in tps}
            self._positions = {
                tp: off for tp, off in self._positions.items() if tp in self._assigned
            }

        def on_revoke(_: RawConsumer, tps: list[KafkaTP]) -> None:
            for hook in self._revoke_hooks:
                hook()
            for tp in tps:
                gone = TopicPartition(tp.topic, tp.partition)
                self._assigned.discard(gone)
                self._positions.pop(gone, None)

        self._raw.subscribe(list(topics), on_assign=on_assign, on_revoke=on_revoke)

    def assign(self, assignment: Mapping[TopicPartition, StartAt]) -> None:
        self._raw.assign([self._resolve(tp, start) for tp, start in assignment.items()])
        self._assigned = set(assignment)
        self._positions = {}

    def _resolve(self, tp: TopicPartition, start: StartAt) -> KafkaTP:
        if isinstance(start, AtOffset):
            return KafkaTP(tp.topic, tp.partition, start.offset)
        if isinstance(start, AtTime):
            found = self._raw.offsets_for_times(
                [KafkaTP(tp.topic, tp.partition, start.timestamp_ms)], timeout=10
            )[0]
            if found.offset < 0:  # no record at or after that time
                return self._resolve(tp, Position.END)
            return KafkaTP(tp.topic, tp.partition, found.offset)
        if start is Position.END:
            # Not OFFSET_END: that resolves to the high watermark, which a
            # broker may under-report. Past our own marker is the true end.
            end = self._log.end_marker(tp.topic, [tp.partition])[tp.partition] + 1
            return KafkaTP(tp.topic, tp.partition, end)
        special = OFFSET_BEGINNING if start is Position.BEGINNING else OFFSET_STORED
        return KafkaTP(tp.topic, tp.partition, special)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._assigned)

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[ConsumedRecord]:
        # consume(n, t) waits for n messages or t seconds; poll() returns on the
        # first one. So: wait for one, then drain what is already buffered.
        first = self._raw.poll(timeout)
        if first is None:
            return []
        messages = [first]
        if max_records > 1:
            messages.extend(self._raw.consume(max_records - 1, 0))
        out: list[ConsumedRecord] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise LogError(f"consumer failed: {err.str()}")
                if err.code() != KafkaError._PARTITION_EOF:
                    _log.warning("consumer: %s", err.str())
                continue
            topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), msg.offset()
            assert offset is not None
            self._positions[TopicPartition(topic, partition)] = offset + 1
            headers = _headers(msg)
            if not self._keep_markers and any(k == MARKER_HEADER for k, _ in headers):
                continue
            out.append(
                ConsumedRecord(
                    topic,
                    partition,
                    offset,
                    msg.key(),
                    msg.value(),
                    headers,
                    int(msg.timestamp()[1]),
                )
            )
        return out

    def seek(self, tp: TopicPartition, start: StartAt) -> None:
        if tp not in self._assigned:
            raise LogError(f"{tp} is not assigned to this consumer")
        target = self._resolve(tp, start)
        if target.offset == OFFSET_STORED:
            committed = self.committed([tp])[tp]
            if committed is not None:
                target = KafkaTP(tp.topic, tp.partition, committed)
            elif self._reset == "latest":
                target = self._resolve(tp, Position.END)
            else:
                target = KafkaTP(tp.topic, tp.partition, OFFSET_BEGINNING)
        self._raw.seek(target)
        self._positions.pop(tp, None)

    def position(self, tp: TopicPartition) -> int:
        if tp not in self._assigned:
            raise LogError(f"{tp} is not assigned to this consumer")
        known = self._positions.get(tp)
        if known is not None:
            return known
        found = self._raw.position([KafkaTP(tp.topic, tp.partition)])[0].offset
        if found < 0:
            committed = self.committed([tp])[tp]
            if committed is not None:
                return committed
            raise LogError(f"{tp}: position unknown until the first poll")
        return int(found)

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        if self._group is None:
            raise LogError("committing offsets needs a consumer group")
        chosen = dict(self._positions) if offsets is None else dict(offsets)
        if not chosen:
            return
        try:
            self._raw.commit(
                offsets=[KafkaTP(tp.topic, tp.partition, off) for tp, off in chosen.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in _FENCED:
                raise FencedError(f"commit refused, partition moved: {error.str()}") from exc
            raise LogError(f"commit failed: {error.str()}") from exc

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        if self._group is None:
            return {tp: None for tp in tps}
        found = self._raw.committed([KafkaTP(tp.topic, tp.partition) for tp in tps], timeout=10)
        return {
            TopicPartition(k.topic, k.partition): (k.offset if k.offset >= 0 else None)
            for k in found
        }

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._raw.close()
