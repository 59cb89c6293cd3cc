"""Log throughput and latency, embedded and Kafka, in one run.

    python bench/log_bench.py                 # starts a local broker itself
    python bench/log_bench.py --kafka kafka://host:9092 --records 200000

For each backend: batched produce throughput, consume throughput (reading the
records just produced), and produce->consume latency at a fixed rate (a paced
producer here, a consumer stamping arrival in another process, as an enforcer).
The first ``--warmup`` records of the latency run are not measured.
Targets (issue 3): embedded >= 50k rec/s produce in batches and >= 100k rec/s
consume; Kafka on the local broker p99 produce->consume < 10 ms at 1k msg/s.
This is a benchmark, not a test: it reports, it does not assert.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

from ordinance.streams import Log, Position, Record, TopicPartition, TopicSpec, open_log

PARTITIONS = 4


@dataclass
class Result:
    backend: str
    produce_per_s: float
    consume_per_s: float
    p50_ms: float
    p99_ms: float
    rate: float


def produce_throughput(log: Log, topic: str, records: int, batch: int, size: int) -> float:
    payload = b"x" * size
    batches = [
        [Record(f"agent-{i % 1000}".encode(), payload) for i in range(start, start + batch)]
        for start in range(0, records, batch)
    ]
    began = time.perf_counter()
    for chunk in batches:
        log.produce(topic, chunk)
    return records / (time.perf_counter() - began)


def consume_throughput(log: Log, topic: str, records: int) -> float:
    with log.consumer() as consumer:
        consumer.assign({TopicPartition(topic, p): Position.BEGINNING for p in range(PARTITIONS)})
        got = 0
        began = time.perf_counter()
        while got < records:
            got += len(consumer.poll(max_records=5000, timeout=1.0))
        return records / (time.perf_counter() - began)


def _consume_latency(
    log_url: str, topic: str, total: int, ready: EventType, out: Connection
) -> None:
    """The consumer side, in its own process as an enforcer would be."""
    samples: list[float] = []
    with open_log(log_url) as log, log.consumer() as consumer:
        consumer.assign({TopicPartition(topic, p): Position.END for p in range(PARTITIONS)})
        consumer.poll(timeout=0.2)
        ready.set()
        deadline = time.monotonic() + 120
        while len(samples) < total and time.monotonic() < deadline:
            for record in consumer.poll(max_records=100, timeout=0.1):
                arrived = time.monotonic_ns()
                (sent,) = struct.unpack("<q", record.value or b"\0" * 8)
                samples.append((arrived - sent) / 1e6)
    out.send(samples)


def latency(
    log_url: str, topic: str, rate: float, seconds: float, warmup: int
) -> tuple[list[float], float]:
    """Milliseconds from the start of `produce` in this process to the record in
    the consumer's hands in another (CLOCK_MONOTONIC is system-wide)."""
    total = int(rate * seconds)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    receiver, sender = ctx.Pipe(duplex=False)
    reader = ctx.Process(
        target=_consume_latency, args=(log_url, topic, warmup + total, ready, sender)
    )
    reader.start()
    if not ready.wait(60):
        reader.kill()
        raise RuntimeError("latency consumer did not start")
    with open_log(log_url) as log:
        began = time.perf_counter()
        for i in range(warmup + total):
            if i == warmup:
                began = time.perf_counter()
            # Paced against absolute times, so one slow send does not lower the rate.
            pause = began + (i - warmup if i >= warmup else i) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            stamp = struct.pack("<q", time.monotonic_ns())
            log.produce(topic, [Record(f"agent-{i % 100}".encode(), stamp)])
        achieved = total / (time.perf_counter() - began)
    samples: list[float] = receiver.recv()
    reader.join()
    # The first records pay for connection set-up and the first fetch: not latency.
    return samples[warmup:], achieved


def run(name: str, url: str, args: argparse.Namespace) -> Result:
    bulk, timed = f"bench.{uuid.uuid4().hex[:8]}", f"bench.lat.{uuid.uuid4().hex[:8]}"
    with open_log(url) as log:
        log.create_topic(TopicSpec(bulk, PARTITIONS))
        log.create_topic(TopicSpec(timed, PARTITIONS))
        produced = produce_throughput(log, bulk, args.records, args.batch, args.size)
        consumed = consume_throughput(log, bulk, args.records)
    samples, achieved = latency(url, timed, args.rate, args.seconds, args.warmup)
    cuts = statistics.quantiles(samples, n=100)
    return Result(name, produced, consumed, cuts[49], cuts[98], achieved)


@contextmanager
def kafka_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker:
        yield broker.url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--size", type=int, default=200, help="value bytes")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency run, msgs/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="latency run length")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured first records")
    parser.add_argument("--kafka", help="kafka:// URL (default: start a local broker)")
    parser.add_argument("--skip-kafka", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in () if args.skip_sqlite else ("full", "normal"):
            url = f"sqlite:///{Path(tmp) / mode}.db?synchronous={mode}"
            results.append(run(f"sqlite (synchronous={mode})", url, args))
    if not args.skip_kafka:
        with kafka_url(args.kafka) as url:
            results.append(run(f"kafka ({url})", url, args))

    print(
        f"\n{args.records} records of {args.size} B, batches of {args.batch};"
        f" latency at {args.rate:.0f} msg/s for {args.seconds:.0f} s\n"
    )
    header = f"{'backend':<40} {'produce rec/s':>14} {'consume rec/s':>14}"
    header += f" {'p50 ms':>8} {'p99 ms':>8} {'rate/s':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:<40} {r.produce_per_s:>14,.0f} {r.consume_per_s:>14,.0f}"
            f" {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.rate:>8.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
