"""The in-memory log (`memory://NAME`): the whole `Log` contract inside one process.

For tests and for embedding Ordinance in one process. Logs live in a process-wide
registry by name, so every `open_log("memory://x")` in a process (``serve`` opens one
handle per processor) is a handle onto the same topics, groups and offsets, and closing
a handle leaves the data to the others. Nothing survives the process, and another
process that opens the same URL gets a log of its own.

One `threading.Condition` per log guards all of its data. An append and the offsets
committed with it happen under it together, which is what makes `produce_and_commit`
atomic (`exactly_once`); a `poll` with nothing to return waits on it, so a produce wakes
a waiting consumer at once instead of at its next sleep.

Records are kept for the life of the log: time and size retention are accepted in a
`TopicSpec` but not enforced, and compact topics are not compacted. A compact topic
still keeps the index of each key's last record that `latest_by_key` reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ordinance.closing import Closing
from ordinance.streams.errors import LogError, ProduceError, TopicConfigError
from ordinance.streams.log import (
    ConsumedRecord,
    Consumer,
    Delivered,
    Record,
    TopicPartition,
    TopicSpec,
    fold_latest,
)
from ordinance.streams.memory_consumer import MemoryConsumer
from ordinance.streams.record_rules import DEFAULT_MAX_RECORD_BYTES, admit
from ordinance.streams.sync_writes import WritesBeforeReturning


def wall_ms() -> int:
    """Record timestamps are wall time, as on the other backends: `AtTime` seeks by them."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class MemoryTopic:
    spec: TopicSpec
    #: Per partition, every record in offset order: a record's offset is its index
    #: (nothing is ever removed, so offsets stay dense from 0).
    records: list[list[ConsumedRecord]]
    #: Compact topics only: per partition, each live key's last record.
    latest: list[dict[bytes, ConsumedRecord]] | None


@dataclass(slots=True)
class GroupMember:
    topics: tuple[str, ...]
    seen_ms: int


@dataclass(slots=True)
class MemoryGroup:
    """A consumer group, as the embedded log keeps it in its tables: members with their
    last heartbeat, at most one owner per partition, and the committed offsets."""

    members: dict[str, GroupMember] = field(default_factory=dict)
    owners: dict[TopicPartition, str] = field(default_factory=dict)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    #: Bumped whenever membership or ownership changes, so every member rebalances on
    #: its next poll instead of waiting for its next heartbeat.
    generation: int = 0

    def heartbeat(self, member: str, topics: tuple[str, ...], now_ms: int) -> bool:
        """Record that ``member`` is alive; True if it joined or changed its topics."""
        before = self.members.get(member)
        self.members[member] = GroupMember(topics, now_ms)
        return before is None or before.topics != topics


class MemoryStore:
    """The data behind every handle onto one named log. Touch it only under ``cond``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cond = threading.Condition()
        self.topics: dict[str, MemoryTopic] = {}
        self.groups: dict[str, MemoryGroup] = {}
        #: Bumped by every append and group change: what a waiting `poll` waits for.
        self.version = 0

    def changed(self) -> None:
        self.version += 1
        self.cond.notify_all()

    def topic(self, name: str) -> MemoryTopic:
        found = self.topics.get(name)
        if found is None:
            raise TopicConfigError(
                f"topic {name!r} does not exist; create it with an explicit spec"
            )
        return found

    def group(self, name: str) -> MemoryGroup:
        found = self.groups.get(name)
        if found is None:
            found = self.groups[name] = MemoryGroup()
        return found


_registry: dict[str, MemoryStore] = {}
_registry_lock = threading.Lock()


def _store_named(name: str, create: bool) -> MemoryStore:
    with _registry_lock:
        found = _registry.get(name)
        if found is None:
            if not create:
                raise LogError(
                    f"no in-memory log named {name!r} in this process: open it with"
                    " create=True first (it does not survive the process)"
                )
            found = _registry[name] = MemoryStore(name)
        return found


def discard_memory_log(name: str) -> None:
    """Forget the log called ``name``: the next open starts empty. Handles still open
    keep their data until they go; tests use this to free what they made."""
    with _registry_lock:
        _registry.pop(name, None)


class MemoryLog(Closing, WritesBeforeReturning[MemoryConsumer]):
    """A handle onto the in-memory log called ``name`` (see the module docstring).

    ``session_timeout_ms``, ``heartbeat_interval_ms`` and ``max_record_bytes`` mean what
    they mean on the embedded log and, as there, belong to the handle: each member
    judges the others' silence by its own handle's session timeout. ``clock`` (monotonic
    seconds) measures heartbeats and session timeouts; handles onto one log that run a
    group together must share it. Without ``create`` the log must already exist in this
    process (`LogError`).
    """

    def __init__(
        self,
        name: str,
        *,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 250,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        create: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not name:
            raise LogError("an in-memory log needs a name: memory://NAME")
        for label, value in (
            ("session_timeout_ms", session_timeout_ms),
            ("heartbeat_interval_ms", heartbeat_interval_ms),
            ("max_record_bytes", max_record_bytes),
        ):
            if value <= 0:
                raise LogError(f"{label} must be positive, got {value}")
        self.store = _store_named(name, create)
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._max_record_bytes = max_record_bytes
        self._clock = clock
        self._closed = False

    @property
    def url(self) -> str:
        return f"memory://{self.store.name}"

    @property
    def exactly_once(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def now_ms(self) -> int:
        """The group clock, in milliseconds."""
        return int(self._clock() * 1000)

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"{self.url}: log is closed")

    def create_topic(self, spec: TopicSpec) -> None:
        with self.store.cond:
            self._check_open()
            existing = self.store.topics.get(spec.name)
            if existing is None:
                self.store.topics[spec.name] = MemoryTopic(
                    spec,
                    [[] for _ in range(spec.partitions)],
                    [{} for _ in range(spec.partitions)] if spec.cleanup == "compact" else None,
                )
                return
            old = existing.spec
            if old.partitions != spec.partitions or old.cleanup != spec.cleanup:
                raise TopicConfigError(
                    f"topic {spec.name!r} exists with {old.partitions} partitions"
                    f" ({old.cleanup}); asked for {spec.partitions} ({spec.cleanup})"
                )
            # Retention may change in place, as Kafka's alterConfigs and the embedded
            # log allow (it is recorded, not enforced, here).
            existing.spec = spec

    def partitions(self, topic: str) -> list[int]:
        with self.store.cond:
            self._check_open()
            return list(range(self.store.topic(topic).spec.partitions))

    def end_offsets(self, topic: str) -> dict[int, int]:
        with self.store.cond:
            self._check_open()
            return {p: len(rs) for p, rs in enumerate(self.store.topic(topic).records)}

    def _own_consumer(self, consumer: Consumer) -> MemoryConsumer | None:
        if isinstance(consumer, MemoryConsumer) and consumer.log is self:
            return consumer
        return None

    def _write(
        self,
        outputs: Sequence[tuple[str, Record]],
        consumer: MemoryConsumer | None,
        offsets: Mapping[TopicPartition, int],
    ) -> list[Delivered]:
        now = wall_ms()
        cap = self._max_record_bytes
        store = self.store
        with store.cond:
            if self._closed:
                raise ProduceError(f"{self.url}: log is closed")
            # Everything that can refuse the batch is checked before the first append,
            # so a refused batch (or a fenced commit) leaves no record and no offset.
            placed: list[tuple[MemoryTopic, int, Record]] = []
            for name, record in outputs:
                topic = store.topic(name)
                p, _ = admit(topic.spec, record, cap)
                placed.append((topic, p, record))
            if consumer is not None:
                consumer.check_commit_locked(offsets)
            delivered = [self._append(topic, p, record, now) for topic, p, record in placed]
            if consumer is not None:
                consumer.commit_locked(offsets)
            if delivered:
                store.changed()
        return delivered

    @staticmethod
    def _append(topic: MemoryTopic, p: int, record: Record, now: int) -> Delivered:
        key, value, headers, event_time, _ = record
        # Stored records are shared with every reader: bytes and tuples, never a buffer
        # the producer could still change.
        if key is not None and type(key) is not bytes:
            key = bytes(key)
        if value is not None and type(value) is not bytes:
            value = bytes(value)
        rows = topic.records[p]
        ts = now if event_time is None else event_time
        stored = ConsumedRecord(topic.spec.name, p, len(rows), key, value, tuple(headers), ts)
        rows.append(stored)
        if topic.latest is not None:
            assert key is not None  # checked by _write (`admit`)
            if value is None:
                topic.latest[p].pop(key, None)  # a tombstone deletes the key
            else:
                topic.latest[p][key] = stored
        return Delivered(stored.topic, p, stored.offset, ts)

    def consumer(
        self,
        group: str | None = None,
        *,
        reset: Literal["earliest", "latest"] = "earliest",
        relaxed: bool = False,
    ) -> Consumer:
        del relaxed  # a waiting poll costs nothing here: it sleeps on the condition
        self._check_open()
        return MemoryConsumer(self, group, reset)

    def read_to_end(
        self, topic: str, partitions: Sequence[int] | None = None
    ) -> Iterator[ConsumedRecord]:
        # The end is fixed now, at the call, whatever is appended while the caller
        # iterates: partitions only grow, so a prefix taken under the lock stays valid.
        with self.store.cond:
            self._check_open()
            found = self.store.topic(topic)
            wanted = range(found.spec.partitions) if partitions is None else partitions
            for p in wanted:
                if not 0 <= p < found.spec.partitions:
                    raise LogError(f"topic {topic!r} has no partition {p}")
            ends = [(found.records[p], len(found.records[p])) for p in wanted]
        return _prefixes(ends)

    def latest_by_key(self, topic: str) -> dict[bytes, ConsumedRecord]:
        with self.store.cond:
            self._check_open()
            found = self.store.topic(topic)
            if found.latest is not None:
                # Offset order per partition, as a fold of the partition would give.
                return {
                    r.key: r
                    for table in found.latest
                    for r in sorted(table.values(), key=lambda r: r.offset)
                    if r.key is not None
                }
        return fold_latest(self.read_to_end(topic))

    def close(self, timeout: float | None = None) -> None:
        """Close this handle; the log's data stays for the other handles. Waits at most
        ``timeout`` seconds for the log's lock (held only for the length of one append),
        so that once `close` returns no write through this handle can still land; a
        write already under way when the wait gives up completes, and no later one does."""
        if self._closed:
            return
        locked = self.store.cond.acquire(timeout=-1 if timeout is None else max(0.0, timeout))
        self._closed = True  # even without the lock: every later write checks it
        if locked:
            self.store.cond.release()


def _prefixes(ends: list[tuple[list[ConsumedRecord], int]]) -> Iterator[ConsumedRecord]:
    for rows, end in ends:
        for i in range(end):
            yield rows[i]
