"""The floor under Ordinance's Kafka round trip: the same two hops with no Ordinance in them.

A driver publishes timestamped records to ``echo.in`` at a fixed rate; an echo process
copies each record to ``echo.out`` (same partition) and nothing else; the driver reads
``echo.out`` and times each record's trip. Producer and consumer settings are Ordinance's
own (`PRODUCER_DEFAULTS`, `CONSUMER_DEFAULTS`), so whatever this costs, Ordinance's round
trip on the same broker cannot beat it.

    python bench/kafka_echo.py [--rate 1000] [--seconds 5]   # starts its own local broker
    python bench/kafka_echo.py --growth 8   # the broker's CPU as its partitions fill

`pipeline_bench.py` runs it beside the Ordinance round trip, on a fresh broker each.
``--growth`` shows why the floor rises with the length of a run: one producer and one
consumer at a steady rate, and the broker's CPU use in consecutive 3 s phases.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTP

from ordinance.streams import open_log
from ordinance.streams.kafka_broker import LocalBroker, start_broker
from ordinance.streams.kafka_log import CONSUMER_DEFAULTS, PRODUCER_DEFAULTS
from ordinance.streams.log import TopicSpec

IN, OUT = "echo.in", "echo.out"
PARTITIONS = 4
PAYLOAD = b"x" * 300  # about the size of an encoded action
STAMP = struct.Struct("d")


def _consumer(bootstrap: str, group: str, topic: str) -> Consumer:
    config: dict[str, Any] = {
        **CONSUMER_DEFAULTS,
        "bootstrap.servers": bootstrap,
        "group.id": group,
    }
    consumer = Consumer(config)
    consumer.assign([KafkaTP(topic, p, 0) for p in range(PARTITIONS)])
    return consumer


def _take(consumer: Consumer) -> list[Any]:
    # As Ordinance's consumer does: poll() returns on the first record, consume(n, 0)
    # takes what else is already there (consume(n, t) would wait for n records).
    first = consumer.poll(0.05)
    if first is None:
        return []
    return [m for m in [first, *consumer.consume(499, 0)] if m.error() is None]


def echo(bootstrap: str) -> None:
    consumer = _consumer(bootstrap, "echo", IN)
    producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap})
    while True:
        for message in _take(consumer):
            producer.produce(OUT, value=message.value(), partition=message.partition())
        producer.poll(0)


def cpu_seconds(pid: int) -> float:
    # utime and stime, in clock ticks; the name in parentheses may contain spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_trip(broker: LocalBroker, rate: float, seconds: float) -> dict[str, float]:
    """p50/p99 ms of the bare echo at ``rate`` for ``seconds``, and the broker's CPU use."""
    with open_log(broker.url) as log:
        for topic in (IN, OUT):
            log.create_topic(TopicSpec(topic, PARTITIONS))
    process = subprocess.Popen([sys.executable, __file__, "--echo", broker.bootstrap])
    producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": broker.bootstrap})
    consumer = _consumer(broker.bootstrap, "driver", OUT)
    latencies: list[float] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for message in _take(consumer):
                (sent,) = STAMP.unpack_from(message.value())
                latencies.append((time.time() - sent) * 1000)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:

        def send(i: int) -> None:
            producer.produce(IN, value=STAMP.pack(time.time()) + PAYLOAD, partition=i % PARTITIONS)
            producer.poll(0)

        # Warm-up until records come back: the echo process's connections and fetches.
        deadline = time.monotonic() + 60
        while not latencies and time.monotonic() < deadline:
            send(0)
            time.sleep(0.05)
        time.sleep(0.5)
        latencies.clear()
        cpu_before = cpu_seconds(broker.pid)
        started = time.perf_counter()
        count = int(rate * seconds)
        for i in range(count):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            send(i)
        elapsed = time.perf_counter() - started
        broker_cpu = (cpu_seconds(broker.pid) - cpu_before) / elapsed
        producer.flush(10)
        deadline = time.monotonic() + 10
        while len(latencies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join()
        consumer.close()
        process.kill()
        process.wait()
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "answered": float(len(ordered)),
        "sent": float(count),
        "broker_cpu": broker_cpu,
    }


def growth(
    broker: LocalBroker, rate: float, phases: int, phase_s: float = 3.0
) -> list[dict[str, float]]:
    """Broker CPU-s/s per phase of ``phase_s`` at a steady ``rate`` with a tailing consumer."""
    with open_log(broker.url) as log:
        log.create_topic(TopicSpec(IN, PARTITIONS))
    producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": broker.bootstrap})
    consumer = _consumer(broker.bootstrap, "tail", IN)
    stop = threading.Event()

    def tail() -> None:
        while not stop.is_set():
            _take(consumer)

    reader = threading.Thread(target=tail)
    reader.start()
    rows, sent = [], 0
    try:
        for _ in range(phases):
            cpu_before, started = cpu_seconds(broker.pid), time.perf_counter()
            for i in range(int(rate * phase_s)):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                producer.produce(IN, value=PAYLOAD, partition=sent % PARTITIONS)
                producer.poll(0)
                sent += 1
            elapsed = time.perf_counter() - started
            rows.append(
                {
                    "retained": float(sent),
                    "broker_cpu": (cpu_seconds(broker.pid) - cpu_before) / elapsed,
                }
            )
    finally:
        stop.set()
        reader.join()
        consumer.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--growth", type=int, metavar="PHASES", help="measure the broker's growth")
    parser.add_argument("--echo", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo:
        echo(args.echo)
        return 0
    if args.growth:
        with start_broker() as broker:
            rows = growth(broker, args.rate, args.growth)
        print(f"one producer and one tailing consumer at {args.rate:g} records/s\n")
        print("| records in the topic | broker CPU-s/s |\n|---:|---:|")
        for row in rows:
            print(f"| {row['retained']:,.0f} | {row['broker_cpu']:.2f} |")
        return 0
    with start_broker() as broker:
        result = round_trip(broker, args.rate, args.seconds)
    print(
        f"bare echo at {args.rate:g}/s for {args.seconds:g}s: p50 {result['p50_ms']:.2f} ms,"
        f" p99 {result['p99_ms']:.2f} ms, {result['answered']:.0f}/{result['sent']:.0f} back,"
        f" broker {result['broker_cpu']:.2f} CPU-s/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
