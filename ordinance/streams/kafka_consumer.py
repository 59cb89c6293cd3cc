"""`Consumer` on a librdkafka consumer; the settings are explained in kafka_log.

Catching up. A consumer reads with its *tail*: one librdkafka consumer with the
latency settings (``fetch.wait.max.ms=5``, or 100 when relaxed), which on the local
broker returns nothing from a partition made of thousands of small batches (kafka_log
says why). So `poll` watches, from the high watermark every fetch response carries
(librdkafka caches it: no extra request), how far each partition is behind, and moves
a partition to a *catch-up reader* — a second, assign-only consumer with a long fetch
wait (`CATCH_UP_CONSUMER`), created on first need — when for `STALL_S` either

* it stayed at least `CATCH_UP_LAG` records behind (a backlog: after a crash or a
  takeover, or a processor slower than its input), or
* it stayed behind at all and `poll` returned none of its records (a stalled tail).

A healthy tail is never either: it is at most a few records behind, and only between
two fetches. The tail pauses the partition; the reader starts at the next offset this
consumer would have returned, so nothing is skipped or returned twice (records below
that offset, still buffered by either consumer, are dropped), and commits still go
through the tail, the group member. Once the reader's position reaches the high
watermark of its last fetch (or it reports the partition's end), the tail seeks to
that position and resumes: tailing latency is the tail's again. If the tail then
returns none of the partition's records before it stalls again, the partition is too
long for the tail to list at all, and the reader keeps it until the assignment changes:
new records then wait for the reader's fetch (~250 ms on the local broker), slower than
the tail but never stuck. A rebalance, `assign` or `seek` ends the catch-up of the
partitions it touches. If no fetch answer has named a partition for `STALL_S` (the
local broker names none when the wait is 0), `poll` asks the broker for its watermarks.
With real Kafka a catch-up changes nothing but which consumer fetches: Kafka answers a
fetch at once whenever data is there.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_STORED,
    KafkaError,
    KafkaException,
    Message,
)
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import TopicPartition as KafkaTP

from ordinance.closing import Closing
from ordinance.streams.errors import FencedError, LogError
from ordinance.streams.log import (
    MARKER_HEADER,
    AtOffset,
    AtTime,
    ConsumedRecord,
    Headers,
    Position,
    StartAt,
    TopicPartition,
)

if TYPE_CHECKING:
    from ordinance.streams.kafka_log import KafkaLog

_log = logging.getLogger(__name__)

#: How long a partition must look behind (see the module docstring) before the
#: catch-up reader takes it. Long against the tail's fetch cycle (5-100 ms), so a
#: record in flight never triggers it; short against a drain that takes minutes.
STALL_S = 0.5
#: A lag (records) that is a backlog rather than records in flight: a tail at 1k
#: records/s is a handful behind between fetches.
CATCH_UP_LAG = 1000
#: How often `poll` compares positions with the cached high watermarks.
LAG_CHECK_INTERVAL_S = 0.05
#: While a partition catches up, `poll` waits on each consumer in turns this long,
#: so the tail's other partitions wait no longer than this for the reader.
_TURN_S = 0.01

# Commit errors that mean "you are no longer the owner of this partition".
_FENCED = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
}


def new_consumer(
    client_config: Mapping[str, Any],
    group: str | None,
    reset: str,
    *,
    relaxed: bool = False,
    catch_up: Mapping[str, Any] | None = None,
) -> RawConsumer:
    from ordinance.streams.kafka_log import CONSUMER_DEFAULTS, RELAXED_CONSUMER

    return RawConsumer(
        {
            **CONSUMER_DEFAULTS,
            **(RELAXED_CONSUMER if relaxed else {}),
            # Settings given in the URL win over the defaults; the catch-up reader's
            # own two win over those: they are what it is for.
            **client_config,
            **(catch_up or {}),
            # librdkafka wants a group even for assign-only reading; a private
            # one is never committed to, so it leaves no trace on the broker.
            "group.id": group or f"ordinance-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": reset,
        }
    )


def _tp(msg: Message) -> TopicPartition:
    return TopicPartition(str(msg.topic()), int(msg.partition() or 0))


def _kafka_tp(tp: TopicPartition, offset: int | None = None) -> KafkaTP:
    if offset is None:
        return KafkaTP(tp.topic, tp.partition)
    return KafkaTP(tp.topic, tp.partition, offset)


def _headers(msg: Message) -> Headers:
    raw = msg.headers()
    if not raw:
        return ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((str(k), v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs)


class KafkaConsumer(Closing):
    def __init__(
        self,
        log: KafkaLog,
        group: str | None,
        reset: Literal["earliest", "latest"],
        *,
        keep_markers: bool = False,
        relaxed: bool = False,
    ) -> None:
        self._log = log
        self._group = group
        self._keep_markers = keep_markers
        self._reset = reset
        self._raw = new_consumer(log.client_config, group, reset, relaxed=relaxed)
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._revoke_hooks: list[Callable[[], None]] = []
        self._closed = False
        # Where reading starts in a partition nothing was returned from yet: an offset,
        # or OFFSET_BEGINNING / OFFSET_STORED, resolved only if it must catch up.
        self._starts: dict[TopicPartition, int] = {}
        # Catching up (module docstring): partitions the reader has, with the offset it
        # started at; since when each tail partition looks behind, and when the tail
        # last returned one of its records.
        self._catcher: RawConsumer | None = None
        self._catching: dict[TopicPartition, int] = {}
        # Partitions handed back to the tail, and those the tail then stalled on at once
        # (too long for it to list): the reader keeps those until the assignment changes.
        self._handed_back: set[TopicPartition] = set()
        self._sticky: set[TopicPartition] = set()
        self._behind_since: dict[TopicPartition, float] = {}
        self._progress_at: dict[TopicPartition, float] = {}
        self._unknown_since: dict[TopicPartition, float] = {}
        self._lag_checked_at = 0.0

    def before_revoke(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` when the group is about to take partitions away, while they are
        still ours (inside `poll`, before this member rejoins)."""
        self._revoke_hooks.append(hook)

    @property
    def group(self) -> str | None:
        return self._group

    def subscribe(self, topics: Sequence[str]) -> None:
        if self._group is None:
            raise LogError("subscribe needs a consumer group")
        for topic in topics:
            self._log.partitions(topic)

        def on_assign(_: RawConsumer, tps: list[KafkaTP]) -> None:
            self._assigned = {TopicPartition(tp.topic, tp.partition) for tp in tps}
            self._positions = {
                tp: off for tp, off in self._positions.items() if tp in self._assigned
            }
            self._starts = {tp: OFFSET_STORED for tp in self._assigned}

        def on_revoke(_: RawConsumer, tps: list[KafkaTP]) -> None:
            for hook in self._revoke_hooks:
                hook()
            gone = {TopicPartition(tp.topic, tp.partition) for tp in tps}
            self._end_catch_up(gone & self._catching.keys(), seek=False)
            for tp in gone:
                self._assigned.discard(tp)
                self._positions.pop(tp, None)
                self._forget(tp)
            self._reset_catch_up_history(gone)

        self._raw.subscribe(list(topics), on_assign=on_assign, on_revoke=on_revoke)

    def assign(self, assignment: Mapping[TopicPartition, StartAt]) -> None:
        targets = [self._resolve(tp, start) for tp, start in assignment.items()]
        # A new assignment replaces the tail's, paused partitions included.
        self._end_catch_up(set(self._catching), seek=False)
        self._raw.assign(targets)
        self._assigned = set(assignment)
        self._positions = {}
        self._starts = {TopicPartition(t.topic, t.partition): t.offset for t in targets}
        self._behind_since.clear()
        self._progress_at.clear()
        self._unknown_since.clear()
        self._reset_catch_up_history()

    def _resolve(self, tp: TopicPartition, start: StartAt) -> KafkaTP:
        if isinstance(start, AtOffset):
            return KafkaTP(tp.topic, tp.partition, start.offset)
        if isinstance(start, AtTime):
            found = self._raw.offsets_for_times(
                [KafkaTP(tp.topic, tp.partition, start.timestamp_ms)], timeout=10
            )[0]
            if found.offset < 0:  # no record at or after that time
                return self._resolve(tp, Position.END)
            return KafkaTP(tp.topic, tp.partition, found.offset)
        if start is Position.END:
            # Not OFFSET_END: that resolves to the high watermark, which a
            # broker may under-report. Past our own marker is the true end.
            end = self._log.end_marker(tp.topic, [tp.partition])[tp.partition] + 1
            return KafkaTP(tp.topic, tp.partition, end)
        special = OFFSET_BEGINNING if start is Position.BEGINNING else OFFSET_STORED
        return KafkaTP(tp.topic, tp.partition, special)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._assigned)

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[ConsumedRecord]:
        if self._catching:
            tail, caught = self._poll_both(max_records, timeout)
        else:
            tail, caught = self._poll_tail(max_records, timeout), []
        out: list[ConsumedRecord] = []
        returned: set[TopicPartition] = set()
        # A partition the reader has is the reader's alone: what the tail still holds
        # of it is stale, and the reader's records of a partition it gave back are too.
        self._convert(tail, lambda tp: tp not in self._catching, out, returned)
        ended: set[TopicPartition] = set()
        self._convert(caught, lambda tp: tp in self._catching, out, returned, ended)
        now = time.monotonic()
        for tp in returned:
            self._progress_at[tp] = now
        if self._catching:
            self._hand_back(ended)
        if now - self._lag_checked_at >= LAG_CHECK_INTERVAL_S:
            self._lag_checked_at = now
            self._check_lag(now)
        return out

    def _poll_tail(self, max_records: int, timeout: float) -> list[Message]:
        # consume(n, t) waits for n messages or t seconds; poll() returns on the
        # first one. So: wait for one, then drain what is already buffered.
        first = self._raw.poll(timeout)
        if first is None:
            return []
        messages = [first]
        if max_records > 1:
            messages.extend(self._raw.consume(max_records - 1, 0))
        return messages

    def _poll_both(self, max_records: int, timeout: float) -> tuple[list[Message], list[Message]]:
        """What the tail and the catch-up reader have, waiting up to ``timeout`` for the
        first record from either, in turns of `_TURN_S` on each."""
        assert self._catcher is not None
        deadline = time.monotonic() + timeout
        while True:
            # consume() serves the tail's rebalance callbacks, as poll() does.
            tail = self._raw.consume(max_records, 0)
            room = max_records - len(tail)
            caught = self._catcher.consume(room, 0) if room > 0 and self._catching else []
            remaining = deadline - time.monotonic()
            if tail or caught or remaining <= 0 or not self._catching:
                return tail, caught
            first = self._catcher.poll(min(_TURN_S, remaining))
            if first is not None:
                caught = [first]
                if max_records > 1:
                    caught.extend(self._catcher.consume(max_records - 1, 0))
                return [], caught
            first = self._raw.poll(min(_TURN_S, max(0.0, deadline - time.monotonic())))
            if first is not None:
                if max_records > 1:
                    return [first, *self._raw.consume(max_records - 1, 0)], []
                return [first], []

    def _convert(
        self,
        messages: list[Message],
        wanted: Callable[[TopicPartition], bool],
        out: list[ConsumedRecord],
        returned: set[TopicPartition],
        ended: set[TopicPartition] | None = None,
    ) -> None:
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise LogError(f"consumer failed: {err.str()}")
                if err.code() == KafkaError._PARTITION_EOF:
                    if ended is not None:
                        ended.add(_tp(msg))
                else:
                    _log.warning("consumer: %s", err.str())
                continue
            tp = _tp(msg)
            offset = msg.offset()
            assert offset is not None
            if tp not in self._assigned or not wanted(tp):
                continue
            known = self._positions.get(tp)
            if known is not None and offset < known:
                continue  # buffered before a hand-over: returned already
            self._positions[tp] = offset + 1
            returned.add(tp)
            headers = _headers(msg)
            if not self._keep_markers and any(k == MARKER_HEADER for k, _ in headers):
                continue
            out.append(
                ConsumedRecord(
                    tp.topic,
                    tp.partition,
                    offset,
                    msg.key(),
                    msg.value(),
                    headers,
                    int(msg.timestamp()[1]),
                )
            )

    # -- catching up (module docstring) ----------------------------------------------
    def _next_offset(self, tp: TopicPartition) -> int | None:
        """The offset `poll` returns next for ``tp``, if known without asking the broker."""
        known = self._positions.get(tp)
        if known is not None:
            return known
        start = self._starts.get(tp)
        return start if start is not None and start >= 0 else None

    def _check_lag(self, now: float) -> None:
        from ordinance.streams.kafka_log import CATCH_UP_CONSUMER

        if CATCH_UP_CONSUMER is None:
            return
        stalled: dict[TopicPartition, int] = {}  # -> its high watermark
        for tp in self._assigned:
            if tp in self._catching:
                continue
            low, high = self._raw.get_watermark_offsets(_kafka_tp(tp), cached=True)
            if high < 0:
                # No fetch answer named it yet: at first that is the join, but the local
                # broker leaves every partition out of its answer when the wait is 0.
                # After STALL_S of that, ask the broker, at most once per STALL_S.
                unknown = self._unknown_since.setdefault(tp, now)
                if now - unknown < STALL_S:
                    continue
                self._unknown_since[tp] = now
                try:
                    low, high = self._raw.get_watermark_offsets(_kafka_tp(tp), timeout=10)
                except KafkaException as exc:
                    _log.warning("consumer: watermarks of %s: %s", tp, exc)
                    continue
                # Quiet long enough already: it moves now if it is behind at all.
                self._behind_since.setdefault(tp, unknown)
            nxt = self._next_offset(tp)
            # Not known yet (a stored or earliest start): behind if there is anything
            # to read at all; `_start_catch_up` resolves it before moving anything.
            lag = high - (nxt if nxt is not None else max(low, 0))
            if lag <= 0:
                self._behind_since.pop(tp, None)
                continue
            since = self._behind_since.setdefault(tp, now)
            quiet_since = max(since, self._progress_at.get(tp, since))
            if (now - since >= STALL_S and lag >= CATCH_UP_LAG) or now - quiet_since >= STALL_S:
                stalled[tp] = high
        if stalled:
            self._start_catch_up(stalled, CATCH_UP_CONSUMER)

    def _exact_start(self, tp: TopicPartition) -> int | None:
        """Where `poll` would continue in ``tp``, asking the broker if need be; None
        when it cannot be known (no committed offset and ``reset='latest'``: the tail
        chose the end at a moment we cannot see)."""
        nxt = self._next_offset(tp)
        if nxt is not None:
            return nxt
        start = self._starts.get(tp, OFFSET_STORED)
        if start == OFFSET_STORED:
            committed = self.committed([tp])[tp]
            if committed is not None:
                return committed
            if self._reset == "latest":
                return None
        low, _ = self._raw.get_watermark_offsets(_kafka_tp(tp), timeout=10)
        return int(low)

    def _start_catch_up(
        self, stalled: Mapping[TopicPartition, int], settings: Mapping[str, Any]
    ) -> None:
        """Move ``stalled`` (partition -> its high watermark) to the catch-up reader."""
        moving: dict[TopicPartition, int] = {}
        for tp, high in stalled.items():
            start = self._exact_start(tp)
            if start is None:
                continue
            self._starts[tp] = start
            if start >= high:
                self._behind_since.pop(tp, None)  # it was the start that was unknown
                continue
            moving[tp] = start
        if not moving:
            return
        if self._catcher is None:
            self._catcher = new_consumer(
                self._log.client_config, None, "earliest", catch_up=settings
            )
        for tp, start in moving.items():
            high = stalled[tp]
            again = tp in self._handed_back and tp not in self._progress_at
            if again:
                self._sticky.add(tp)
            # A backlog, or a partition staying with the reader, is worth a line; the
            # reader taking a few records of a partition the tail stalls on is not.
            _log.log(
                logging.INFO if again or high - start >= CATCH_UP_LAG else logging.DEBUG,
                "consumer: %s[%d] is %d records behind; reading it with the catch-up reader%s",
                tp.topic,
                tp.partition,
                high - start,
                " from now on: the tail returned none of its records" if again else "",
            )
        self._raw.pause([_kafka_tp(tp) for tp in moving])
        self._catcher.incremental_assign([_kafka_tp(tp, off) for tp, off in moving.items()])
        self._catching.update(moving)

    def _hand_back(self, ended: set[TopicPartition]) -> None:
        """Give the tail back each partition the reader has brought to the end."""
        assert self._catcher is not None
        done: set[TopicPartition] = set()
        for tp, start in self._catching.items():
            _, high = self._catcher.get_watermark_offsets(_kafka_tp(tp), cached=True)
            # ``high > start``: a watermark of this catch-up's fetches, not one librdkafka
            # kept from an earlier catch-up of the same partition.
            if tp in self._sticky:
                continue
            if tp in ended or (high > start and self._positions.get(tp, start) >= high):
                done.add(tp)
        self._end_catch_up(done, seek=True)
        self._handed_back |= done

    def _end_catch_up(self, tps: set[TopicPartition], *, seek: bool) -> None:
        """Take ``tps`` from the reader and resume them on the tail; with ``seek``, from
        where the reader stopped (without, the caller is about to move or drop them)."""
        if not tps:
            return
        assert self._catcher is not None
        self._catcher.incremental_unassign([_kafka_tp(tp) for tp in tps])
        for tp in tps:
            start = self._catching.pop(tp)
            self._forget(tp)
            if seek:
                # Also drops what the tail had fetched of it before the pause.
                self._raw.seek(_kafka_tp(tp, self._positions.get(tp, start)))
        # Resumed even when the caller replaces the assignment: a pause could outlive it.
        self._raw.resume([_kafka_tp(tp) for tp in tps])

    def _forget(self, tp: TopicPartition) -> None:
        self._behind_since.pop(tp, None)
        self._progress_at.pop(tp, None)
        self._unknown_since.pop(tp, None)

    def _reset_catch_up_history(self, tps: set[TopicPartition] | None = None) -> None:
        """Forget what the tail could not read: the partitions moved, or were sought."""
        if tps is None:
            self._handed_back.clear()
            self._sticky.clear()
        else:
            self._handed_back -= tps
            self._sticky -= tps

    def seek(self, tp: TopicPartition, start: StartAt) -> None:
        if tp not in self._assigned:
            raise LogError(f"{tp} is not assigned to this consumer")
        if tp in self._catching:
            self._end_catch_up({tp}, seek=False)
        target = self._resolve(tp, start)
        if target.offset == OFFSET_STORED:
            committed = self.committed([tp])[tp]
            if committed is not None:
                target = KafkaTP(tp.topic, tp.partition, committed)
            elif self._reset == "latest":
                target = self._resolve(tp, Position.END)
            else:
                target = KafkaTP(tp.topic, tp.partition, OFFSET_BEGINNING)
        self._raw.seek(target)
        self._positions.pop(tp, None)
        self._starts[tp] = target.offset
        self._forget(tp)
        self._reset_catch_up_history({tp})

    def position(self, tp: TopicPartition) -> int:
        if tp not in self._assigned:
            raise LogError(f"{tp} is not assigned to this consumer")
        known = self._positions.get(tp)
        if known is not None:
            return known
        if tp in self._catching:
            return self._catching[tp]
        found = self._raw.position([KafkaTP(tp.topic, tp.partition)])[0].offset
        if found < 0:
            committed = self.committed([tp])[tp]
            if committed is not None:
                return committed
            raise LogError(f"{tp}: position unknown until the first poll")
        return int(found)

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        if self._group is None:
            raise LogError("committing offsets needs a consumer group")
        chosen = dict(self._positions) if offsets is None else dict(offsets)
        if not chosen:
            return
        try:
            self._raw.commit(
                offsets=[KafkaTP(tp.topic, tp.partition, off) for tp, off in chosen.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in _FENCED:
                raise FencedError(f"commit refused, partition moved: {error.str()}") from exc
            raise LogError(f"commit failed: {error.str()}") from exc

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        if self._group is None:
            return {tp: None for tp in tps}
        found = self._raw.committed([KafkaTP(tp.topic, tp.partition) for tp in tps], timeout=10)
        return {
            TopicPartition(k.topic, k.partition): (k.offset if k.offset >= 0 else None)
            for k in found
        }

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            # The tail first: leaving the group revokes its partitions, and the revoke
            # takes them from the reader, which must still be open for that.
            self._raw.close()
            if self._catcher is not None:
                self._catcher.close()
