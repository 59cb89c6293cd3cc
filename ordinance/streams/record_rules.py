"""What a single-host log refuses before it appends a record, and where it puts it.

The embedded log (`sqlite_log`) and the in-memory log (`memory_log`) store records very
differently, but they must admit and place them identically: the contract tests run on
both, and a processor tried on ``memory://`` must meet the same refusals on
``sqlite:///``. So the rules live here once, and each backend calls `admit` for every
record of a batch before it appends any of them (a refused batch leaves nothing behind).
"""

from __future__ import annotations

from ordinance.streams.errors import ProduceError
from ordinance.streams.log import Record, TopicSpec
from ordinance.streams.partitioner import partition_for

#: The largest record (key plus value bytes) either single-host log accepts by default.
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024


def record_size(record: Record) -> int:
    """What a record counts against the cap and against size retention: key plus value
    bytes (headers are not counted, as they are not on the embedded log's disk tally)."""
    return len(record.key or b"") + len(record.value or b"")


def admit(spec: TopicSpec, record: Record, max_record_bytes: int) -> tuple[int, int]:
    """The ``(partition, size)`` of ``record`` on the topic ``spec`` describes, or
    `ProduceError` saying why the log refuses it.

    Refused: a record over ``max_record_bytes``; a record without a key on a compact
    topic (a compact topic is a table by key, and a keyless record could never be read
    back from it); an explicit partition the topic does not have. Without an explicit
    partition the key's hash places it (`partition_for`).
    """
    name = spec.name
    size = record_size(record)
    if size > max_record_bytes:
        raise ProduceError(f"record for {name!r} is {size} bytes, over the {max_record_bytes} cap")
    if record.key is None and spec.cleanup == "compact":
        raise ProduceError(f"compact topic {name!r} needs a key on every record")
    count = spec.partitions
    p = record.partition
    if p is None:
        p = partition_for(record.key, count)
    elif not 0 <= p < count:
        raise ProduceError(f"topic {name!r} has no partition {p}")
    return p, size
