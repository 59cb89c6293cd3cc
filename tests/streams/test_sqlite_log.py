"""What only the embedded log promises: several processes on one file, crash
safety, atomic produce+commit, fencing, retention and compaction."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streams_helpers import drain, poll_until, sqlite_url

import ordinance
from ordinance.streams import Position, Record, TopicPartition, TopicSpec, open_log
from ordinance.streams.errors import (
    FencedError,
    LogError,
    ProduceError,
    UnsupportedLogUrlError,
)
from ordinance.streams.sqlite_log import SqliteLog

CHILD = Path(__file__).with_name("log_child.py")
REPO = Path(ordinance.__file__).resolve().parent.parent


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, text=True, env=env
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


@pytest.fixture
def log(db: Path) -> Iterator[SqliteLog]:
    with SqliteLog(db, heartbeat_interval_ms=50, session_timeout_ms=1500) as opened:
        yield opened


def test_processes_publish_while_another_consumes(db: Path, log: SqliteLog) -> None:
    log.create_topic(TopicSpec("actions", partitions=4))
    url = sqlite_url(db)
    children = [spawn("produce", url, "actions", f"agent-{i}", "300", "7") for i in range(3)]
    try:
        with log.consumer("enforcer") as consumer:
            consumer.subscribe(["actions"])
            got = drain(consumer, 900, timeout=60)
            assert consumer.poll(timeout=0.2) == []
    finally:
        for child in children:
            assert child.wait(timeout=60) == 0
    by_agent: dict[str, list[int]] = {}
    for record in got:
        name, seq = (record.value or b"").decode().split(":")
        by_agent.setdefault(name, []).append(int(seq))
    assert by_agent == {f"agent-{i}": list(range(300)) for i in range(3)}


def test_sigkilled_producer_never_loses_an_acknowledged_record(db: Path) -> None:
    url = sqlite_url(db)
    with open_log(url) as log:
        log.create_topic(TopicSpec("crash", partitions=2))
    rng = random.Random(1234)
    for round_ in range(20):
        child = spawn("produce", url, "crash", f"round-{round_}", "0", "10")
        assert child.stdout is not None
        acked = [int(child.stdout.readline())]  # it is producing: now kill it at random
        time.sleep(rng.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        child.wait()
        acked += [int(line) for line in child.stdout.read().split()]
        with open_log(url) as log:
            values = {r.value for r in log.read_to_end("crash")}
        for seq in range(acked[-1] + 1):
            assert f"round-{round_}:{seq}".encode() in values, (round_, seq)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_crashed_member_loses_its_partitions_after_the_session_timeout(
    db: Path, log: SqliteLog
) -> None:
    log.create_topic(TopicSpec("work", partitions=4))
    with log.consumer("workers") as survivor:
        survivor.subscribe(["work"])
        poll_until([survivor], lambda: len(survivor.assignment()) == 4)
        child = spawn("member", sqlite_url(db), "work", "workers")
        assert child.stdout is not None
        try:
            line = ""
            while len(line.split(",")) != 2:
                line = child.stdout.readline().strip()
                survivor.poll(timeout=0.01)
            poll_until([survivor], lambda: len(survivor.assignment()) == 2)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        killed_at = time.monotonic()
        poll_until([survivor], lambda: len(survivor.assignment()) == 4, timeout=10)
        # Not before the lease ran out: a silent member is not declared dead early.
        assert time.monotonic() - killed_at > 1.0


def test_a_member_that_lost_its_partition_cannot_commit(log: SqliteLog) -> None:
    log.create_topic(TopicSpec("in", partitions=1))
    log.create_topic(TopicSpec("out", partitions=1))
    log.produce("in", [Record(b"k", b"v")])
    tp = TopicPartition("in", 0)
    stale = log.consumer("proc")
    stale.subscribe(["in"])
    (record,) = drain(stale, 1)
    time.sleep(1.6)  # stale stops heartbeating past the session timeout
    with log.consumer("proc") as fresh:
        fresh.subscribe(["in"])
        seen = poll_until([fresh], lambda: fresh.assignment() == {tp})
        with pytest.raises(FencedError):
            log.produce_and_commit([("out", Record(b"k", b"decision"))], stale, {tp: 1})
        with pytest.raises(FencedError):
            stale.commit({tp: 1})
        # The fenced transaction left nothing behind: no output, no offset.
        assert list(log.read_to_end("out")) == []
        assert fresh.committed([tp]) == {tp: None}
        # ...so the new owner gets the record again and decides it.
        assert [r.value for r in seen + drain(fresh, 1 - len(seen))] == [record.value]
    stale.close()


def test_produce_and_commit_is_all_or_nothing(log: SqliteLog) -> None:
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
    with SqliteLog(log.path) as other, other.consumer("proc") as foreign:
        foreign.subscribe(["in"])
        with pytest.raises(LogError):
            log.produce_and_commit([], foreign, {tp: 1})


def test_time_retention_drops_old_records_and_moves_the_start(log: SqliteLog) -> None:
    log.create_topic(TopicSpec("t", partitions=1, retention_ms=100))
    log.produce("t", [Record(b"k", b"old-%d" % i) for i in range(10)])
    time.sleep(0.2)
    log.produce("t", [Record(b"k", b"new-%d" % i) for i in range(5)])
    assert log.enforce_retention() == 10
    assert log.start_offsets("t") == {0: 10}
    assert log.end_offsets("t") == {0: 15}
    tp = TopicPartition("t", 0)
    with log.consumer("g") as consumer:
        consumer.assign({tp: Position.BEGINNING})
        assert [r.offset for r in drain(consumer, 5)] == [10, 11, 12, 13, 14]
        consumer.seek(tp, Position.COMMITTED)  # nothing committed: reset to earliest
        assert consumer.position(tp) == 10


def test_size_retention_keeps_the_newest_bytes(log: SqliteLog) -> None:
    log.create_topic(TopicSpec("s", partitions=2, retention_bytes=100))
    for i in range(20):
        log.produce("s", [Record(None, b"%09d" % i + b"x", partition=0)])
    log.produce("s", [Record(None, b"tiny", partition=1)])
    assert log.enforce_retention() == 10
    assert [r.offset for r in log.read_to_end("s", [0])] == list(range(10, 20))
    assert len(list(log.read_to_end("s", [1]))) == 1


def test_retention_also_runs_on_its_own_while_producing(db: Path) -> None:
    with SqliteLog(db, retention_interval_s=0) as log:
        log.create_topic(TopicSpec("t", partitions=1, retention_ms=50))
        log.produce("t", [Record(b"k", b"old")])
        time.sleep(0.1)
        log.produce("t", [Record(b"k", b"new")])
        assert [r.value for r in log.read_to_end("t")] == [b"new"]


def test_compaction_keeps_only_the_last_value_per_key(log: SqliteLog) -> None:
    log.create_topic(TopicSpec("c", partitions=1, cleanup="compact"))
    log.produce("c", [Record(b"a", b"1"), Record(b"b", b"1"), Record(b"a", b"2")])
    log.produce("c", [Record(b"a", b"3"), Record(b"b", None)])
    before = {k: r.value for k, r in log.latest_by_key("c").items()}
    assert log.enforce_retention() == 3
    assert [(r.key, r.value) for r in log.read_to_end("c")] == [(b"a", b"3"), (b"b", None)]
    assert {k: r.value for k, r in log.latest_by_key("c").items()} == before == {b"a": b"3"}
    with pytest.raises(ProduceError):
        log.produce("c", [Record(None, b"no key")])


def test_the_log_survives_reopening(db: Path) -> None:
    with SqliteLog(db) as log:
        log.create_topic(TopicSpec("t", partitions=2))
        log.produce("t", [Record(b"k", b"v")])
        with log.consumer("g") as consumer:
            consumer.commit({TopicPartition("t", 1): 7})
    with SqliteLog(db) as log:
        assert [r.value for r in log.read_to_end("t")] == [b"v"]
        with log.consumer("g") as consumer:
            assert consumer.committed([TopicPartition("t", 1)]) == {TopicPartition("t", 1): 7}
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(LogError, match="layout version 99"):
        SqliteLog(db)


def test_oversize_records_are_refused(db: Path) -> None:
    with SqliteLog(db, max_record_bytes=64) as log:
        log.create_topic(TopicSpec("t", partitions=1))
        with pytest.raises(ProduceError, match="cap"):
            log.produce("t", [Record(b"k", b"x" * 100)])
        assert log.end_offsets("t") == {0: 0}


def test_urls_choose_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_log("sqlite:///relative.db?synchronous=normal&busy_timeout_s=2") as log:
        assert isinstance(log, SqliteLog)
        assert log.path.resolve() == tmp_path / "relative.db"
    with open_log(f"sqlite:///{tmp_path}/absolute.db") as log:
        assert isinstance(log, SqliteLog) and log.path == tmp_path / "absolute.db"
    for bad in (
        "postgres://x",
        "relative.db",
        "sqlite://",
        "sqlite:///x.db?colour=blue",
        "sqlite:///x.db?busy_timeout_s=soon",
        "kafka://",
        "kafka://localhost",
    ):
        with pytest.raises(UnsupportedLogUrlError):
            open_log(bad)
    with pytest.raises(LogError):
        open_log("sqlite:///x.db?synchronous=sometimes")
