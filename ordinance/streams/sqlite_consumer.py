"""Consumers and consumer groups of the embedded log.

A group is rows in the database, so members may live in different processes:
each member heartbeats a row in ``group_members``; every heartbeat it drops
members silent for longer than the session timeout, computes the range
assignment (Kafka's default) over the live members, releases partitions it no
longer should own and claims unowned ones it should. A partition has one owner
row at a time, so two members never both own it; commits are fenced on that
row, so a member that lost a partition cannot move its offset.

The rows and the transactions are this module's; the decisions made from them (who is
dead, the assignment, what to release and claim, the commit fence) are `groups`', which
the in-memory log's groups use as well.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Concatenate, Literal, ParamSpec, TypeVar

from ordinance.closing import Closing
from ordinance.streams import sqlite_store as store
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
from ordinance.streams.sqlite_log import SqliteLog

_MAX_IDLE_SLEEP_S = 0.005

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _log_errors(
    method: Callable[Concatenate[SqliteConsumer, _P], _R],
) -> Callable[Concatenate[SqliteConsumer, _P], _R]:
    """What SQLite raises (a lock held too long, a read-only or vanished file) leaves a
    consumer as `LogError`, the documented error, naming the log."""

    @functools.wraps(method)
    def wrapper(self: SqliteConsumer, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise LogError(f"{self.log.url}: {exc}") from exc

    return wrapper


class SqliteConsumer(Closing):
    def __init__(
        self, log: SqliteLog, group: str | None, reset: Literal["earliest", "latest"]
    ) -> None:
        self.log = log
        self._group = group
        self._reset = reset
        self._conn = log.connect()
        self.member_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._subscribed: tuple[str, ...] = ()
        self._positions: dict[TopicPartition, int] = {}
        self._next_heartbeat_ms = 0
        self._turn = 0
        self._closed = False

    @property
    def group(self) -> str | None:
        return self._group

    @_log_errors
    def subscribe(self, topics: Sequence[str]) -> None:
        if self._group is None:
            raise LogError("subscribe needs a consumer group")
        for topic in topics:
            self.log.topic(topic)
        self._subscribed = tuple(topics)
        self._positions.clear()
        self._rebalance()

    @_log_errors
    def assign(self, assignment: Mapping[TopicPartition, StartAt]) -> None:
        if self._subscribed:
            self._leave()
            self._subscribed = ()
        self._positions = {tp: self._resolve(tp, start) for tp, start in assignment.items()}

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    @_log_errors
    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[ConsumedRecord]:
        deadline = time.monotonic() + timeout
        while True:
            if self._subscribed and store.now_ms() >= self._next_heartbeat_ms:
                self._rebalance()
            version = self._data_version()
            records = self._fetch(max_records)
            if records or time.monotonic() >= deadline:
                return records
            self._wait_for_change(version, deadline)

    def _data_version(self) -> int:
        # Changes whenever another connection (any process) commits.
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _wait_for_change(self, version: int, deadline: float) -> None:
        pause = 0.0005
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _MAX_IDLE_SLEEP_S)
            if self._data_version() != version:
                return
            if self._subscribed and store.now_ms() >= self._next_heartbeat_ms:
                return

    def _fetch(self, max_records: int) -> list[ConsumedRecord]:
        self._turn, out = fetch_round(self._positions, self._turn, max_records, self._read)
        return out

    def _read(self, tp: TopicPartition, position: int, budget: int) -> list[ConsumedRecord]:
        rows = self._conn.execute(
            f"SELECT {store.RECORD_COLUMNS} FROM records WHERE topic_id=? AND partition=?"
            " AND offset>=? ORDER BY offset LIMIT ?",
            (self.log.topic(tp.topic).id, tp.partition, position, budget),
        ).fetchall()
        return store.to_records(tp.topic, rows)

    @_log_errors
    def seek(self, tp: TopicPartition, start: StartAt) -> None:
        assigned(self._positions, tp)
        self._positions[tp] = self._resolve(tp, start)

    def position(self, tp: TopicPartition) -> int:
        return assigned(self._positions, tp)

    @_log_errors
    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        with store.write_txn(self._conn) as conn:
            self.commit_in(conn, dict(self._positions) if offsets is None else offsets)

    def commit_in(self, conn: sqlite3.Connection, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit inside the caller's write transaction (see `produce_and_commit`)."""

        def owner_of(tp: TopicPartition) -> str | None:
            row = conn.execute(
                "SELECT member_id FROM group_owners WHERE group_id=? AND topic_id=? AND partition=?",
                (self._group, self.log.topic(tp.topic).id, tp.partition),
            ).fetchone()
            return None if row is None else str(row[0])

        group = fence_commit(
            self._group, self.member_id, offsets, owner_of if self._subscribed else None
        )
        if group is None:
            return
        conn.executemany(
            "INSERT OR REPLACE INTO group_offsets VALUES (?, ?, ?, ?)",
            [(group, self.log.topic(tp.topic).id, tp.partition, o) for tp, o in offsets.items()],
        )

    @_log_errors
    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        if self._group is None:
            return {tp: None for tp in tps}
        group = self._group
        return {
            tp: store.committed_offset(self._conn, group, self.log.topic(tp.topic).id, tp.partition)
            for tp in tps
        }

    def _resolve(self, tp: TopicPartition, start: StartAt) -> int:
        topic_id = self.log.topic(tp.topic).id
        if not 0 <= tp.partition < self.log.topic(tp.topic).spec.partitions:
            raise LogError(f"topic {tp.topic!r} has no partition {tp.partition}")
        if isinstance(start, AtOffset):
            return start.offset
        if isinstance(start, AtTime):
            return store.offset_for_time(self._conn, topic_id, tp.partition, start.timestamp_ms)
        if start is Position.COMMITTED and self._group is not None:
            found = store.committed_offset(self._conn, self._group, topic_id, tp.partition)
            if found is not None:
                return found
        first, end = store.partition_bounds(self._conn, topic_id, tp.partition)
        if start is Position.BEGINNING:
            return first
        if start is Position.END:
            return end
        return first if self._reset == "earliest" else end

    def _rebalance(self) -> None:
        assert self._group is not None
        group, me = self._group, self.member_id
        now = store.now_ms()
        topics = {name: self.log.topic(name) for name in self._subscribed}
        by_id = {row.id: name for name, row in topics.items()}
        with store.write_txn(self._conn) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO group_members VALUES (?, ?, ?, ?)",
                (group, me, json.dumps(self._subscribed), now),
            )
            # Partitions of topics this member no longer subscribes to are given up, as
            # Kafka's rebalance gives them up (`plan_rebalance` sees only the subscribed).
            kept = ",".join("?" * len(topics))
            conn.execute(
                "DELETE FROM group_owners WHERE group_id=? AND member_id=?"
                f" AND topic_id NOT IN ({kept})",
                (group, me, *(row.id for row in topics.values())),
            )
            cutoff = session_cutoff(now, self.log.session_timeout_ms)
            conn.execute(
                "DELETE FROM group_owners WHERE group_id=? AND member_id IN (SELECT member_id"
                " FROM group_members WHERE group_id=? AND heartbeat_ms<?)",
                (group, group, cutoff),
            )
            conn.execute(
                "DELETE FROM group_members WHERE group_id=? AND heartbeat_ms<?", (group, cutoff)
            )
            members = [
                (m, tuple(json.loads(t)))
                for m, t in conn.execute(
                    "SELECT member_id, topics FROM group_members WHERE group_id=?", (group,)
                )
            ]
            owners = {
                TopicPartition(by_id[t], p): m
                for t, p, m in conn.execute(
                    "SELECT topic_id, partition, member_id FROM group_owners WHERE group_id=?",
                    (group,),
                )
                if t in by_id
            }
            partitions = {name: row.spec.partitions for name, row in topics.items()}
            plan = plan_rebalance(me, members, partitions, owners)
            conn.executemany(
                "DELETE FROM group_owners WHERE group_id=? AND topic_id=? AND partition=?",
                [(group, topics[tp.topic].id, tp.partition) for tp in plan.release],
            )
            conn.executemany(
                "INSERT INTO group_owners VALUES (?, ?, ?, ?)",
                [(group, topics[tp.topic].id, tp.partition, me) for tp in plan.claim],
            )
        follow_ownership(
            self._positions, plan.owned, lambda tp: self._resolve(tp, Position.COMMITTED)
        )
        self._next_heartbeat_ms = now + self.log.heartbeat_interval_ms

    def _leave(self) -> None:
        with store.write_txn(self._conn) as conn:
            conn.execute(
                "DELETE FROM group_owners WHERE group_id=? AND member_id=?",
                (self._group, self.member_id),
            )
            conn.execute(
                "DELETE FROM group_members WHERE group_id=? AND member_id=?",
                (self._group, self.member_id),
            )
        self._positions.clear()

    @_log_errors
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._subscribed:
                self._leave()
        finally:
            self._conn.close()
