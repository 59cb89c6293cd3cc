"""Noticing that a partition's decisions are no longer in force: a takeover marker written
after ours.

The fold's rule (`audit.fence`) makes the writer of a partition's latest takeover marker
its owner and fences every other writer. Its blind spot is a *stale* marker: an enforcer
that was assigned a partition, lost it before its marker landed (frozen, or still taking
over other partitions while the group moved on), and wrote the marker anyway — after the
new owner's. On the log that looks exactly like a genuine takeover, so from then on the
real owner's decisions are the fenced ones, and their actions, committed, would never be
decided. Nothing in the log tells the two apart; the owner has to notice.

It can, cheaply: every record it writes to a partition should land right after its
previous one. `OwnershipWatch` notes where each write landed; a write that lands further
on means someone else wrote in between (a zombie's fenced decision, a stale marker, a
Kafka end marker). Only then are the records in between read: a foreign
``EnforcerTakeover`` among them means the partition must be taken over again — a new
marker after the stale one, and a refold, which leaves the decisions written since the
stale marker out; `PartitionState.actions_through` then says where to read the actions
again from, so each is decided, once, in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ordinance.streams import Log, TopicPartition
from ordinance.streams.reading import ReadTimeout, read_ranges
from ordinance.streams.serde import Decoded, Serde

#: How long reading the records between two of our writes may take before the partition
#: is taken over again anyway (the safe answer when the log cannot say).
READ_TIMEOUT_S = 10.0


@dataclass
class OwnershipWatch:
    """Per owned partition: the offset of our last write, and where an unexplained
    stretch of someone else's records begins."""

    last_write: dict[int, int] = field(default_factory=dict)
    unexplained_from: dict[int, int] = field(default_factory=dict)

    def taken_over(self, partition: int, marker_offset: int) -> None:
        """Our marker landed here: everything before it is settled by the fold."""
        self.last_write[partition] = marker_offset
        self.unexplained_from.pop(partition, None)

    def forget(self, partition: int) -> None:
        self.last_write.pop(partition, None)
        self.unexplained_from.pop(partition, None)

    def wrote(self, partition: int, offset: int) -> None:
        """One of our writes landed at ``offset`` (deliveries arrive in order)."""
        last = self.last_write.get(partition)
        if last is None:
            return  # not a partition we own (a late delivery after losing it)
        if offset > last + 1:
            start = self.unexplained_from.get(partition, last + 1)
            self.unexplained_from[partition] = min(start, last + 1)
        self.last_write[partition] = max(last, offset)

    def suspect(self) -> bool:
        return bool(self.unexplained_from)

    def taken_from_us(self, log: Log, topic: str, serde: Serde) -> list[int]:
        """The partitions where another enforcer's takeover marker landed after ours
        (each unexplained stretch read once, then cleared)."""
        lost = []
        for partition, start in sorted(self.unexplained_from.items()):
            end = self.last_write[partition]
            if _foreign_marker(log, TopicPartition(topic, partition), start, end, serde):
                lost.append(partition)
        self.unexplained_from.clear()
        return lost


def _foreign_marker(log: Log, tp: TopicPartition, start: int, end: int, serde: Serde) -> bool:
    """Whether a takeover marker lies in ``[start, end)`` (none of ours is there: ours
    reset the watch). True, too, when the stretch cannot be read in time."""
    try:
        for record in read_ranges(log, {tp: (start, end)}, READ_TIMEOUT_S):
            decoded = serde.decode_record(record)
            if isinstance(decoded, Decoded) and decoded.name == "EnforcerTakeover":
                return True
    except ReadTimeout:
        return True
    return False
