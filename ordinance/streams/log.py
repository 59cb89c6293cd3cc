"""The `Log` protocol: topics, partitions, offsets, keys, headers and event time.

Every processor talks to a `Log` and nothing else, so the same code runs on the
embedded SQLite log and on Kafka. Values are opaque bytes here; `serde` gives
them meaning.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, NamedTuple, Protocol, Self

from ordinance.streams.errors import ProduceError

Headers = tuple[tuple[str, bytes], ...]

#: Header carried by the log's own "caught up" marker records. Consumers never
#: hand such records to callers; the name is reserved.
MARKER_HEADER = "ordinance.marker"


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """Everything a topic is created with; no backend default is relied upon.

    ``retention_ms``/``retention_bytes`` of ``None`` mean unlimited. Size
    retention is per partition, as in Kafka.
    """

    name: str
    partitions: int
    cleanup: Literal["delete", "compact"] = "delete"
    retention_ms: int | None = None
    retention_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"topic {self.name!r}: partitions must be >= 1")
        if self.cleanup not in ("delete", "compact"):
            raise ValueError(f"topic {self.name!r}: cleanup must be 'delete' or 'compact'")
        for label, limit in (
            ("retention_ms", self.retention_ms),
            ("retention_bytes", self.retention_bytes),
        ):
            if limit is not None and limit <= 0:
                raise ValueError(f"topic {self.name!r}: {label} must be positive or None")


class Record(NamedTuple):
    """A record to produce.

    ``event_time_ms`` is when the thing happened (not when the log received it);
    it becomes the record timestamp, which `AtTime` seeks on. ``partition``
    overrides the key-hash placement. A ``None`` value on a compact topic is a
    tombstone: the key is deleted.
    """

    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    event_time_ms: int | None = None
    partition: int | None = None


class Delivered(NamedTuple):
    """Proof that the log acknowledged a record: where it now lives."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class ConsumedRecord(NamedTuple):
    # Tuples, not dataclasses: a consumer builds 100k+ of these a second.
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int

    @property
    def position(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, as Kafka's lastHeader does."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


class Position(enum.Enum):
    BEGINNING = "beginning"
    END = "end"
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True)
class AtOffset:
    offset: int


@dataclass(frozen=True, slots=True)
class AtTime:
    """The first record whose timestamp is >= ``timestamp_ms``, or the end if none."""

    timestamp_ms: int


StartAt = Position | AtOffset | AtTime


class Consumer(Protocol):
    """Reads records, either as a member of a group or from explicit positions.

    A consumer is used from one thread. Offsets are "next offset to read", as in
    Kafka: committing ``record.offset + 1`` means ``record`` is done.
    """

    @property
    def group(self) -> str | None: ...

    def subscribe(self, topics: Sequence[str]) -> None:
        """Join the group for these topics; partitions are assigned and moved
        between members as they join and leave. Requires a group."""

    def assign(self, assignment: Mapping[TopicPartition, StartAt]) -> None:
        """Read exactly these partitions from these positions (no group balancing)."""

    def assignment(self) -> frozenset[TopicPartition]:
        """Partitions this consumer currently owns. With `subscribe` this changes
        during `poll` as the group rebalances."""

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[ConsumedRecord]:
        """Up to ``max_records`` records in offset order per partition; waits up to
        ``timeout`` seconds for the first one. Also keeps group membership alive."""

    def seek(self, tp: TopicPartition, start: StartAt) -> None: ...

    def position(self, tp: TopicPartition) -> int:
        """Offset of the next record `poll` returns for an assigned partition."""

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Record progress for the group; ``None`` commits the current positions."""

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]: ...

    def close(self) -> None:
        """Leave the group, so the partitions move to other members at once."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


OnDelivered = Callable[[list[Delivered]], None]
#: Called once per `produce_async` batch: its `Delivered`s (input order) or why it failed.
OnProduced = Callable[[list[Delivered] | ProduceError], None]


class Outbox(Protocol):
    """Where a processor sends each batch's outputs with the input offsets they answer.

    Batches are delivered in order, and input offsets are committed only once their batch
    and every earlier one were acknowledged. A backend may let `send` return before the
    broker acknowledges (the next batch is decided meanwhile); `settle` waits for
    everything sent. A failed delivery poisons the outbox: the next `send` or `settle`
    raises `ProduceError`, nothing after it is committed, and the processor must stop.
    """

    def send(
        self,
        outputs: Sequence[tuple[str, Record]],
        offsets: Mapping[TopicPartition, int],
        on_delivered: OnDelivered | None = None,
    ) -> None:
        """Queue one batch; ``on_delivered`` gets its `Delivered`s (in input order)
        once every record of the batch was acknowledged (a batch without outputs has
        nothing to report)."""

    def settle(self) -> None:
        """Wait until every batch sent was acknowledged and commit its offsets."""

    def close(self) -> None:
        """Settle, then stop serving this consumer."""


def produce_now(log: Log, topic: str, records: Sequence[Record], on_done: OnProduced) -> None:
    """`Log.produce_async` for a log whose produce finishes before it returns (the
    embedded and the in-memory log): the answer is given at once."""
    try:
        delivered = log.produce(topic, records)
    except ProduceError as exc:
        on_done(exc)
    else:
        on_done(delivered)


class SyncOutbox:
    """An `Outbox` that writes each batch before `send` returns, with `produce_and_commit`
    (one transaction where the log is `exactly_once`)."""

    def __init__(self, log: Log, consumer: Consumer) -> None:
        self._log = log
        self._consumer = consumer

    def send(
        self,
        outputs: Sequence[tuple[str, Record]],
        offsets: Mapping[TopicPartition, int],
        on_delivered: OnDelivered | None = None,
    ) -> None:
        if outputs:
            delivered = self._log.produce_and_commit(outputs, self._consumer, offsets)
            if on_delivered is not None:
                on_delivered(delivered)
        elif offsets:
            self._consumer.commit(offsets)

    def settle(self) -> None:
        """Nothing is ever outstanding."""

    def close(self) -> None:
        """Nothing to release."""


class Log(Protocol):
    """A partitioned, offset-addressed record log (the embedded one or Kafka)."""

    @property
    def url(self) -> str: ...

    @property
    def exactly_once(self) -> bool:
        """True when `produce_and_commit` is atomic. When False it is produce then
        commit (at-least-once); processors make it effectively-once by
        skipping requests they already answered."""

    def create_topic(self, spec: TopicSpec) -> None:
        """Create the topic, or accept it if it already exists with the same
        partition count; a different count raises `TopicConfigError`."""

    def partitions(self, topic: str) -> list[int]: ...

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Offset one past the last record per partition. Informational: on Kafka
        it may be stale; to know you have read everything use `read_to_end`."""

    def produce(self, topic: str, records: Sequence[Record]) -> list[Delivered]:
        """Append and wait for acknowledgement; raises `ProduceError` if any
        record was not acknowledged. Results are in input order."""

    def produce_async(self, topic: str, records: Sequence[Record], on_done: OnProduced) -> None:
        """Hand ``records`` over and return at once; ``on_done`` gets the batch's outcome
        from a later `serve_deliveries` (or before returning, on a log that writes
        synchronously). It runs on the serving thread and must not raise."""

    def serve_deliveries(self, timeout: float = 0.0) -> int:
        """Run the ``on_done`` of batches acknowledged so far, waiting up to ``timeout``
        for one; returns how many records are still unacknowledged."""

    def produce_and_commit(
        self,
        outputs: Sequence[tuple[str, Record]],
        consumer: Consumer,
        offsets: Mapping[TopicPartition, int],
    ) -> list[Delivered]:
        """Append ``outputs`` and commit ``consumer``'s ``offsets`` together
        (atomically when `exactly_once`)."""

    def consumer(
        self,
        group: str | None = None,
        *,
        reset: Literal["earliest", "latest"] = "earliest",
        relaxed: bool = False,
    ) -> Consumer:
        """A new consumer. ``reset`` applies where the group has no committed
        offset (or it fell out of retention). A ``relaxed`` consumer may see records
        up to ~0.1 s late in exchange for far fewer requests to a Kafka broker (tables,
        controllers, auditors; not the decision path)."""

    def outbox(self, consumer: Consumer) -> Outbox:
        """A processor's writer for what it makes of ``consumer``'s records (see `Outbox`)."""

    def read_to_end(
        self, topic: str, partitions: Sequence[int] | None = None
    ) -> Iterator[ConsumedRecord]:
        """Every record present when called, from the start of retention, ending
        only once every partition is caught up (never trusting a watermark)."""

    def latest_by_key(self, topic: str) -> dict[bytes, ConsumedRecord]:
        """The last value of every key (tombstoned keys absent): a compact
        topic read as a table."""

    def close(self, timeout: float | None = None) -> None:
        """Release the log. ``timeout`` bounds the wait for work still in progress (records
        not yet acknowledged, a write waiting for another process's lock); what has not
        finished by then fails (`ProduceError` to its callback) instead of holding the caller."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def fold_latest(records: Iterator[ConsumedRecord]) -> dict[bytes, ConsumedRecord]:
    """Last record per key, dropping keys whose last record is a tombstone."""
    table: dict[bytes, ConsumedRecord] = {}
    for record in records:
        if record.key is None:
            continue
        if record.value is None:
            table.pop(record.key, None)
        else:
            table[record.key] = record
    return table
