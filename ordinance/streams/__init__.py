"""The log: topics, partitions, offsets, keys, headers and event time.

`open_log(url)` gives a `Log` (the embedded SQLite log or Kafka); `serde`
turns records into the Avro wire contract of ``streams/schemas/``.
"""

from ordinance.streams.backends import open_existing_log, open_log
from ordinance.streams.log import (
    MARKER_HEADER,
    AtOffset,
    AtTime,
    ConsumedRecord,
    Consumer,
    Delivered,
    Log,
    Outbox,
    Position,
    Record,
    StartAt,
    TopicPartition,
    TopicSpec,
)
from ordinance.streams.partitioner import murmur2, partition_for

__all__ = [
    "MARKER_HEADER",
    "AtOffset",
    "AtTime",
    "ConsumedRecord",
    "Consumer",
    "Delivered",
    "Log",
    "Outbox",
    "Position",
    "Record",
    "StartAt",
    "TopicPartition",
    "TopicSpec",
    "murmur2",
    "open_existing_log",
    "open_log",
    "partition_for",
]
