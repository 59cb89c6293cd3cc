"""How a consumer of a single-host log spends one poll over its partitions.

The embedded log's consumer reads a partition with a SELECT, the in-memory log's with a
list slice; everything around that read is the same rule and lives here once, so the two
cannot come to serve partitions differently: which partition goes first (it rotates, so
a busy partition cannot starve the others), how the record budget is shared, where the
position moves, and the error for a partition the consumer was not given.
"""

from __future__ import annotations

from collections.abc import Callable

from ordinance.streams.errors import LogError
from ordinance.streams.log import ConsumedRecord, TopicPartition

#: Reads up to ``budget`` records of a partition from ``position`` on, in offset order.
ReadPartition = Callable[[TopicPartition, int, int], list[ConsumedRecord]]


def fetch_round(
    positions: dict[TopicPartition, int], turn: int, max_records: int, read: ReadPartition
) -> tuple[int, list[ConsumedRecord]]:
    """One poll's records, at most ``max_records``, and the next ``turn``.

    Each call starts one partition further along ``positions``, so a partition with
    more records than the budget cannot starve the ones after it. A partition's position
    moves past the last record read, not by the count read: offsets may have gaps where
    compaction or retention removed records.
    """
    tps = list(positions)
    if not tps:
        return turn, []
    turn = (turn + 1) % len(tps)
    out: list[ConsumedRecord] = []
    for tp in tps[turn:] + tps[:turn]:
        budget = max_records - len(out)
        if budget <= 0:
            break
        chunk = read(tp, positions[tp], budget)
        if chunk:
            positions[tp] = chunk[-1].offset + 1
            out.extend(chunk)
    return turn, out


def assigned(positions: dict[TopicPartition, int], tp: TopicPartition) -> int:
    """The position of ``tp``, which `seek` and `position` may touch only while the
    consumer holds it; `LogError` otherwise (a group may have moved it elsewhere)."""
    found = positions.get(tp)
    if found is None:
        raise LogError(f"{tp} is not assigned to this consumer")
    return found
