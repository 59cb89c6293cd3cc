"""Two small reads every processor that checks the log for itself needs.

`known_position` is a consumer's position where the log can say it: the Kafka consumer
cannot before a partition's first fetch when nothing is committed (it already falls back
to the committed offset itself), and each caller has its own safe answer for "unknown".
`read_ranges` reads a few short offset ranges with a deadline: the enforcer checking the
records between two of its writes (`processors.ownership`) and the indexer checking that
the records it read last are still there (`processors.audit.index_follow`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping

from ordinance.streams.errors import LogError
from ordinance.streams.log import AtOffset, ConsumedRecord, Consumer, Log, TopicPartition

#: Records asked for per poll, at most: the ranges are short, and a poll asking for more
#: than they hold only reads records that are thrown away.
POLL_RECORDS = 500
#: How long one poll may wait: the granularity of the deadline.
POLL_TIMEOUT_S = 0.2


class ReadTimeout(LogError):
    """The log did not hand over every record of the ranges before the deadline;
    ``unread`` are the partitions not read to their end."""

    def __init__(self, unread: Collection[TopicPartition], timeout_s: float) -> None:
        self.unread = frozenset(unread)
        listed = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(self.unread))
        super().__init__(f"not read to the end of the range within {timeout_s}s: {listed}")


def known_position(consumer: Consumer, tp: TopicPartition) -> int | None:
    """``consumer``'s position on ``tp`` (assigned), or None where the log cannot say yet.

    Only the Kafka consumer says "unknown" (a `LogError`), before the partition's first
    fetch with no offset committed. None, not a number: what "unknown" means is the
    caller's (not moved yet; not caught up; not read to the end)."""
    try:
        return int(consumer.position(tp))
    except LogError:
        return None


def read_ranges(
    log: Log, ranges: Mapping[TopicPartition, tuple[int, int]], timeout_s: float
) -> Iterator[ConsumedRecord]:
    """The records of each partition's ``[start, end)``, in offset order per partition,
    read by one ungrouped consumer (no group is joined or disturbed).

    A partition is read to its end once a record at or past ``end`` arrives or the
    consumer's position reaches ``end``: offsets without a record anyone is given (Kafka's
    transaction and end markers) count as read, and a record missing from the range is
    simply not yielded. Raises `ReadTimeout` if the ranges are not all read within
    ``timeout_s`` (the consumer's opening included) — after yielding what was read; what
    the log not answering in time means is the caller's. Stop iterating early and the
    consumer is closed with the generator."""
    deadline = time.monotonic() + timeout_s
    open_ranges = {tp: (start, end) for tp, (start, end) in ranges.items() if start < end}
    if not open_ranges:
        return
    wanted = min(POLL_RECORDS, sum(end - start for start, end in open_ranges.values()))
    with log.consumer(None) as reader:
        reader.assign({tp: AtOffset(start) for tp, (start, _) in open_ranges.items()})
        while time.monotonic() < deadline:
            for record in reader.poll(max_records=wanted, timeout=POLL_TIMEOUT_S):
                span = open_ranges.get(record.position)
                if span is None:
                    continue  # a partition read to its end already
                if record.offset >= span[1]:
                    del open_ranges[record.position]
                    continue
                if record.offset + 1 >= span[1]:
                    del open_ranges[record.position]
                yield record
            for tp, (_, end) in list(open_ranges.items()):
                position = known_position(reader, tp)
                if position is not None and position >= end:
                    del open_ranges[tp]  # the rest were records no reader is given
            if not open_ranges:
                return
    raise ReadTimeout(open_ranges, timeout_s)
