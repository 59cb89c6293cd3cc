"""Failures of the log surface as the documented errors, promptly, and the first error is
the one reported: no raw sqlite3 error, no wait on a batch that was never sent, no close
error hiding the failure that caused it."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from streams_helpers import drain

from ordinance.closing import Closing
from ordinance.streams import Record, TopicPartition, TopicSpec, open_existing_log, open_log
from ordinance.streams.errors import LogError, ProduceError
from ordinance.streams.kafka_broker import LocalBroker
from ordinance.streams.sqlite_log import SqliteLog

BOUND_S = 10.0  # generous: the unbounded waits were 30 s


@pytest.mark.kafka
def test_a_record_refused_before_sending_fails_its_batch_at_once(
    kafka_broker: LocalBroker,
) -> None:
    """The race behind test_a_failed_delivery_raises_and_commits_nothing[kafka] failing
    under load: librdkafka refuses a record for a partition that does not exist either in
    `produce()` (when the producer already has the topic's metadata) or later in a
    delivery report (when it does not yet). The first path left the outbox's batch
    waiting for reports that never come, and the consumer's close (whose revoke hook
    settles the outbox) gave up only after timeout_s with a ProduceError. Warming the
    metadata makes that path certain here."""
    source, sink = f"test.{uuid.uuid4().hex[:12]}", f"test.{uuid.uuid4().hex[:12]}.out"
    with open_log(kafka_broker.url) as log:
        log.create_topic(TopicSpec(source, partitions=1))
        log.create_topic(TopicSpec(sink, partitions=1))
        log.produce(source, [Record(b"a", b"0")])
        log.produce(sink, [Record(b"a", b"warm", partition=0)])  # metadata now cached
        tp = TopicPartition(source, 0)
        consumer = log.consumer("processor")
        try:
            consumer.subscribe([source])
            drain(consumer, 1)
            outbox = log.outbox(consumer)
            with pytest.raises(ProduceError, match="nknown partition"):
                outbox.send([(sink, Record(b"a", b"lost", partition=7))], {tp: 1})
                outbox.settle()
            assert consumer.committed([tp]) == {tp: None}
        finally:
            started = time.monotonic()
            consumer.close()  # raised ProduceError after 31 s before the fix
            assert time.monotonic() - started < BOUND_S


def test_opening_a_missing_embedded_log_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(LogError, match="no embedded log at"):
        open_existing_log(f"sqlite:///{path}")
    with pytest.raises(LogError, match="no embedded log at"):
        SqliteLog(path, create=False)
    assert not path.exists()
    with open_log(f"sqlite:///{path}") as log:  # the writers' entry point creates
        log.create_topic(TopicSpec("t", partitions=1))
    with open_existing_log(f"sqlite:///{path}") as log:
        assert log.partitions("t") == [0]


def test_an_existing_file_that_is_not_a_log_is_refused_not_initialised(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes(x)")
    conn.close()
    with pytest.raises(LogError, match="not an Ordinance log"):
        open_existing_log(f"sqlite:///{path}")


def test_a_bad_url_query_is_a_log_error() -> None:
    with pytest.raises(LogError):
        open_log("sqlite:///x.db?novalue")


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_close_does_not_wait_for_a_write_stuck_on_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    log = SqliteLog(path, busy_timeout_s=30)
    log.create_topic(TopicSpec("t", partitions=1))
    holder = _hold_write_lock(path)
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            log.produce("t", [Record(b"k", b"late")])
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(0.3)  # the write is now waiting for the lock
    started = time.monotonic()
    log.close(timeout=0.5)
    assert time.monotonic() - started < BOUND_S
    holder.rollback()
    holder.close()
    writer.join(BOUND_S)
    # The write got the lock after close: it writes nothing and says so.
    assert len(outcome) == 1 and isinstance(outcome[0], ProduceError)
    assert "closed" in str(outcome[0])
    with open_existing_log(f"sqlite:///{path}") as reopened:
        assert list(reopened.read_to_end("t")) == []
    with pytest.raises(ProduceError, match="closed"):
        log.produce("t", [Record(b"k", b"after")])


def test_sqlite_errors_leave_a_consumer_as_log_errors(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with open_log(f"sqlite:///{path}?busy_timeout_s=0.2") as log:
        log.create_topic(TopicSpec("t", partitions=1))
        consumer = log.consumer("g")
        consumer.subscribe(["t"])
        holder = _hold_write_lock(path)
        try:
            # Leaving the group is a write: the lock is held too long.
            with pytest.raises(LogError, match="locked") as raised:
                consumer.close()
            assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        finally:
            holder.rollback()
            holder.close()


class _FailsToClose(Closing):
    def close(self) -> None:
        raise LogError("closing failed too")


def test_a_close_that_fails_while_unwinding_does_not_hide_the_cause() -> None:
    with pytest.raises(ProduceError, match="the real failure") as raised, _FailsToClose():
        raise ProduceError("the real failure")
    assert any("closing failed too" in note for note in raised.value.__notes__)
    # Alone, the close failure is the one reported.
    with pytest.raises(LogError, match="closing failed too"), _FailsToClose():
        pass
