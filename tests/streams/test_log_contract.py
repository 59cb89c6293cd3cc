"""The `Log` contract, run unchanged against the embedded log and real Kafka."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from streams_helpers import drain, poll_until

from ordinance.streams import (
    AtOffset,
    AtTime,
    Delivered,
    Log,
    Position,
    Record,
    TopicPartition,
    TopicSpec,
    partition_for,
)
from ordinance.streams.errors import FencedError, LogError, ProduceError, TopicConfigError
from ordinance.streams.serde import Decoded, Problem, Serde, UndecodableRecord


def test_records_keep_their_order_within_each_partition(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=3))
    records = [Record(f"agent-{i % 17}".encode(), f"{i}".encode()) for i in range(300)]
    delivered = []
    for start in range(0, 300, 50):
        delivered += log.produce(topic, records[start : start + 50])
    assert [d.topic for d in delivered] == [topic] * 300
    with log.consumer() as consumer:
        consumer.assign({TopicPartition(topic, p): Position.BEGINNING for p in range(3)})
        got = drain(consumer, 300)
    by_partition: dict[int, list[int]] = defaultdict(list)
    for record in got:
        by_partition[record.partition].append(record.offset)
    for offsets in by_partition.values():
        assert offsets == sorted(offsets)
    # Every key's values come back in the order they were produced.
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for record in got:
        assert record.key is not None and record.value is not None
        per_key[record.key].append(int(record.value))
    for values in per_key.values():
        assert values == sorted(values)
    assert sorted(int(r.value or b"") for r in got) == list(range(300))
    # The acknowledged position is where the record really is.
    where = {(r.partition, r.offset): r.value for r in got}
    for d, sent in zip(delivered, records, strict=True):
        assert where[(d.partition, d.offset)] == sent.value


def test_keys_land_where_murmur2_puts_them(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=7))
    keys = [f"agent-{i}".encode() for i in range(100)] + [b"", b"\xff\x00\x10"]
    delivered = log.produce(topic, [Record(k, b"v") for k in keys])
    assert [d.partition for d in delivered] == [partition_for(k, 7) for k in keys]
    assert len({d.partition for d in delivered}) == 7


def test_explicit_partition_overrides_the_key(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=4))
    delivered = log.produce(topic, [Record(b"k", b"v", partition=p) for p in (3, 0, 2)])
    assert [d.partition for d in delivered] == [3, 0, 2]


def test_headers_and_event_time_round_trip(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=1))
    headers = (("trace", b"abc"), ("bin", bytes(range(256))), ("trace", b"second"), ("e", b""))
    sent = [
        Record(b"k1", b"v1", headers, event_time_ms=1_700_000_000_123),
        Record(b"k2", None, (), event_time_ms=1_600_000_000_000),
    ]
    delivered = log.produce(topic, sent)
    assert [d.timestamp_ms for d in delivered] == [1_700_000_000_123, 1_600_000_000_000]
    with log.consumer() as consumer:
        consumer.assign({TopicPartition(topic, 0): Position.BEGINNING})
        first, second = drain(consumer, 2)
    assert first.headers == headers
    assert first.header("trace") == b"second"
    assert first.timestamp_ms == 1_700_000_000_123
    assert (second.key, second.value, second.headers) == (b"k2", None, ())
    assert second.timestamp_ms == 1_600_000_000_000


def test_committed_offsets_resume_the_group(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=2))
    log.produce(topic, [Record(f"{i}".encode(), f"{i}".encode()) for i in range(40)])
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    with log.consumer("resume") as first:
        assert first.committed(tps) == {tp: None for tp in tps}
        first.assign({tp: Position.COMMITTED for tp in tps})
        got = drain(first, 40)
        stop = {tp: max(r.offset for r in got if r.partition == tp.partition) // 2 for tp in tps}
        first.commit(stop)
        assert first.committed(tps) == stop
    with log.consumer("resume") as second:
        second.assign({tp: Position.COMMITTED for tp in tps})
        rest = drain(second, 40 - sum(stop.values()))
        assert {
            tp: min(r.offset for r in rest if r.partition == tp.partition) for tp in tps
        } == stop
        assert second.poll(timeout=0.3) == []
        second.commit()
        ends = {tp: max(r.offset for r in rest if r.partition == tp.partition) + 1 for tp in tps}
        assert second.committed(tps) == ends


def test_seek_to_offset_time_and_end(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=1))
    tp = TopicPartition(topic, 0)
    log.produce(topic, [Record(b"k", b"early-%d" % i) for i in range(5)])
    time.sleep(0.05)
    boundary = int(time.time() * 1000)
    time.sleep(0.05)
    log.produce(topic, [Record(b"k", b"late-%d" % i) for i in range(5)])
    with log.consumer() as consumer:
        consumer.assign({tp: AtTime(boundary)})
        assert drain(consumer, 5)[0].value == b"late-0"
        consumer.seek(tp, AtOffset(3))
        assert drain(consumer, 1)[0].offset == 3
        consumer.seek(tp, Position.END)
        assert consumer.poll(timeout=0.3) == []
        log.produce(topic, [Record(b"k", b"after")])
        after = drain(consumer, 1)[0]
        assert after.value == b"after"
        assert consumer.position(tp) == after.offset + 1
        if log.url.startswith("sqlite"):
            # The local test broker answers a time after the last record with
            # offset 0 instead of "none" (real Kafka: -1, so the end).
            consumer.seek(tp, AtTime(int(time.time() * 1000) + 60_000))
            assert consumer.poll(timeout=0.3) == []


def test_two_members_split_partitions_and_one_takes_over(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=4))
    all_tps = {TopicPartition(topic, p) for p in range(4)}
    a = log.consumer("split")
    b = log.consumer("split")
    try:
        a.subscribe([topic])
        poll_until([a], lambda: a.assignment() == all_tps)
        b.subscribe([topic])
        poll_until(
            [a, b],
            lambda: (
                len(a.assignment()) == 2
                and len(b.assignment()) == 2
                and a.assignment() | b.assignment() == all_tps
            ),
        )
        log.produce(topic, [Record(f"k{i}".encode(), b"x") for i in range(40)])
        got_a: list[int] = []
        got_b: list[int] = []

        def both_done() -> bool:
            got_a.extend(r.partition for r in a.poll(timeout=0.05))
            got_b.extend(r.partition for r in b.poll(timeout=0.05))
            return len(got_a) + len(got_b) == 40

        poll_until([], both_done)
        assert {TopicPartition(topic, p) for p in got_a} <= a.assignment()
        assert {TopicPartition(topic, p) for p in got_b} <= b.assignment()
        b.close()
        poll_until([a], lambda: a.assignment() == all_tps)
    finally:
        a.close()
        b.close()


def test_a_member_that_subscribes_elsewhere_lets_go_of_its_old_partitions(
    log: Log, topic: str
) -> None:
    """Subscribing to other topics gives up the partitions of the old ones, as Kafka's
    rebalance does: the other members of the old topic take them all over."""
    other = f"{topic}.other"
    log.create_topic(TopicSpec(topic, partitions=2))
    log.create_topic(TopicSpec(other, partitions=1))
    a = log.consumer("moving")
    b = log.consumer("moving")
    try:
        a.subscribe([topic])
        b.subscribe([topic])
        poll_until([a, b], lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1)
        a.subscribe([other])
        poll_until(
            [a, b],
            lambda: (
                b.assignment() == {TopicPartition(topic, p) for p in range(2)}
                and a.assignment() == {TopicPartition(other, 0)}
            ),
        )
    finally:
        a.close()
        b.close()


def test_compact_topic_reads_as_last_value_per_key(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=3, cleanup="compact"))
    log.produce(topic, [Record(b"target:prod", b"bundle-1"), Record(b"target:dev", b"bundle-1")])
    log.produce(topic, [Record(b"target:prod", b"bundle-2"), Record(b"bundle:x", b"{...}")])
    log.produce(topic, [Record(b"bundle:x", None), Record(b"target:prod", b"bundle-3")])
    table = log.latest_by_key(topic)
    assert {k: r.value for k, r in table.items()} == {
        b"target:prod": b"bundle-3",
        b"target:dev": b"bundle-1",
    }
    assert table[b"target:prod"].partition == partition_for(b"target:prod", 3)


def test_read_to_end_returns_everything_and_nothing_else(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=2))
    log.produce(topic, [Record(f"{i}".encode(), f"{i}".encode()) for i in range(25)])
    for _ in range(2):
        got = list(log.read_to_end(topic))
        assert sorted(int(r.value or b"") for r in got) == list(range(25))
    assert len(list(log.read_to_end(topic, [0]))) == sum(
        1 for i in range(25) if partition_for(f"{i}".encode(), 2) == 0
    )
    # Whatever a backend does to find the end is invisible to ordinary readers.
    with log.consumer() as consumer:
        consumer.assign({TopicPartition(topic, p): Position.BEGINNING for p in (0, 1)})
        assert len(drain(consumer, 25)) == 25
        assert consumer.poll(timeout=0.3) == []


def test_partitions_and_end_offsets(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=3))
    assert log.partitions(topic) == [0, 1, 2]
    for i in range(4):
        log.produce(topic, [Record(None, b"x", partition=i % 2)])
    assert log.end_offsets(topic) == {0: 2, 1: 2, 2: 0}


def test_create_topic_is_idempotent_but_refuses_a_different_shape(log: Log, topic: str) -> None:
    spec = TopicSpec(topic, partitions=2, retention_ms=3_600_000)
    log.create_topic(spec)
    log.create_topic(spec)
    with pytest.raises(TopicConfigError):
        log.create_topic(TopicSpec(topic, partitions=5))
    with pytest.raises(TopicConfigError):
        log.partitions(topic + ".missing")


def test_produce_and_commit_moves_output_and_offset_together(log: Log, topic: str) -> None:
    source, sink = topic, topic + ".out"
    log.create_topic(TopicSpec(source, partitions=1))
    log.create_topic(TopicSpec(sink, partitions=1))
    log.produce(source, [Record(b"a", b"1"), Record(b"a", b"2")])
    tp = TopicPartition(source, 0)
    with log.consumer("processor") as consumer:
        consumer.subscribe([source])
        first = drain(consumer, 2)[0]
        log.produce_and_commit(
            [(sink, Record(b"a", b"decided-1"))], consumer, {tp: first.offset + 1}
        )
        assert consumer.committed([tp]) == {tp: 1}
    assert [r.value for r in log.read_to_end(sink)] == [b"decided-1"]


def test_an_outbox_delivers_batches_in_order_and_commits_behind_them(log: Log, topic: str) -> None:
    source, sink = topic, topic + ".out"
    log.create_topic(TopicSpec(source, partitions=1))
    log.create_topic(TopicSpec(sink, partitions=2))
    log.produce(source, [Record(b"a", str(i).encode()) for i in range(3)])
    tp = TopicPartition(source, 0)
    delivered: list[list[Delivered]] = []
    with log.consumer("processor") as consumer:
        consumer.subscribe([source])
        drain(consumer, 3)
        outbox = log.outbox(consumer)
        outbox.send(
            [(sink, Record(b"a", b"d0", partition=1)), (sink, Record(b"a", b"d1", partition=0))],
            {tp: 1},
            delivered.append,
        )
        outbox.send([], {tp: 2}, delivered.append)  # an input that answers nothing
        outbox.send([(sink, Record(b"a", b"d2", partition=1))], {tp: 3}, delivered.append)
        outbox.settle()
        assert consumer.committed([tp]) == {tp: 3}
        outbox.close()
    assert [[(d.topic, d.partition) for d in batch] for batch in delivered] == [
        [(sink, 1), (sink, 0)],
        [(sink, 1)],
    ]
    assert delivered[1][0].offset > delivered[0][0].offset  # same partition, in order
    assert [r.value for r in log.read_to_end(sink, [1])] == [b"d0", b"d2"]


def test_a_failed_delivery_raises_and_commits_nothing(log: Log, topic: str) -> None:
    source, sink = topic, topic + ".out"
    log.create_topic(TopicSpec(source, partitions=1))
    log.create_topic(TopicSpec(sink, partitions=1))
    log.produce(source, [Record(b"a", b"0")])
    tp = TopicPartition(source, 0)
    with log.consumer("processor") as consumer:
        consumer.subscribe([source])
        drain(consumer, 1)
        outbox = log.outbox(consumer)
        with pytest.raises(ProduceError):
            outbox.send([(sink, Record(b"a", b"lost", partition=7))], {tp: 1})
            outbox.settle()
        assert consumer.committed([tp]) == {tp: None}


def test_produce_async_reports_each_batch_once(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=2))
    outcomes: dict[str, list[list[Delivered] | ProduceError]] = {"ok": [], "bad": []}
    two = [Record(b"a", b"1", partition=1), Record(b"b", b"2", partition=0)]
    log.produce_async(topic, two, outcomes["ok"].append)
    log.produce_async(topic, [Record(b"c", b"3", partition=9)], outcomes["bad"].append)
    deadline = time.monotonic() + 30
    while not all(outcomes.values()) and time.monotonic() < deadline:
        log.serve_deliveries(0.1)  # batches are independent: either may finish first
    assert log.serve_deliveries() == 0
    [ok], [failed] = outcomes["ok"], outcomes["bad"]
    assert isinstance(ok, list) and [(d.partition, d.offset) for d in ok] == [(1, 0), (0, 0)]
    assert isinstance(failed, ProduceError)
    assert sorted(r.value for r in log.read_to_end(topic)) == [b"1", b"2"]


def test_commit_needs_a_group(log: Log, topic: str) -> None:
    log.create_topic(TopicSpec(topic, partitions=1))
    with log.consumer() as consumer:
        consumer.assign({TopicPartition(topic, 0): Position.BEGINNING})
        with pytest.raises(LogError):
            consumer.commit({TopicPartition(topic, 0): 0})
        with pytest.raises(LogError):
            consumer.subscribe([topic])
    assert not issubclass(FencedError, TopicConfigError)


def test_bad_records_surface_as_values_not_exceptions(log: Log, topic: str) -> None:
    serde = Serde(max_bytes=4096)
    good = serde.encode(
        "Approval",
        {
            "request_id": "r1",
            "agent_id": "a1",
            "verdict": "approved",
            "approver": "alice",
            "at": 1_700_000_000_000_000,
        },
    )
    payloads = [
        b"not avro at all",
        good[:-1],
        b"\xc3\x01" + b"\x00" * 8 + b"body",
        good + b"\x00" * 5000,
        None,
        good,
    ]
    log.create_topic(TopicSpec(topic, partitions=1))
    log.produce(topic, [Record(b"k", p) for p in payloads])
    with log.consumer() as consumer:
        consumer.assign({TopicPartition(topic, 0): Position.BEGINNING})
        results = [serde.decode_record(r) for r in drain(consumer, len(payloads))]
    problems = [r.problem if isinstance(r, UndecodableRecord) else None for r in results]
    assert problems == [
        Problem.BAD_MARKER,
        Problem.TRUNCATED,
        Problem.UNKNOWN_SCHEMA,
        Problem.OVERSIZE,
        Problem.EMPTY,
        None,
    ]
    bad = results[0]
    assert isinstance(bad, UndecodableRecord)
    assert (bad.raw, bad.topic, bad.partition, bad.offset) == (payloads[0], topic, 0, 0)
    decoded = results[-1]
    assert isinstance(decoded, Decoded) and decoded.value["approver"] == "alice"
