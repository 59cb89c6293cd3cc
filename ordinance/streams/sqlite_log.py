"""The embedded log (`sqlite:///path.db`): durable, multi-process, exactly-once.

Several processes may open the same file: each append is one IMMEDIATE
transaction, so offsets are dense and never reused, and a reader in another
process sees a record as soon as its producer's `produce` has returned.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ordinance.closing import Closing
from ordinance.streams import sqlite_store as store
from ordinance.streams.errors import LogError, ProduceError
from ordinance.streams.log import (
    ConsumedRecord,
    Consumer,
    Delivered,
    Record,
    TopicPartition,
    TopicSpec,
    fold_latest,
)
from ordinance.streams.record_rules import DEFAULT_MAX_RECORD_BYTES, admit
from ordinance.streams.sync_writes import WritesBeforeReturning

if TYPE_CHECKING:
    from ordinance.streams.sqlite_consumer import SqliteConsumer


class _StoreError(LogError):
    """SQLite failed, or the log is closed: `_write` reports it as a `ProduceError`."""


class SqliteLog(Closing, WritesBeforeReturning["SqliteConsumer"]):
    """`Log` on one SQLite database file.

    ``synchronous="full"`` (the default) fsyncs every commit, so an
    acknowledged record survives power loss; ``"normal"`` survives any process
    crash but may lose the last commits on power loss, for more throughput.
    Retention runs at most every ``retention_interval_s`` during `produce`, and
    on demand with `enforce_retention`.

    Without ``create`` the file must already be a log (a mistyped path is an error, not
    a new empty database). ``open_timeout_s`` bounds how long opening may wait for
    another process's lock (default: ``busy_timeout_s``). Every failure to open raises
    `LogError`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "full",
        busy_timeout_s: float = 30.0,
        retention_interval_s: float = 10.0,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 250,
        create: bool = True,
        open_timeout_s: float | None = None,
    ) -> None:
        self._path = Path(path)
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._retention_interval_ms = int(retention_interval_s * 1000)
        self._max_record_bytes = max_record_bytes
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        opening = busy_timeout_s if open_timeout_s is None else min(open_timeout_s, busy_timeout_s)
        self._conn = store.connect(self._path, synchronous, opening, create=create)
        try:
            store.initialise(self._conn, create=create)
            store.set_busy_timeout(self._conn, busy_timeout_s)
        except sqlite3.Error as exc:
            self._conn.close()
            raise store.open_error(self._path, exc, opening) from exc
        except LogError as exc:
            self._conn.close()
            raise LogError(f"{self._path}: {exc}") from exc
        # One connection per log, shared by threads: sqlite3 connections are not
        # safe for concurrent use, and writes serialise on the file lock anyway.
        self._lock = threading.Lock()
        self._topics: dict[str, store.TopicRow] = {}
        self._last_retention_ms = store.now_ms()
        self._closed = False

    @property
    def url(self) -> str:
        return f"sqlite:///{self._path}"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def exactly_once(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def connect(self) -> sqlite3.Connection:
        """A fresh connection to the same database (consumers read on their own)."""
        return store.connect(self._path, self._synchronous, self._busy_timeout_s)

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The shared connection, for one call; `LogError` for whatever SQLite raises.

        A `close` that found the connection in use (a write waiting on another process's
        lock) left the closing to whoever holds it: that is done here, on the way out.
        """
        with self._lock:
            if self._closed:
                raise _StoreError(f"{self.url}: log is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise _StoreError(f"{self.url}: {exc}") from exc
            finally:
                if self.closed:  # set by another thread meanwhile
                    self._conn.close()

    def topic(self, name: str) -> store.TopicRow:
        row = self._topics.get(name)
        if row is None:
            with self._using() as conn:
                row = store.load_topic(conn, name)
            self._topics[name] = row
        return row

    def create_topic(self, spec: TopicSpec) -> None:
        with self._using() as conn:
            self._topics[spec.name] = store.create_topic(conn, spec)

    def partitions(self, topic: str) -> list[int]:
        return list(range(self.topic(topic).spec.partitions))

    def end_offsets(self, topic: str) -> dict[int, int]:
        topic_id = self.topic(topic).id
        with self._using() as conn:
            rows = conn.execute(
                "SELECT partition, next_offset FROM partitions WHERE topic_id=?", (topic_id,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def start_offsets(self, topic: str) -> dict[int, int]:
        """First retained offset per partition (moves forward with retention)."""
        topic_id = self.topic(topic).id
        with self._using() as conn:
            rows = conn.execute(
                "SELECT partition, start_offset FROM partitions WHERE topic_id=?", (topic_id,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def _own_consumer(self, consumer: Consumer) -> SqliteConsumer | None:
        from ordinance.streams.sqlite_consumer import SqliteConsumer

        if isinstance(consumer, SqliteConsumer) and consumer.log is self:
            return consumer
        return None

    def _write(
        self,
        outputs: Sequence[tuple[str, Record]],
        consumer: SqliteConsumer | None,
        offsets: Mapping[TopicPartition, int],
    ) -> list[Delivered]:
        topics = {name: self.topic(name) for name in {t for t, _ in outputs}}
        cap = self._max_record_bytes
        # Every record is admitted before the write lock is taken: a refused batch costs
        # no transaction and leaves no record and no offset.
        placed = [admit(topics[name].spec, record, cap) for name, record in outputs]
        now = store.now_ms()
        try:
            with self._using() as shared, store.write_txn(shared) as conn:
                if self.closed:
                    # Closed while this write waited for the lock: its caller was told
                    # the log is closed, so nothing may appear on the log after that.
                    raise ProduceError(f"{self.url}: log closed before the write")
                delivered = self._append(conn, topics, outputs, placed, now)
                if consumer is not None:
                    consumer.commit_in(conn, offsets)
        except _StoreError as exc:
            raise ProduceError(f"append to {self._path} failed: {exc}") from exc
        if now - self._last_retention_ms >= self._retention_interval_ms:
            self.enforce_retention()
        return delivered

    def _append(
        self,
        conn: sqlite3.Connection,
        topics: Mapping[str, store.TopicRow],
        outputs: Sequence[tuple[str, Record]],
        placed: Sequence[tuple[int, int]],
        now: int,
    ) -> list[Delivered]:
        """Append ``outputs`` at the ``(partition, size)`` `admit` gave each."""
        next_offsets: dict[tuple[int, int], int] = {}
        added_bytes: dict[tuple[int, int], int] = {}
        for row in topics.values():
            for p, nxt in conn.execute(
                "SELECT partition, next_offset FROM partitions WHERE topic_id=?", (row.id,)
            ):
                next_offsets[(row.id, p)] = nxt
        rows = []
        latest = []
        delivered = []
        encode_headers = store.encode_headers
        for (name, record), (p, size) in zip(outputs, placed, strict=True):
            topic = topics[name]
            key, value, headers, event_time, _ = record
            slot = (topic.id, p)
            offset = next_offsets[slot]
            next_offsets[slot] = offset + 1
            added_bytes[slot] = added_bytes.get(slot, 0) + size
            ts = now if event_time is None else event_time
            blob = encode_headers(headers) if headers else None
            rows.append((topic.id, p, offset, key, value, blob, ts, now))
            if topic.spec.cleanup == "compact":
                latest.append((topic.id, p, key, offset))
            delivered.append(Delivered(name, p, offset, ts))
        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if latest:
            conn.executemany("INSERT OR REPLACE INTO latest VALUES (?, ?, ?, ?)", latest)
        conn.executemany(
            "UPDATE partitions SET next_offset=?, bytes=bytes+? WHERE topic_id=? AND partition=?",
            [(next_offsets[s], n, s[0], s[1]) for s, n in added_bytes.items()],
        )
        return delivered

    def consumer(
        self,
        group: str | None = None,
        *,
        reset: Literal["earliest", "latest"] = "earliest",
        relaxed: bool = False,
    ) -> Consumer:
        from ordinance.streams.sqlite_consumer import SqliteConsumer

        del relaxed  # a poll here costs the database nothing while no record arrives
        return SqliteConsumer(self, group, reset)

    def read_to_end(
        self, topic: str, partitions: Sequence[int] | None = None
    ) -> Iterator[ConsumedRecord]:
        row = self.topic(topic)
        wanted = list(range(row.spec.partitions)) if partitions is None else list(partitions)
        # One SELECT statement reads one WAL snapshot: "the end" is exactly what
        # was committed when it started, whatever is appended meanwhile.
        conn = self.connect()
        try:
            marks = ",".join("?" * len(wanted))
            cursor = conn.execute(
                f"SELECT {store.RECORD_COLUMNS} FROM records"
                f" WHERE topic_id=? AND partition IN ({marks}) ORDER BY partition, offset",
                (row.id, *wanted),
            )
            while batch := cursor.fetchmany(1000):
                for r in batch:
                    yield store.to_record(topic, r)
        finally:
            conn.close()

    def latest_by_key(self, topic: str) -> dict[bytes, ConsumedRecord]:
        row = self.topic(topic)
        if row.spec.cleanup != "compact":
            return fold_latest(self.read_to_end(topic))
        with self._using() as conn:
            rows = conn.execute(
                "SELECT r.partition, r.offset, r.key, r.value, r.headers, r.ts"
                " FROM latest l JOIN records r ON r.topic_id=l.topic_id"
                " AND r.partition=l.partition AND r.offset=l.offset"
                " WHERE l.topic_id=? AND r.value IS NOT NULL ORDER BY r.partition, r.offset",
                (row.id,),
            ).fetchall()
        out: dict[bytes, ConsumedRecord] = {}
        for r in rows:
            record = store.to_record(topic, r)
            assert record.key is not None
            out[record.key] = record
        return out

    def enforce_retention(self) -> int:
        """Apply time/size retention and compaction now; returns records removed."""
        self._last_retention_ms = store.now_ms()
        removed = 0
        with self._using() as shared:
            topics = shared.execute(
                "SELECT id, partitions, cleanup, retention_ms, retention_bytes FROM topics"
            ).fetchall()
            for topic_id, count, cleanup, retention_ms, retention_bytes in topics:
                with store.write_txn(shared) as conn:
                    if cleanup == "compact":
                        removed += _compact(conn, topic_id)
                        continue
                    for p in range(count):
                        removed += _expire(conn, topic_id, p, retention_ms, retention_bytes)
        return removed

    def close(self, timeout: float | None = None) -> None:
        """Close the shared connection, waiting at most ``timeout`` seconds for a call in
        progress on another thread (a write may wait ``busy_timeout_s`` for another
        process's lock). If it does not finish in time, that call closes the connection
        when it ends, and writes nothing: the log is closed from now on either way."""
        if self._closed:
            return
        self._closed = True
        wait = -1 if timeout is None else max(0.0, timeout)
        if self._lock.acquire(timeout=wait):
            try:
                self._conn.close()
            finally:
                self._lock.release()


def _expire(
    conn: sqlite3.Connection,
    topic_id: int,
    partition: int,
    retention_ms: int | None,
    retention_bytes: int | None,
) -> int:
    start, end = store.partition_bounds(conn, topic_id, partition)
    new_start = start
    if retention_ms is not None:
        cutoff = store.now_ms() - retention_ms
        row = conn.execute(
            "SELECT offset FROM records WHERE topic_id=? AND partition=? AND appended>=?"
            " ORDER BY offset LIMIT 1",
            (topic_id, partition, cutoff),
        ).fetchone()
        new_start = end if row is None else max(start, int(row[0]))
    freed = conn.execute(
        "SELECT IFNULL(SUM(IFNULL(length(key),0)+IFNULL(length(value),0)),0) FROM records"
        " WHERE topic_id=? AND partition=? AND offset<?",
        (topic_id, partition, new_start),
    ).fetchone()[0]
    if retention_bytes is not None:
        total = conn.execute(
            "SELECT bytes FROM partitions WHERE topic_id=? AND partition=?",
            (topic_id, partition),
        ).fetchone()[0]
        excess = total - freed - retention_bytes
        if excess > 0:
            for offset, size in conn.execute(
                "SELECT offset, IFNULL(length(key),0)+IFNULL(length(value),0) FROM records"
                " WHERE topic_id=? AND partition=? AND offset>=? ORDER BY offset",
                (topic_id, partition, new_start),
            ):
                if excess <= 0:
                    break
                excess -= size
                freed += size
                new_start = offset + 1
    if new_start == start:
        return 0
    deleted = conn.execute(
        "DELETE FROM records WHERE topic_id=? AND partition=? AND offset<?",
        (topic_id, partition, new_start),
    ).rowcount
    conn.execute(
        "UPDATE partitions SET start_offset=?, bytes=bytes-? WHERE topic_id=? AND partition=?",
        (new_start, freed, topic_id, partition),
    )
    return int(deleted)


def _compact(conn: sqlite3.Connection, topic_id: int) -> int:
    """Drop every record superseded by a later one with the same key."""
    deleted = conn.execute(
        "DELETE FROM records WHERE topic_id=? AND offset < (SELECT l.offset FROM latest l"
        " WHERE l.topic_id=records.topic_id AND l.partition=records.partition"
        " AND l.key=records.key)",
        (topic_id,),
    ).rowcount
    if deleted:
        conn.execute(
            "UPDATE partitions SET bytes=(SELECT IFNULL(SUM(IFNULL(length(key),0)"
            "+IFNULL(length(value),0)),0) FROM records r WHERE r.topic_id=partitions.topic_id"
            " AND r.partition=partitions.partition) WHERE topic_id=?",
            (topic_id,),
        )
    return int(deleted)
