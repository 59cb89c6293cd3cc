"""What only the in-memory log promises (the contract itself runs in test_log_contract):
handles by name onto one process-wide log, a poll woken by a produce, groups timed by
an injected clock, fencing, and atomic produce+commit."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from streams_helpers import drain, poll_until

from ordinance.streams import (
    AtTime,
    Position,
    Record,
    TopicPartition,
    TopicSpec,
    open_existing_log,
    open_log,
)
from ordinance.streams.errors import (
    FencedError,
    LogError,
    ProduceError,
    TopicConfigError,
    UnsupportedLogUrlError,
)
from ordinance.streams.memory_log import MemoryLog, discard_memory_log


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def name() -> Iterator[str]:
    made = f"test-{uuid.uuid4().hex[:12]}"
    yield made
    discard_memory_log(made)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log(name: str, clock: FakeClock) -> Iterator[MemoryLog]:
    with MemoryLog(name, heartbeat_interval_ms=50, session_timeout_ms=1500, clock=clock) as opened:
        yield opened


def test_handles_by_name_share_one_log_that_outlives_them(name: str) -> None:
    with pytest.raises(LogError, match="no in-memory log"):
        open_existing_log(f"memory://{name}")
    with open_log(f"memory://{name}") as writer:
        writer.create_topic(TopicSpec("t", partitions=2))
        writer.produce("t", [Record(b"k", b"one")])
        with open_log(f"memory://{name}") as other:  # as `serve` does: one per processor
            other.produce("t", [Record(b"k", b"two")])
            assert [r.value for r in writer.read_to_end("t")] == [b"one", b"two"]
            with other.consumer("g") as consumer:
                consumer.commit({TopicPartition("t", 1): 5})
    with open_existing_log(f"memory://{name}") as reader:
        assert reader.url == f"memory://{name}"
        assert [r.value for r in reader.read_to_end("t")] == [b"one", b"two"]
        with reader.consumer("g") as consumer:
            assert consumer.committed([TopicPartition("t", 1)]) == {TopicPartition("t", 1): 5}
    with open_log(f"memory://{name}-other") as elsewhere, pytest.raises(TopicConfigError):
        elsewhere.partitions("t")
    discard_memory_log(f"{name}-other")
    discard_memory_log(name)
    with pytest.raises(LogError):
        open_existing_log(f"memory://{name}")


def test_a_closed_handle_refuses_work_but_its_consumer_still_reads(name: str) -> None:
    log = open_log(f"memory://{name}")
    log.create_topic(TopicSpec("t", partitions=1))
    log.produce("t", [Record(b"k", b"v")])
    consumer = log.consumer()
    consumer.assign({TopicPartition("t", 0): Position.BEGINNING})
    log.close()
    with pytest.raises(ProduceError):
        log.produce("t", [Record(b"k", b"late")])
    with pytest.raises(LogError):
        log.end_offsets("t")
    # Consumers read the shared log, as the embedded log's read on their own connection.
    assert [r.value for r in drain(consumer, 1)] == [b"v"]
    consumer.close()
    with pytest.raises(LogError):
        consumer.poll(timeout=0)


def test_urls_carry_the_options(name: str) -> None:
    url = f"memory://{name}?session_timeout_ms=700&heartbeat_interval_ms=20&max_record_bytes=8"
    with open_log(url) as log:
        assert isinstance(log, MemoryLog)
        assert (log.session_timeout_ms, log.heartbeat_interval_ms) == (700, 20)
        log.create_topic(TopicSpec("t", partitions=1))
        with pytest.raises(ProduceError, match="cap"):
            log.produce("t", [Record(b"key", b"value!")])  # 9 bytes
        assert log.end_offsets("t") == {0: 0}
    for bad in (
        "memory://",
        f"memory://{name}?colour=blue",
        f"memory://{name}?session_timeout_ms=soon",
    ):
        with pytest.raises(UnsupportedLogUrlError):
            open_log(bad)
    with pytest.raises(LogError):
        open_log(f"memory://{name}?heartbeat_interval_ms=0")


def test_a_waiting_poll_wakes_when_a_record_arrives(log: MemoryLog) -> None:
    log.create_topic(TopicSpec("t", partitions=1))
    produced_at: list[float] = []

    def produce_later() -> None:
        time.sleep(0.2)
        produced_at.append(time.monotonic())
        log.produce("t", [Record(b"k", b"v")])

    with log.consumer() as consumer:
        consumer.assign({TopicPartition("t", 0): Position.END})
        writer = threading.Thread(target=produce_later)
        writer.start()
        got = consumer.poll(timeout=10.0)
        woke_at = time.monotonic()
        writer.join()
    assert [r.value for r in got] == [b"v"]
    assert woke_at - produced_at[0] < 1.0  # woken by the produce, not by the timeout


def test_concurrent_producers_get_dense_offsets_and_lose_nothing(log: MemoryLog) -> None:
    log.create_topic(TopicSpec("t", partitions=3))
    acked: list[list[tuple[int, int]]] = [[] for _ in range(4)]

    def produce(worker: int) -> None:
        for i in range(200):
            [d] = log.produce("t", [Record(f"w{worker}".encode(), f"{worker}:{i}".encode())])
            acked[worker].append((d.partition, d.offset))

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = list(log.read_to_end("t"))
    assert len(records) == 800
    for p in range(3):
        assert [r.offset for r in records if r.partition == p] == list(
            range(log.end_offsets("t")[p])
        )
    where = {(r.partition, r.offset): r.value for r in records}
    for worker, positions in enumerate(acked):
        assert [where[pos] for pos in positions] == [f"{worker}:{i}".encode() for i in range(200)]


def test_a_silent_member_loses_its_partitions_only_after_the_session_timeout(
    log: MemoryLog, clock: FakeClock
) -> None:
    log.create_topic(TopicSpec("work", partitions=4))
    with log.consumer("workers") as survivor, log.consumer("workers") as silent:
        survivor.subscribe(["work"])
        silent.subscribe(["work"])
        poll_until(
            [survivor, silent],
            lambda: len(survivor.assignment()) == 2 and len(silent.assignment()) == 2,
        )
        clock.now += 1.4  # silent stops polling; 1.4 s is inside the 1.5 s session
        survivor.poll(timeout=0.05)
        assert len(survivor.assignment()) == 2
        clock.now += 0.2
        survivor.poll(timeout=0.05)
        assert len(survivor.assignment()) == 4


def test_a_member_waiting_in_a_long_poll_keeps_heartbeating(name: str) -> None:
    # Real time here: what is checked is that a blocked poll still wakes to heartbeat.
    with MemoryLog(name, heartbeat_interval_ms=20, session_timeout_ms=300) as log:
        log.create_topic(TopicSpec("work", partitions=4))
        with log.consumer("workers") as waiting, log.consumer("workers") as busy:
            waiting.subscribe(["work"])
            blocked = threading.Thread(target=waiting.poll, kwargs={"timeout": 1.5})
            blocked.start()
            busy.subscribe(["work"])
            most = 0
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                busy.poll(timeout=0.02)
                most = max(most, len(busy.assignment()))
            blocked.join()
            # Split, and never taken over: the waiting member gave up half and stayed
            # alive, not dropped after 300 ms of silence (and let back in on waking).
            assert most == 2
            assert waiting.assignment() | busy.assignment() == {
                TopicPartition("work", p) for p in range(4)
            }


def test_a_member_that_lost_its_partition_cannot_commit(log: MemoryLog, clock: FakeClock) -> None:
    log.create_topic(TopicSpec("in", partitions=1))
    log.create_topic(TopicSpec("out", partitions=1))
    log.produce("in", [Record(b"k", b"v")])
    tp = TopicPartition("in", 0)
    stale = log.consumer("proc")
    stale.subscribe(["in"])
    (record,) = drain(stale, 1)
    clock.now += 1.6  # stale stops heartbeating past the session timeout
    with log.consumer("proc") as fresh:
        fresh.subscribe(["in"])
        assert fresh.assignment() == {tp}
        with pytest.raises(FencedError):
            log.produce_and_commit([("out", Record(b"k", b"decision"))], stale, {tp: 1})
        with pytest.raises(FencedError):
            stale.commit({tp: 1})
        # The fenced write left nothing behind: no output, no offset...
        assert list(log.read_to_end("out")) == []
        assert fresh.committed([tp]) == {tp: None}
        # ...so the new owner gets the record again and decides it.
        assert [r.value for r in drain(fresh, 1)] == [record.value]
        # The stale member's next poll learns it was dropped, and it owns nothing.
        stale.poll(timeout=0.05)
        assert stale.assignment() == frozenset()
    stale.close()


def test_produce_and_commit_is_all_or_nothing(log: MemoryLog, name: str) -> None:
    log.create_topic(TopicSpec("in", partitions=1))
    log.create_topic(TopicSpec("out", partitions=1))
    log.produce("in", [Record(b"k", b"v")])
    tp = TopicPartition("in", 0)
    with log.consumer("proc") as consumer:
        consumer.subscribe(["in"])
        drain(consumer, 1)
        with pytest.raises(ProduceError):
            log.produce_and_commit(
                [("out", Record(b"k", b"ok")), ("out", Record(b"k", b"bad", partition=9))],
                consumer,
                {tp: 1},
            )
        assert list(log.read_to_end("out")) == []
        assert consumer.committed([tp]) == {tp: None}
        log.produce_and_commit([("out", Record(b"k", b"ok"))], consumer, {tp: 1})
        assert consumer.committed([tp]) == {tp: 1}
    # A consumer of another handle, even onto the same log, is not this log's to commit.
    with MemoryLog(name) as other, other.consumer("proc") as foreign:
        foreign.subscribe(["in"])
        with pytest.raises(LogError):
            log.produce_and_commit([], foreign, {tp: 1})


def test_compact_topics_need_keys_and_tombstones_delete(log: MemoryLog) -> None:
    log.create_topic(TopicSpec("c", partitions=2, cleanup="compact"))
    log.produce("c", [Record(b"a", b"1"), Record(b"b", b"1"), Record(b"a", b"2")])
    log.produce("c", [Record(b"b", None), Record(b"c", b"1")])
    assert {k: r.value for k, r in log.latest_by_key("c").items()} == {b"a": b"2", b"c": b"1"}
    with pytest.raises(ProduceError, match="needs a key"):
        log.produce("c", [Record(None, b"no key")])
    # Nothing is compacted away: a reader from the start sees every record.
    assert len(list(log.read_to_end("c"))) == 5
    with pytest.raises(TopicConfigError):
        log.create_topic(TopicSpec("c", partitions=2))  # delete instead of compact


def test_stored_records_do_not_change_with_the_producers_buffers(log: MemoryLog) -> None:
    log.create_topic(TopicSpec("t", partitions=1))
    value = bytearray(b"original")
    log.produce("t", [Record(b"k", value)])  # type: ignore[arg-type]  # what a careless caller does
    value[:] = b"changed!"
    [record] = log.read_to_end("t")
    assert record.value == b"original" and type(record.value) is bytes


def test_read_to_end_ends_where_the_log_ended_when_called(log: MemoryLog) -> None:
    log.create_topic(TopicSpec("t", partitions=1))
    log.produce("t", [Record(b"k", b"%d" % i) for i in range(3)])
    reading = log.read_to_end("t")
    log.produce("t", [Record(b"k", b"later")])
    assert [r.value for r in reading] == [b"0", b"1", b"2"]
    with pytest.raises(LogError):
        log.read_to_end("t", [1])


def test_a_time_after_every_record_seeks_to_the_end(log: MemoryLog) -> None:
    log.create_topic(TopicSpec("t", partitions=1))
    tp = TopicPartition("t", 0)
    log.produce("t", [Record(b"k", b"x", event_time_ms=5_000), Record(b"k", b"y", event_time_ms=1)])
    with log.consumer() as consumer:
        consumer.assign({tp: AtTime(6_000)})
        assert consumer.position(tp) == 2
        consumer.seek(tp, AtTime(2))  # event times are not sorted: the first late enough
        assert consumer.position(tp) == 0
