"""Consumers and consumer groups of the in-memory log.

Groups follow the embedded log's protocol (`sqlite_consumer`), on dictionaries instead
of tables, with the same decisions (`groups`): each member heartbeats; on every
heartbeat it drops members silent for longer than the session timeout, computes the
range assignment over the live members, releases the partitions it should no longer own
and claims the unowned ones it should. A partition has one owner at a time, so two
members never both read it, and commits are fenced on that owner: a member that lost a
partition gets `FencedError`.

One difference, for speed only: a change of membership or ownership bumps the group's
generation and wakes every waiting poll, so the members rebalance on their next poll
rather than at their next heartbeat (a takeover costs a few polls, not a few
heartbeat intervals). Session timeouts are still measured in heartbeats.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from ordinance.closing import Closing
from ordinance.streams.errors import LogError
from ordinance.streams.fetching import assigned, fetch_round
from ordinance.streams.groups import (
    fence_commit,
    follow_ownership,
    plan_rebalance,
    session_cutoff,
)
from ordinance.streams.log import (
    AtOffset,
    AtTime,
    ConsumedRecord,
    Position,
    StartAt,
    TopicPartition,
)

if TYPE_CHECKING:
    from ordinance.streams.memory_log import MemoryGroup, MemoryLog


class MemoryConsumer(Closing):
    """A `Consumer` of a `MemoryLog`, used from one thread.

    It reads the log's shared data, not its handle: like the embedded log's consumers
    (each on a connection of its own) it keeps working after the handle it came from is
    closed, so a processor may close its log and its consumer in either order.
    """

    def __init__(
        self, log: MemoryLog, group: str | None, reset: Literal["earliest", "latest"]
    ) -> None:
        self.log = log
        self._store = log.store
        self._group = group
        self._reset = reset
        self.member_id = f"memory:{uuid.uuid4().hex[:12]}"
        self._subscribed: tuple[str, ...] = ()
        self._positions: dict[TopicPartition, int] = {}
        self._next_heartbeat_ms = 0
        self._generation = -1
        self._turn = 0
        self._closed = False

    @property
    def group(self) -> str | None:
        return self._group

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"{self.log.url}: consumer is closed")

    def subscribe(self, topics: Sequence[str]) -> None:
        self._check_open()
        if self._group is None:
            raise LogError("subscribe needs a consumer group")
        with self._store.cond:
            for topic in topics:
                self._store.topic(topic)
            self._subscribed = tuple(topics)
            self._positions.clear()
            self._rebalance_locked()

    def assign(self, assignment: Mapping[TopicPartition, StartAt]) -> None:
        self._check_open()
        with self._store.cond:
            if self._subscribed:
                self._leave_locked()
                self._subscribed = ()
            self._positions = {tp: self._resolve_locked(tp, s) for tp, s in assignment.items()}

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[ConsumedRecord]:
        self._check_open()
        deadline = time.monotonic() + timeout
        store = self._store
        heartbeat_s = self.log.heartbeat_interval_ms / 1000
        with store.cond:
            while True:
                if self._subscribed and self._rebalance_due_locked():
                    self._rebalance_locked()
                version = store.version
                records = self._fetch_locked(max_records)
                remaining = deadline - time.monotonic()
                if records or remaining <= 0:
                    return records
                # A member wakes at least once per heartbeat interval to heartbeat: a
                # consumer blocked in a long poll must not look dead to its group.
                wait = min(remaining, heartbeat_s) if self._subscribed else remaining
                woken_by = time.monotonic() + wait
                while store.version == version and (left := woken_by - time.monotonic()) > 0:
                    store.cond.wait(left)

    def _fetch_locked(self, max_records: int) -> list[ConsumedRecord]:
        self._turn, out = fetch_round(self._positions, self._turn, max_records, self._read_locked)
        return out

    def _read_locked(self, tp: TopicPartition, position: int, budget: int) -> list[ConsumedRecord]:
        # A record's offset is its index: nothing is ever removed from the in-memory log.
        return self._store.topic(tp.topic).records[tp.partition][position : position + budget]

    def seek(self, tp: TopicPartition, start: StartAt) -> None:
        self._check_open()
        assigned(self._positions, tp)
        with self._store.cond:
            self._positions[tp] = self._resolve_locked(tp, start)

    def position(self, tp: TopicPartition) -> int:
        return assigned(self._positions, tp)

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self._check_open()
        with self._store.cond:
            chosen = dict(self._positions) if offsets is None else offsets
            self.check_commit_locked(chosen)
            self.commit_locked(chosen)

    def check_commit_locked(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Raise what committing ``offsets`` would (see `produce_and_commit`, which asks
        before it appends anything). The caller holds the log's lock."""
        owner_of = self._owner_locked if self._subscribed else None
        group = fence_commit(self._group, self.member_id, offsets, owner_of)
        if group is not None and owner_of is None:
            for tp in offsets:
                self._store.topic(tp.topic)  # fenced or not, only a topic that exists

    def _owner_locked(self, tp: TopicPartition) -> str | None:
        self._store.topic(tp.topic)  # an unknown topic is `TopicConfigError`, not fenced
        assert self._group is not None  # only a subscribed consumer asks
        return self._store.group(self._group).owners.get(tp)

    def commit_locked(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit what `check_commit_locked` accepted, under the same hold of the lock."""
        if offsets and self._group is not None:
            self._store.group(self._group).offsets.update(offsets)

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._check_open()
        with self._store.cond:
            found = None if self._group is None else self._store.groups.get(self._group)
            for tp in tps:
                self._store.topic(tp.topic)
            return {tp: None if found is None else found.offsets.get(tp) for tp in tps}

    def _resolve_locked(self, tp: TopicPartition, start: StartAt) -> int:
        rows_by_partition = self._store.topic(tp.topic).records
        if not 0 <= tp.partition < len(rows_by_partition):
            raise LogError(f"topic {tp.topic!r} has no partition {tp.partition}")
        rows = rows_by_partition[tp.partition]
        if isinstance(start, AtOffset):
            # Below the start reads from the start, as the embedded log does; never a
            # negative index into the list.
            return max(start.offset, 0)
        if isinstance(start, AtTime):
            # Timestamps are event times, not sorted: the first one late enough, by offset.
            wanted = start.timestamp_ms
            return next((r.offset for r in rows if r.timestamp_ms >= wanted), len(rows))
        if start is Position.COMMITTED and self._group is not None:
            group = self._store.groups.get(self._group)
            found = None if group is None else group.offsets.get(tp)
            if found is not None:
                return found
        if start is Position.BEGINNING:
            return 0
        if start is Position.END:
            return len(rows)
        return 0 if self._reset == "earliest" else len(rows)

    def _rebalance_due_locked(self) -> bool:
        assert self._group is not None
        return (
            self._store.group(self._group).generation != self._generation
            or self.log.now_ms() >= self._next_heartbeat_ms
        )

    def _rebalance_locked(self) -> None:
        assert self._group is not None
        group, me = self._store.group(self._group), self.member_id
        now = self.log.now_ms()
        changed = group.heartbeat(me, self._subscribed, now)
        cutoff = session_cutoff(now, self.log.session_timeout_ms)
        for member, seen in list(group.members.items()):
            if seen.seen_ms < cutoff:  # silent past the session timeout: presumed dead
                del group.members[member]
                self._release_locked(group, member)
                changed = True
        partitions = {t: self._store.topic(t).spec.partitions for t in self._subscribed}
        members = [(m, seen.topics) for m, seen in group.members.items()]
        plan = plan_rebalance(me, members, partitions, group.owners)
        for tp in plan.release:
            del group.owners[tp]
        for tp in plan.claim:
            group.owners[tp] = me
        changed = changed or plan.changes_owners
        follow_ownership(
            self._positions, plan.owned, lambda tp: self._resolve_locked(tp, Position.COMMITTED)
        )
        if changed:
            group.generation += 1
            self._store.changed()
        self._generation = group.generation
        self._next_heartbeat_ms = now + self.log.heartbeat_interval_ms

    @staticmethod
    def _release_locked(group: MemoryGroup, member: str) -> None:
        for tp in [tp for tp, owner in group.owners.items() if owner == member]:
            del group.owners[tp]

    def _leave_locked(self) -> None:
        assert self._group is not None
        group = self._store.group(self._group)
        group.members.pop(self.member_id, None)
        self._release_locked(group, self.member_id)
        group.generation += 1
        self._store.changed()
        self._positions.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._subscribed:
            with self._store.cond:
                self._leave_locked()
