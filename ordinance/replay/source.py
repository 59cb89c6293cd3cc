"""Where replay reads records: a live log (read only) or an exported slice file.

Replay never writes to the live topics. On the embedded log `read_to_end` is one SQLite
snapshot and writes nothing; on Kafka `read_to_end` appends "caught up" marker records,
so replay reads instead with a group-less consumer up to the end offsets it saw when it
started (plus whatever a short final poll still returns, because the local broker can
under-report a watermark). Anything appended after replay started is not replayed.

An export is an Avro object container file of raw records — key, value bytes exactly as
on the log, headers, offsets — so offline replay decodes them with the same serde and
runs the same code; the file's metadata says what slice it holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import fastavro

from ordinance.streams import (
    ConsumedRecord,
    Log,
    Position,
    TopicPartition,
    open_existing_log,
    sqlite_store,
)
from ordinance.streams.errors import LogError
from ordinance.streams.sqlite_log import SqliteLog
from ordinance.streams.topics import DEFAULT_PREFIX

POLICY_TOPICS = ("policy.changes", "policy.active", "monitor.alerts")
AGENT_TOPICS = ("agent.actions", "agent.decisions", "agent.approvals")
SLICE_FORMAT = "ordinance.replay.slice/1"
_META_KEY = "ordinance.slice"

SLICE_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "SliceRecord",
        "namespace": "ordinance.replay",
        "doc": "One log record, bytes as they were on the log.",
        "fields": [
            {"name": "topic", "type": "string", "doc": "short name, e.g. agent.decisions"},
            {"name": "partition", "type": "int"},
            {"name": "offset", "type": "long"},
            {"name": "key", "type": ["null", "bytes"]},
            {"name": "value", "type": ["null", "bytes"]},
            {
                "name": "headers",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Header",
                        "fields": [
                            {"name": "name", "type": "string"},
                            {"name": "value", "type": "bytes"},
                        ],
                    },
                },
            },
            {"name": "timestamp_ms", "type": "long"},
        ],
    },
    named_schemas={},
)


class SourceError(LogError):
    """The log or file to replay from cannot be read."""


class Source(Protocol):
    """Records by short topic name (``agent.decisions``) and partition, in offset order."""

    @property
    def label(self) -> str: ...

    def partitions(self, topic: str) -> list[int]: ...

    def sizes(self, topic: str) -> dict[int, int]:
        """Records per partition, as a hint for handing out work (largest first); a
        source that cannot say cheaply returns {}."""
        ...

    def read(self, topic: str, partition: int, *, headers: bool = True) -> Iterator[ConsumedRecord]:
        """``headers=False``: the caller never reads them, and a source may leave them out."""
        ...


class LogSource:
    def __init__(self, log: Log, prefix: str = DEFAULT_PREFIX) -> None:
        self.log = log
        self.prefix = prefix
        # Logs whose end offsets are exact (no transaction markers): read_to_end suffices.
        self._embedded = log.url.startswith(("sqlite:", "memory:"))

    @property
    def label(self) -> str:
        return self.log.url

    def partitions(self, topic: str) -> list[int]:
        try:
            return self.log.partitions(self.prefix + topic)
        except LogError:
            return []  # a log that never had this topic holds none of its records
        except Exception as exc:  # e.g. the Kafka client's own errors: the log is unreachable
            raise SourceError(
                f"cannot read {self.prefix + topic} on {self.log.url}: {exc}"
            ) from exc

    def sizes(self, topic: str) -> dict[int, int]:
        """Records per partition, roughly (end offsets; retention may have trimmed some)."""
        try:
            return self.log.end_offsets(self.prefix + topic)
        except Exception:  # only a hint: a log that cannot say gets the partition order
            return {}

    def read(self, topic: str, partition: int, *, headers: bool = True) -> Iterator[ConsumedRecord]:
        name = self.prefix + topic
        if partition not in self.partitions(topic):
            return
        if self._embedded and not headers and isinstance(self.log, SqliteLog):
            conn = self.log.connect()
            try:
                yield from sqlite_store.read_partition(
                    conn, name, self.log.topic(name).id, partition
                )
            finally:
                conn.close()
            return
        if self._embedded:
            yield from self.log.read_to_end(name, [partition])
            return
        yield from self._read_without_markers(name, partition)

    def _read_without_markers(self, name: str, partition: int) -> Iterator[ConsumedRecord]:
        end = self.log.end_offsets(name).get(partition, 0)
        tp = TopicPartition(name, partition)
        with self.log.consumer(None) as reader:
            reader.assign({tp: Position.BEGINNING})
            # The consumer's position, not the last record's offset: marker records (which
            # the consumer does not hand out) and transaction markers take offsets too.
            # A partition that stops short of the end offset for 2 s ends there.
            position, idle = 0, 0
            while position < end and idle < 8:
                batch = reader.poll(max_records=2000, timeout=0.25)
                idle = 0 if batch else idle + 1
                yield from batch
                with contextlib.suppress(LogError):
                    position = reader.position(tp)
            # One short poll more: the local broker can under-report a watermark.
            yield from reader.poll(max_records=2000, timeout=0.1)


class FileSource:
    """An exported slice, loaded into memory (slices are what an auditor carries away)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[tuple[str, int], list[ConsumedRecord]] = defaultdict(list)
        try:
            with path.open("rb") as handle:
                reader = fastavro.reader(handle)
                meta = reader.metadata.get(_META_KEY)
                if meta is None:
                    raise SourceError(f"{path}: not an Ordinance replay slice (no {_META_KEY})")
                self.meta: dict[str, Any] = json.loads(meta)
                for row in reader:
                    assert isinstance(row, dict)
                    self.records[(row["topic"], row["partition"])].append(
                        ConsumedRecord(
                            row["topic"],
                            row["partition"],
                            row["offset"],
                            row["key"],
                            row["value"],
                            tuple((h["name"], h["value"]) for h in row["headers"]),
                            row["timestamp_ms"],
                        )
                    )
        except (OSError, ValueError, EOFError, fastavro.read.SchemaResolutionError) as exc:
            raise SourceError(f"{path}: cannot read the slice: {exc}") from exc
        if self.meta.get("format") != SLICE_FORMAT:
            raise SourceError(
                f"{path}: slice format {self.meta.get('format')!r} is not {SLICE_FORMAT}"
            )

    @property
    def label(self) -> str:
        return str(self.path)

    def partitions(self, topic: str) -> list[int]:
        return sorted(p for t, p in self.records if t == topic)

    def sizes(self, topic: str) -> dict[int, int]:
        return {p: len(records) for (t, p), records in self.records.items() if t == topic}

    def read(self, topic: str, partition: int, *, headers: bool = True) -> Iterator[ConsumedRecord]:
        yield from self.records.get((topic, partition), [])


def write_slice(path: Path, records: Iterable[ConsumedRecord], meta: dict[str, Any]) -> int:
    """Write records (topic = short name) as a slice file; returns how many."""
    count = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        for r in records:
            count += 1
            yield {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "key": r.key,
                "value": r.value,
                "headers": [{"name": n, "value": v} for n, v in r.headers],
                "timestamp_ms": r.timestamp_ms,
            }

    header = {
        "format": SLICE_FORMAT,
        "written_at": dt.datetime.now(dt.UTC).isoformat(),
        **meta,
    }
    with path.open("wb") as handle:
        fastavro.writer(
            handle, SLICE_SCHEMA, rows(), codec="deflate", metadata={_META_KEY: json.dumps(header)}
        )
    return count


def open_source(
    log_url: str | None, input_path: str | None, prefix: str = DEFAULT_PREFIX
) -> tuple[Source, Log | None]:
    """The source a command asked for, and the log to close afterwards (None for a file).
    An embedded log that does not exist is an error, not a new empty database."""
    if input_path is not None:
        return FileSource(Path(input_path)), None
    if log_url is None:
        raise SourceError("name a log (--log URL) or an exported slice (--input FILE)")
    log = open_existing_log(log_url)
    return LogSource(log, prefix), log
