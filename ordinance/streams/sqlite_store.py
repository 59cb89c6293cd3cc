"""On-disk layout of the embedded log and the SQL both its log and consumers share.

One SQLite database in WAL mode holds every topic. WAL lets any number of
processes read while one writes, and each write transaction is atomic and
durable, which is what makes the embedded pipeline exactly-once: a processor's
output records and its consumed offsets land in one transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ordinance.streams.errors import LogError, TopicConfigError
from ordinance.streams.log import ConsumedRecord, Headers, TopicSpec

SCHEMA_VERSION = 1

# WITHOUT ROWID clusters records by (topic, partition, offset), so a consumer's
# range read is one B-tree walk and appends go to the right edge of the tree.
_DDL = """
CREATE TABLE IF NOT EXISTS topics(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    cleanup TEXT NOT NULL,
    retention_ms INTEGER,
    retention_bytes INTEGER
);
CREATE TABLE IF NOT EXISTS partitions(
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL DEFAULT 0,
    start_offset INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records(
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key BLOB,
    value BLOB,
    headers BLOB,
    ts INTEGER NOT NULL,
    appended INTEGER NOT NULL,
    PRIMARY KEY(topic_id, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest(
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    key BLOB NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY(topic_id, partition, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets(
    group_id TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY(group_id, topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members(
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    topics TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY(group_id, member_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_owners(
    group_id TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY(group_id, topic_id, partition)
) WITHOUT ROWID;
"""

RECORD_COLUMNS = "partition, offset, key, value, headers, ts"

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TopicRow:
    id: int
    spec: TopicSpec


def is_locked(exc: sqlite3.Error) -> bool:
    """True when ``exc`` is SQLite giving up on a lock another connection holds."""
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def open_error(path: Path, exc: sqlite3.Error, waited_s: float) -> LogError:
    """The documented error for a database that could not be opened, saying why."""
    if is_locked(exc):
        return LogError(
            f"the embedded log at {path} is locked by another process"
            f" (gave up after {waited_s:g}s): {exc}"
        )
    return LogError(f"cannot open the embedded log at {path}: {exc}{_read_only_note(path)}")


def _read_only_note(path: Path) -> str:
    # On a filesystem mounted read-only SQLite says only "unable to open database file"
    # (a WAL database needs its -shm file writable) about a file that is plainly there:
    # name the cause, for /healthz and for whoever reads the message.
    try:
        read_only = os.statvfs(path.absolute().parent).f_flag & os.ST_RDONLY
    except OSError:
        return ""
    return " (its filesystem is mounted read-only)" if read_only else ""


def connect(
    path: Path, synchronous: str, busy_timeout_s: float, *, create: bool = True
) -> sqlite3.Connection:
    """A connection in autocommit mode: every transaction is an explicit BEGIN.

    Without ``create`` a missing file is an error rather than a new empty database: a
    mistyped path must not quietly become a log nobody writes to.
    """
    level = _SYNCHRONOUS.get(synchronous.lower())
    if level is None:
        raise LogError(f"synchronous must be one of {sorted(_SYNCHRONOUS)}, got {synchronous!r}")
    if not create and not path.exists():
        raise LogError(
            f"no embedded log at {path}: create it first (`ordinance topics --log ...`,"
            " `ordinance serve`), or pass create=True"
        )
    # A URI, so "mode=rw" can refuse to create the file (race-free, unlike the check
    # above, which is only there for the clearer message).
    uri = f"{path.absolute().as_uri()}?mode={'rwc' if create else 'rw'}"
    try:
        conn = sqlite3.connect(
            uri, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False, uri=True
        )
    except sqlite3.Error as exc:
        raise open_error(path, exc, busy_timeout_s) from exc
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={level}")
        conn.execute("PRAGMA foreign_keys=OFF")
    except sqlite3.Error as exc:
        conn.close()
        raise open_error(path, exc, busy_timeout_s) from exc
    return conn


def set_busy_timeout(conn: sqlite3.Connection, seconds: float) -> None:
    conn.execute(f"PRAGMA busy_timeout={max(0, int(seconds * 1000))}")


def initialise(conn: sqlite3.Connection, *, create: bool = True) -> None:
    """Check the layout, creating it in an empty database when ``create``.

    A database that already has the layout is only read: opening an existing log never
    waits for the write lock, so a client can open it while another process writes.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    if not create:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            raise LogError("the database is not an Ordinance log (it has no log tables)")
        raise LogError(
            f"log database has layout version {version}; this Ordinance reads {SCHEMA_VERSION}"
        )
    with write_txn(conn):
        # Read again under the write lock: another process may have created it meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise LogError(
                f"log database has layout version {version}; this Ordinance reads {SCHEMA_VERSION}"
            )
        for statement in _DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


class write_txn:  # noqa: N801 - used like a function: `with write_txn(conn):`
    """BEGIN IMMEDIATE ... COMMIT, rolling back on error.

    IMMEDIATE takes the write lock up front, so two writers queue on the busy
    timeout instead of one failing with SQLITE_BUSY at its first write.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()  # a failed COMMIT may leave the transaction open
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        # The error already in flight is the one to report: SQLite may have rolled back
        # by itself (a full disk, an I/O error), and a failing ROLLBACK must not hide why.
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")


def load_topic(conn: sqlite3.Connection, name: str) -> TopicRow:
    row = conn.execute(
        "SELECT id, partitions, cleanup, retention_ms, retention_bytes FROM topics WHERE name=?",
        (name,),
    ).fetchone()
    if row is None:
        raise TopicConfigError(f"topic {name!r} does not exist; create it with an explicit spec")
    return TopicRow(row[0], TopicSpec(name, row[1], row[2], row[3], row[4]))


def create_topic(conn: sqlite3.Connection, spec: TopicSpec) -> TopicRow:
    with write_txn(conn):
        try:
            existing = load_topic(conn, spec.name)
        except TopicConfigError:
            cursor = conn.execute(
                "INSERT INTO topics(name, partitions, cleanup, retention_ms, retention_bytes)"
                " VALUES (?, ?, ?, ?, ?)",
                (spec.name, spec.partitions, spec.cleanup, spec.retention_ms, spec.retention_bytes),
            )
            topic_id = cursor.lastrowid
            assert topic_id is not None
            conn.executemany(
                "INSERT INTO partitions(topic_id, partition) VALUES (?, ?)",
                [(topic_id, p) for p in range(spec.partitions)],
            )
            return TopicRow(topic_id, spec)
        if existing.spec.partitions != spec.partitions or existing.spec.cleanup != spec.cleanup:
            raise TopicConfigError(
                f"topic {spec.name!r} exists with {existing.spec.partitions} partitions"
                f" ({existing.spec.cleanup}); asked for {spec.partitions} ({spec.cleanup})"
            )
        if existing.spec != spec:
            # Retention is safe to change in place, as Kafka's alterConfigs allows.
            conn.execute(
                "UPDATE topics SET retention_ms=?, retention_bytes=? WHERE id=?",
                (spec.retention_ms, spec.retention_bytes, existing.id),
            )
        return TopicRow(existing.id, spec)


_COUNT = struct.Struct("<I")
_LENGTHS = struct.Struct("<II")


def encode_headers(headers: Headers) -> bytes | None:
    if not headers:
        return None
    parts = [_COUNT.pack(len(headers))]
    for name, value in headers:
        raw = name.encode()
        parts.append(_LENGTHS.pack(len(raw), len(value)))
        parts.append(raw)
        parts.append(value)
    return b"".join(parts)


def decode_headers(blob: bytes | None) -> Headers:
    # Hot: every chained decision carries headers, and audit verify reads them all.
    if blob is None:
        return ()
    (count,) = _COUNT.unpack_from(blob, 0)
    pos = 4
    out = []
    lengths = _LENGTHS.unpack_from
    for _ in range(count):
        name_len, value_len = lengths(blob, pos)
        pos += 8
        name_end = pos + name_len
        end = name_end + value_len
        out.append((blob[pos:name_end].decode(), blob[name_end:end]))
        pos = end
    return tuple(out)


def to_records(
    topic: str, rows: list[tuple[int, int, bytes | None, bytes | None, bytes | None, int]]
) -> list[ConsumedRecord]:
    return [
        ConsumedRecord(topic, p, o, k, v, decode_headers(h) if h is not None else (), ts)
        for p, o, k, v, h, ts in rows
    ]


def to_record(
    topic: str, row: tuple[int, int, bytes | None, bytes | None, bytes | None, int]
) -> ConsumedRecord:
    partition, offset, key, value, headers, ts = row
    return ConsumedRecord(topic, partition, offset, key, value, decode_headers(headers), ts)


def read_partition(
    conn: sqlite3.Connection, topic: str, topic_id: int, partition: int
) -> Iterator[ConsumedRecord]:
    """One partition from one SELECT (one WAL snapshot, as ``read_to_end``), *without its
    headers*: for readers that never look at them (replay's folds), decoding the chain
    headers of every record is a fifth of reading it."""
    make = ConsumedRecord._make
    cursor = conn.execute(
        "SELECT offset, key, value, ts FROM records WHERE topic_id=? AND partition=? ORDER BY offset",
        (topic_id, partition),
    )
    while batch := cursor.fetchmany(1000):
        for offset, key, value, ts in batch:
            yield make((topic, partition, offset, key, value, (), ts))


def committed_offset(
    conn: sqlite3.Connection, group: str, topic_id: int, partition: int
) -> int | None:
    row = conn.execute(
        "SELECT offset FROM group_offsets WHERE group_id=? AND topic_id=? AND partition=?",
        (group, topic_id, partition),
    ).fetchone()
    return None if row is None else int(row[0])


def partition_bounds(conn: sqlite3.Connection, topic_id: int, partition: int) -> tuple[int, int]:
    """(start_offset, next_offset): the retained range of a partition."""
    row = conn.execute(
        "SELECT start_offset, next_offset FROM partitions WHERE topic_id=? AND partition=?",
        (topic_id, partition),
    ).fetchone()
    if row is None:
        raise TopicConfigError(f"topic id {topic_id} has no partition {partition}")
    return int(row[0]), int(row[1])


def offset_for_time(conn: sqlite3.Connection, topic_id: int, partition: int, ts: int) -> int:
    """First offset whose timestamp is >= ts, else the end (Kafka's offsetsForTimes)."""
    row = conn.execute(
        "SELECT MIN(offset) FROM records WHERE topic_id=? AND partition=? AND ts>=?",
        (topic_id, partition, ts),
    ).fetchone()
    if row[0] is not None:
        return int(row[0])
    return partition_bounds(conn, topic_id, partition)[1]
