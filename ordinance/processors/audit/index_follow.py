"""Following ``agent.decisions`` into the audit index (`indexer.AuditIndex`), run by
`runtime.Runtime`.

Every partition of the topic is read by one ungrouped consumer, so the indexer never joins
(or disturbs) a consumer group; its position is the index's own, stored with the rows in
one transaction. The steps gather a poll's records; a task after each poll writes them —
rows, positions, heads and owners — as one index transaction, and notices a bounded run
that stopped moving towards its end offsets (`STALL_TIMEOUT_S`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ordinance.processors.audit.index_rows import IndexReport, decision_rows
from ordinance.processors.audit.indexer import AuditIndex, Head, IndexFileError, record_digest
from ordinance.processors.runtime import Emit, ProcessorBase, Runtime, Task
from ordinance.streams import AtOffset, ConsumedRecord, Consumer, Log, TopicPartition
from ordinance.streams.errors import LogError
from ordinance.streams.reading import ReadTimeout, known_position, read_ranges
from ordinance.streams.serde import Serde
from ordinance.streams.topics import AGENT_DECISIONS, DEFAULT_PREFIX

Progress = Callable[[IndexReport], None]
STALL_TIMEOUT_S = 30.0


def decisions_topic(prefix: str = DEFAULT_PREFIX) -> str:
    return prefix + AGENT_DECISIONS


class IndexFollower(ProcessorBase):
    """The indexer's steps (module docstring)."""

    name = "indexer"

    def __init__(
        self,
        index_path: Path | str,
        *,
        prefix: str = DEFAULT_PREFIX,
        follow: bool = False,
        progress: Progress | None = None,
        progress_every_s: float = 1.0,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        self.index_path = index_path
        self.topic = decisions_topic(prefix)
        self.follow = follow
        self.progress = progress
        self.progress_every_s = progress_every_s
        self.stall_timeout_s = stall_timeout_s
        self.serde = Serde()
        self.report = IndexReport()
        self.began = time.monotonic()
        self._pending: list[ConsumedRecord] = []
        self._unreported = False
        self._index: AuditIndex | None = None
        self._consumer: Consumer | None = None
        self.partitions: list[int] = []
        self.positions: dict[int, int] = {}
        self.ends: dict[int, int] | None = None

    def open(self, log: Log, resources: contextlib.ExitStack) -> Consumer:
        # First: a log without the topic leaves no index file behind.
        self.partitions = log.partitions(self.topic)
        index = resources.enter_context(AuditIndex(self.index_path, topic=self.topic))
        consumer = resources.enter_context(log.consumer(None, relaxed=True))
        stored = index.positions()
        self.positions = {p: stored.get(p, 0) for p in self.partitions}
        # Stored with the positions, so the rule applies across restarts without reading
        # back to each partition's latest marker.
        self.owners: dict[int, str | None] = dict(index.owners())
        known_ends = log.end_offsets(self.topic)
        _check_same_log(log, self.topic, self.positions, index.heads(), known_ends)
        consumer.assign(
            {TopicPartition(self.topic, p): AtOffset(o) for p, o in self.positions.items()}
        )
        self.ends = None if self.follow else known_ends
        self._index, self._consumer = index, consumer
        self._last_report = self._last_progress = time.monotonic()
        return consumer

    def finished(self) -> bool:
        ends = self.ends
        return ends is not None and all(
            self.positions[p] >= ends.get(p, 0) for p in self.partitions
        )

    def step(self, record: ConsumedRecord) -> list[Emit]:
        self._pending.append(record)
        return []

    def tasks(self) -> list[Task]:
        return [Task(0.0, self._write)]

    def _write(self) -> None:
        """The poll's records as one index transaction, with the positions they reach."""
        assert self._index is not None and self._consumer is not None
        records, self._pending = self._pending, []
        moved = dict(self.positions)
        heads: dict[int, Head] = {}
        for record in records:
            moved[record.partition] = max(moved[record.partition], record.offset + 1)
            heads[record.partition] = Head(record.offset, record_digest(record))
        rows = decision_rows(self.serde, records, self.report, self.owners)
        # The consumer may have moved past records it does not hand out (the Kafka log's
        # own end markers); adopt that, or a partition ending in one never ends.
        for p in self.partitions:
            tp = TopicPartition(self.topic, p)
            position = known_position(self._consumer, tp)  # None: Kafka, before a fetch
            if position is not None:
                moved[p] = max(moved[p], position)
        now = time.monotonic()
        if moved != self.positions:
            changed = {p: o for p, o in moved.items() if o != self.positions[p]}
            self.report.indexed += self._index.write_batch(rows, changed, heads, self.owners)
            self.positions = moved
            self._last_progress = now
            self._unreported = True
        elif self.ends is not None and now - self._last_progress > self.stall_timeout_s:
            raise LogError(
                f"{self.topic}: no progress towards the end offsets {self.ends} for "
                f"{self.stall_timeout_s:.0f}s (at {self.positions})"
            )
        # Only when something happened: a following indexer on a quiet log stays quiet.
        if (
            self.progress is not None
            and self._unreported
            and now - self._last_report >= self.progress_every_s
        ):
            self.report.seconds = now - self.began
            self.progress(self.report)
            self._last_report, self._unreported = now, False

    def finish(self) -> list[Emit]:
        assert self._index is not None and not self._pending  # each poll's task wrote it
        self.report.seconds = time.monotonic() - self.began
        if self.progress is not None and self._unreported and self.follow:
            self.progress(self.report)  # the last lines' work, before a following indexer stops
        self.report.total = self._index.count()
        self.report.positions = dict(self.positions)
        return []


def index_log(
    log: Log,
    index_path: Path | str,
    *,
    prefix: str = DEFAULT_PREFIX,
    follow: bool = False,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    progress_every_s: float = 1.0,
    batch: int = 5000,
    stall_timeout_s: float = STALL_TIMEOUT_S,
) -> IndexReport:
    """Index ``agent.decisions`` from where the index left off.

    Without ``follow``: up to the end offsets seen when called, then return. With it:
    until ``stop`` is set."""
    follower = IndexFollower(
        index_path,
        prefix=prefix,
        follow=follow,
        progress=progress,
        progress_every_s=progress_every_s,
        stall_timeout_s=stall_timeout_s,
    )
    Runtime(log, follower, max_records=batch, poll_timeout_s=0.2 if follow else 0.5).run(stop=stop)
    return follower.report


def _check_same_log(
    log: Log,
    topic: str,
    positions: Mapping[int, int],
    heads: Mapping[int, Head],
    ends: Mapping[int, int],
) -> None:
    """Resume only on the log the index was built from: the last record the index read in
    each partition must still be there, byte for byte. A log recreated at the same URL
    (or a rewritten one) would otherwise be indexed on top of another log's rows."""
    for p, position in positions.items():
        if position > ends.get(p, 0):
            raise IndexFileError(
                f"the index has read partition {p} up to offset {position}, but the log "
                f"ends at {ends.get(p, 0)}: not the log it was built from (--rebuild)"
            )
    wanted = {TopicPartition(topic, p): h for p, h in heads.items() if p in positions}
    ranges = {tp: (h.offset, h.offset + 1) for tp, h in wanted.items()}
    unread: frozenset[TopicPartition] = frozenset()
    try:
        for record in read_ranges(log, ranges, STALL_TIMEOUT_S):
            head = wanted.pop(record.position)
            if record_digest(record) != head.digest:
                raise IndexFileError(_not_the_record(record.partition, head.offset))
    except ReadTimeout as late:
        unread = late.unread
    # Read past its head without the record there: something else stands at that offset.
    for tp, head in wanted.items():
        if tp not in unread:
            raise IndexFileError(_not_the_record(tp.partition, head.offset))
    if wanted:
        missing = ", ".join(f"{tp.partition}@{h.offset}" for tp, h in wanted.items())
        raise IndexFileError(f"the records this index read last are gone ({missing})")


def _not_the_record(partition: int, offset: int) -> str:
    return (
        f"partition {partition} offset {offset} is not the record this index read there: "
        "not the log it was built from (--rebuild)"
    )
