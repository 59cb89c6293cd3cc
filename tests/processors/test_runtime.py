"""The processor runtime's own laws, with a small processor on the embedded log: a record
whose step raises is answered by ``failed`` and the loop goes on; a storage failure is not
a record's fault and ends the run; a record that is not the processor's is not committed;
assignment changes reach the processor before the records they bring; tasks run when due;
``finish`` runs after everything sent was settled."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ordinance.processors.runtime import Emit, ProcessorBase, Runtime, Task
from ordinance.streams import ConsumedRecord, Consumer, Log, Record, TopicPartition, open_log
from ordinance.streams.errors import LogError
from ordinance.streams.log import TopicSpec

IN, OUT = "in", "out"


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    with open_log(f"sqlite:///{tmp_path}/log.db") as log:
        log.create_topic(TopicSpec(IN, 2))
        log.create_topic(TopicSpec(OUT, 1))
        yield log


def put(log: Log, *values: bytes, partition: int = 0) -> None:
    log.produce(IN, [Record(None, v, (), 0, partition) for v in values])


def out_values(log: Log) -> list[bytes]:
    return [bytes(r.value or b"") for r in log.read_to_end(OUT)]


class Echo(ProcessorBase):
    """Copies each input value to ``out``; ``boom`` raises, ``disk`` fails like storage,
    ``skip`` is not its record; ``failed`` answers with ``failed:<value>``."""

    name = "echo"

    def __init__(self, *, answer_failures: bool = True) -> None:
        self.answer_failures = answer_failures
        self.events: list[str] = []
        self.delivered: list[int] = []
        self.ticks = 0

    def open(self, log: Log, resources: contextlib.ExitStack) -> Consumer:
        consumer = resources.enter_context(log.consumer("echo-group"))
        consumer.subscribe([IN])
        return consumer

    def rebalanced(self, gained: set[TopicPartition], lost: set[TopicPartition]) -> None:
        self.events.append(f"gained {sorted(tp.partition for tp in gained)}")

    def step(self, record: ConsumedRecord) -> list[Emit] | None:
        value = bytes(record.value or b"")
        self.events.append(f"step {value.decode()}")
        if value == b"boom":
            raise ValueError("a bug")
        if value == b"disk":
            raise LogError("disk full")
        if value == b"skip":
            return None
        return [Emit(OUT, Record(None, value, (), 0), lambda d: self.delivered.append(d.offset))]

    def failed(self, record: ConsumedRecord, error: Exception) -> list[Emit]:
        if not self.answer_failures:
            raise error
        return [Emit(OUT, Record(None, b"failed:" + bytes(record.value or b""), (), 0))]

    def tasks(self) -> Sequence[Task]:
        return [Task(0.0, self._tick, settled=True)]

    def _tick(self) -> None:
        self.ticks += 1

    def finish(self) -> list[Emit]:
        self.events.append("finish")
        return [Emit(OUT, Record(None, b"finished", (), 0))]


def committed(log: Log, partition: int = 0) -> int | None:
    with log.consumer("echo-group") as consumer:
        tp = TopicPartition(IN, partition)
        return consumer.committed([tp])[tp]


def test_a_failing_record_is_answered_and_the_loop_goes_on(log: Log) -> None:
    put(log, b"a", b"boom", b"c")
    echo = Echo()
    runtime = Runtime(log, echo)
    runtime.run(until_idle=True, idle_s=0.3)
    assert out_values(log) == [b"a", b"failed:boom", b"c", b"finished"]
    assert runtime.health.errors == 1
    assert (
        runtime.health.last_error is not None and "ValueError: a bug" in runtime.health.last_error
    )
    assert committed(log) == 3
    assert echo.delivered == [0, 2]  # each emit learns where it landed


def test_a_failure_nobody_answers_is_loud_not_skipped(log: Log) -> None:
    put(log, b"a", b"boom")
    with pytest.raises(ValueError, match="a bug"):
        Runtime(log, Echo(answer_failures=False)).run(until_idle=True, idle_s=0.3)
    assert out_values(log) == []  # nothing of the failed batch was written or committed
    assert committed(log) is None


def test_a_storage_failure_ends_the_run_unguarded(log: Log) -> None:
    put(log, b"a", b"disk")
    runtime = Runtime(log, Echo())
    with pytest.raises(LogError, match="disk full"):
        runtime.run(until_idle=True, idle_s=0.3)
    assert runtime.health.errors == 0
    assert committed(log) is None  # the restart redoes the batch


def test_a_record_that_is_not_the_processors_is_not_committed(log: Log) -> None:
    put(log, b"skip")
    Runtime(log, Echo()).run(until_idle=True, idle_s=0.3)
    assert committed(log) is None
    put(log, b"b")
    Runtime(log, Echo()).run(until_idle=True, idle_s=0.3)
    assert out_values(log) == [b"finished", b"b", b"finished"]
    assert committed(log) == 2


def test_assignment_reaches_the_processor_before_its_records_and_finish_comes_last(
    log: Log,
) -> None:
    put(log, b"x", partition=1)
    echo = Echo()
    Runtime(log, echo).run(until_idle=True, idle_s=0.3)
    assert echo.events[0] == "gained [0, 1]"
    assert echo.events[1:] == ["step x", "finish"]
    assert echo.ticks >= 1
