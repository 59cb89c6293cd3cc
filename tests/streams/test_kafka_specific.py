"""Kafka-only behaviour: the local broker, cross-backend placement, markers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streams_helpers import drain, sqlite_url

from ordinance.streams import Position, Record, TopicPartition, TopicSpec, open_log
from ordinance.streams.errors import LogError, ProduceError
from ordinance.streams.kafka_broker import (
    LocalBroker,
    is_ready,
    start_broker,
    stop_pid,
)
from ordinance.streams.kafka_log import MARKER_KEY

pytestmark = pytest.mark.kafka


def test_a_key_means_the_same_partition_on_both_backends(
    kafka_broker: LocalBroker, tmp_path: Path, topic: str
) -> None:
    keys = [f"agent-{i}".encode() for i in range(64)]
    placed = []
    for url in (sqlite_url(tmp_path / "log.db"), kafka_broker.url):
        with open_log(url) as log:
            log.create_topic(TopicSpec(topic, partitions=6))
            placed.append([d.partition for d in log.produce(topic, [Record(k, b"") for k in keys])])
    assert placed[0] == placed[1]


def test_markers_stay_out_of_compact_tables_and_ordinary_reads(
    kafka_broker: LocalBroker, topic: str
) -> None:
    with open_log(kafka_broker.url) as log:
        log.create_topic(TopicSpec(topic, partitions=2, cleanup="compact"))
        log.produce(topic, [Record(b"a", b"1")])
        for _ in range(3):
            assert {k: r.value for k, r in log.latest_by_key(topic).items()} == {b"a": b"1"}
        with log.consumer() as consumer:
            consumer.assign({TopicPartition(topic, p): Position.BEGINNING for p in (0, 1)})
            got = drain(consumer, 1)
            assert consumer.poll(timeout=0.5) == []
        assert [r.key for r in got] == [b"a"] and MARKER_KEY not in log.latest_by_key(topic)


def test_broker_starts_on_a_free_port_and_stops_by_pid(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    pidfile = tmp_path / "broker.pid"
    command = [sys.executable, "-m", "ordinance.streams.kafka_broker"]
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "ordinance.streams.kafka_broker",
            "start",
            "--pidfile",
            str(pidfile),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    pid, port = (int(x) for x in pidfile.read_text().split())
    assert started.stdout.strip() == f"kafka://127.0.0.1:{port}"
    assert is_ready(f"127.0.0.1:{port}")
    subprocess.run(
        [*command, "stop", "--pidfile", str(pidfile)],
        env=env,
        timeout=60,
        check=True,
    )
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert not pidfile.exists()
    assert not is_ready(f"127.0.0.1:{port}")


def test_stop_pid_refuses_to_signal_something_else() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(LogError, match="not a broker"):
            stop_pid(sleeper.pid)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_taken_port_is_reported_not_hung(kafka_broker: LocalBroker) -> None:
    with pytest.raises(LogError, match="already in use"):
        start_broker(kafka_broker.port, ready_timeout_s=5)


def test_an_unreachable_broker_is_a_produce_error_not_a_hang(topic: str) -> None:
    broker = start_broker()
    try:
        log = open_log(f"{broker.url}?timeout_s=2")
        log.create_topic(TopicSpec(topic, partitions=1))
        log.produce(topic, [Record(b"k", b"before")])
    finally:
        broker.stop()
    began = time.monotonic()
    with pytest.raises(ProduceError):
        log.produce(topic, [Record(b"k", b"after")])
    assert time.monotonic() - began < 10
    log.close()


def test_a_broker_does_not_outlive_a_killed_owner() -> None:
    code = (
        "from ordinance.streams.kafka_broker import start_broker\n"
        "b = start_broker()\n"
        "print(b.pid, b.port, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert owner.stdout is not None
    pid, port = (int(x) for x in owner.stdout.readline().split())
    assert is_ready(f"127.0.0.1:{port}")
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text():
        assert time.monotonic() < deadline, "broker survived its owner"
        time.sleep(0.05)
    assert not is_ready(f"127.0.0.1:{port}")
