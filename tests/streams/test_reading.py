"""`known_position` and `read_ranges` on every log: a short range read to its end, a range
ending in records no reader is given, and a range the log cannot finish in time."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ordinance.streams import AtOffset, Log, Record, TopicPartition, TopicSpec
from ordinance.streams.reading import ReadTimeout, known_position, read_ranges


def _fill(log: Log, topic: str, per_partition: int) -> None:
    log.create_topic(TopicSpec(topic, 2))
    for partition in (0, 1):
        log.produce(
            topic,
            [
                Record(b"k", b"%d-%d" % (partition, i), partition=partition)
                for i in range(per_partition)
            ],
        )


class _Hiding:
    """The log, but its consumers hand out no record keyed ``hidden`` while still moving
    past it, as Kafka's consumers do with transaction and end markers; notes whether the
    consumers it opened were closed."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self.opened: list[Any] = []

    def consumer(self, group: str | None = None, **options: Any) -> Any:
        consumer = self._log.consumer(group, **options)
        poll = consumer.poll

        def hiding_poll(*args: Any, **kwargs: Any) -> Any:
            return [r for r in poll(*args, **kwargs) if r.key != b"hidden"]

        consumer.poll = hiding_poll  # type: ignore[method-assign]
        self.opened.append(consumer)
        return consumer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def _closed(consumer: Any) -> bool:
    try:
        consumer.poll(max_records=1, timeout=0.0)
    except Exception:
        return True
    return False


def test_known_position_is_the_position_or_none_where_the_log_cannot_say(
    log: Log, topic: str
) -> None:
    _fill(log, topic, 3)
    tp = TopicPartition(topic, 0)
    with log.consumer(None) as consumer:
        consumer.assign({tp: AtOffset(1)})
        deadline = time.monotonic() + 20
        while known_position(consumer, tp) != 3:
            assert time.monotonic() < deadline, "never read to the end"
            consumer.poll(timeout=0.2)
        assert known_position(consumer, TopicPartition(topic, 1)) is None  # not assigned


def test_read_ranges_yields_each_range_and_nothing_else(log: Log, topic: str) -> None:
    _fill(log, topic, 10)
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    ranges = {first: (2, 5), second: (0, 2), TopicPartition(topic, 9): (4, 4)}
    got = [(r.partition, r.offset, r.value) for r in read_ranges(log, ranges, 20.0)]
    assert sorted(got) == [
        *((0, o, b"0-%d" % o) for o in (2, 3, 4)),
        *((1, o, b"1-%d" % o) for o in (0, 1)),
    ]
    assert [o for p, o, _ in got if p == 0] == [2, 3, 4]  # offset order per partition
    assert list(read_ranges(log, {first: (3, 3)}, 0.0)) == []  # empty: nothing opened


def test_a_range_ending_in_records_no_reader_is_given_is_read_to_its_end(
    log: Log, topic: str
) -> None:
    log.create_topic(TopicSpec(topic, 1))
    log.produce(topic, [Record(b"k" if i < 2 else b"hidden", b"v") for i in range(5)])
    hiding = _Hiding(log)
    began = time.monotonic()
    got = list(read_ranges(hiding, {TopicPartition(topic, 0): (0, 5)}, 20.0))  # type: ignore[arg-type]
    assert [r.offset for r in got] == [0, 1]
    assert time.monotonic() - began < 10  # the position said so; no waiting for the deadline
    assert all(_closed(c) for c in hiding.opened)


def test_stopping_early_closes_the_reader(log: Log, topic: str) -> None:
    _fill(log, topic, 5)
    hiding = _Hiding(log)
    records = read_ranges(hiding, {TopicPartition(topic, 0): (0, 5)}, 20.0)  # type: ignore[arg-type]
    assert next(records).offset == 0
    records.close()
    assert len(hiding.opened) == 1 and _closed(hiding.opened[0])


def test_a_range_the_log_cannot_finish_in_time_raises_after_what_it_read(
    log: Log, topic: str
) -> None:
    _fill(log, topic, 10)
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    got = []
    began = time.monotonic()
    with pytest.raises(ReadTimeout) as raised:
        for record in read_ranges(log, {first: (8, 12), second: (0, 1)}, 1.0):
            got.append((record.partition, record.offset))
    assert 1.0 <= time.monotonic() - began < 10
    assert sorted(got) == [(0, 8), (0, 9), (1, 0)]  # yielded before it gave up
    assert raised.value.unread == {first}
