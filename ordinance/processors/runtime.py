"""One loop for every processor: the runtime owns polling, assignment, the per-record
error guard, outbox settling and commit order, scheduled tasks, shutdown and liveness;
a processor only says what a record means (Kafka Streams' split between the
``StreamThread`` and a ``Processor``).

A processor (`Processor`) opens its input consumer (subscribed to a group, or assigned
partitions it reads without one) and answers each record with the records it causes
(`Emit`). The runtime, per poll:

1. ``before_poll()`` — follow side tables (the enforcer's ``policy.active`` and registry);
2. polls a batch and notes the time (``last_poll``: ``/healthz`` reads it);
3. when the assignment changed, settles the outbox *first* — everything written under
   the old assignment lands before anything the new one causes (the enforcer's takeover
   markers) — then ``rebalanced(gained, lost)``;
4. ``between_batches()`` — control records that must sit between two batches, never
   inside one (the enforcer's ruleset swaps and identity updates), after settling the
   outbox when the processor asks (``settle_first``); records polled from partitions the
   processor has just repositioned (``rewound``) are dropped, to be read again in order;
5. ``prepare(records)`` then ``step(record)`` for each record, under the guard: a step that
   raises is answered by ``failed(record, error)`` (the enforcer denies the action with
   ``internal_error``), reported through ``progress`` and counted in ``errors`` — no
   record kills the loop, and none is skipped silently. A step returns None for a record
   that is not its own (a partition it no longer owns): its offset is then not committed;
6. sends the batch's emits with the offsets of every record it answered, as one
   ``Outbox.send`` (one transaction on the embedded log);
7. settles the outbox when idle, and runs the scheduled tasks that are due
   (`Task`: the enforcer's snapshots, the checkpointer's signatures), after settling the
   outbox when a task must not see what the log may still lose.

The storage failing (`LogError`, `StateCacheError`) is not a record's fault: it ends the
run, and the `Supervisor` restarts the processor from its committed position. On stop
(or, with ``until_idle``, once nothing happened for ``idle_s``), the runtime settles the
outbox and calls ``finish()``, then closes what the processor opened, outbox first.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ordinance.processors.state_cache import StateCacheError
from ordinance.streams import (
    ConsumedRecord,
    Consumer,
    Delivered,
    Log,
    Outbox,
    Record,
    TopicPartition,
)
from ordinance.streams.errors import LogError

#: Failures of the storage under a processor: never a record's fault, never guarded.
STORAGE_FAILURES: tuple[type[BaseException], ...] = (LogError, StateCacheError)


@dataclass(frozen=True, slots=True)
class Emit:
    """One record a step causes; ``on_delivered`` learns where it landed."""

    topic: str
    record: Record
    on_delivered: Callable[[Delivered], None] | None = None


@dataclass(slots=True)
class Task:
    """Work every ``every_s`` seconds of the loop; ``settled``: the outbox is settled
    first (a snapshot must not hold what the log may still lose)."""

    every_s: float
    run: Callable[[], Sequence[Emit] | None]  # what it writes goes through the outbox
    settled: bool = False
    last: float = field(default_factory=time.monotonic)


class Processor(Protocol):
    """What a processor is to the runtime (module docstring). Only ``open`` and ``step``
    have no sensible default; `ProcessorBase` provides the rest."""

    name: str

    def open(self, log: Log, resources: contextlib.ExitStack) -> Consumer:
        """The input consumer, subscribed or assigned; whatever else is opened is
        registered on ``resources`` (closed after the outbox, in reverse order)."""

    def before_poll(self) -> None: ...

    def rebalanced(self, gained: set[TopicPartition], lost: set[TopicPartition]) -> None: ...

    def settle_first(self) -> bool:
        """Whether everything sent must be acknowledged before ``between_batches`` (the
        enforcer, when a write of its own landed after someone else's)."""

    def between_batches(self) -> None: ...

    def rewound(self) -> Collection[TopicPartition]:
        """Input partitions the processor repositioned since it was last asked: what this
        poll brought from them is dropped, to be read again in order."""

    def prepare(self, records: Sequence[ConsumedRecord]) -> None: ...

    def step(self, record: ConsumedRecord) -> list[Emit] | None: ...

    def failed(self, record: ConsumedRecord, error: Exception) -> list[Emit]: ...

    def tasks(self) -> Sequence[Task]: ...

    def busy(self) -> bool:
        """Whether the processor is working (or waiting for work it was promised) although
        no record arrived: ``until_idle`` does not stop then."""

    def finished(self) -> bool:
        """Whether the processor is done with its input (a bounded run)."""

    def finish(self) -> Sequence[Emit]:
        """Last work once the outbox is settled (a final snapshot, final signatures)."""


class ProcessorBase:
    """Defaults for the optional hooks of `Processor`."""

    def before_poll(self) -> None:
        return None

    def rebalanced(self, gained: set[TopicPartition], lost: set[TopicPartition]) -> None:
        return None

    def settle_first(self) -> bool:
        return False

    def between_batches(self) -> None:
        return None

    def rewound(self) -> Collection[TopicPartition]:
        return ()

    def prepare(self, records: Sequence[ConsumedRecord]) -> None:
        return None

    def failed(self, record: ConsumedRecord, error: Exception) -> list[Emit]:
        # A processor without a way to answer a failed record must not skip it: loud.
        raise error

    def tasks(self) -> Sequence[Task]:
        return ()

    def busy(self) -> bool:
        return False

    def finished(self) -> bool:
        return False

    def finish(self) -> Sequence[Emit]:
        return ()


@dataclass
class RuntimeHealth:
    """What the loop last did, for ``/healthz`` and reports."""

    last_poll: float = 0.0  # time.monotonic() of the last poll (0: not yet)
    errors: int = 0  # records answered by ``failed``
    last_error: str | None = None


class Runtime:
    """Runs one processor on one log handle (module docstring)."""

    def __init__(
        self,
        log: Log,
        processor: Processor,
        *,
        max_records: int = 500,
        poll_timeout_s: float = 0.2,
        progress: Callable[[str], None] = lambda _message: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.processor = processor
        self.max_records = max_records
        self.poll_timeout_s = poll_timeout_s
        self.progress = progress
        self.monotonic = monotonic
        self.health = RuntimeHealth()

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        until_idle: bool = False,
        idle_s: float = 1.0,
    ) -> None:
        """Until ``stop`` is set, the processor is ``finished()``, or — with
        ``until_idle`` — nothing arrived and nothing was busy for ``idle_s``."""
        processor = self.processor
        with contextlib.ExitStack() as resources:
            consumer = processor.open(self.log, resources)
            outbox = self.log.outbox(consumer)
            resources.callback(outbox.close)
            tasks = list(processor.tasks())
            # A consumer without a group has no committed position: the processor
            # rebuilds its own (the checkpointer from its checkpoints).
            commits = consumer.group is not None
            assigned: frozenset[TopicPartition] = frozenset()  # none handed over yet
            last_activity = self.monotonic()
            while not (stop is not None and stop.is_set()) and not processor.finished():
                processor.before_poll()
                records = consumer.poll(max_records=self.max_records, timeout=self.poll_timeout_s)
                self.health.last_poll = self.monotonic()
                now_assigned = frozenset(consumer.assignment())
                changed = now_assigned != assigned
                if changed:
                    outbox.settle()  # the old assignment's writes land first
                    processor.rebalanced(set(now_assigned - assigned), set(assigned - now_assigned))
                    assigned = now_assigned
                if processor.settle_first():
                    outbox.settle()
                processor.between_batches()
                rewound = processor.rewound()
                if rewound:  # read again from where the processor put them
                    records = [r for r in records if r.position not in rewound]
                self._process(outbox, records, commits)
                if not records:
                    outbox.settle()  # idle: commit what the last batches answered
                now = self.monotonic()
                for task in tasks:
                    if now - task.last >= task.every_s:
                        if task.settled:
                            outbox.settle()
                        self._send(outbox, task.run() or (), {})
                        task.last = self.monotonic()
                # A rebalance (a takeover folding a long partition) is work, not idleness.
                if records or changed or processor.busy():
                    last_activity = now
                elif until_idle and now - last_activity > idle_s:
                    break
            outbox.settle()
            self._send(outbox, processor.finish(), {})
            outbox.settle()

    def _process(self, outbox: Outbox, records: Sequence[ConsumedRecord], commits: bool) -> None:
        if not records:
            return
        processor = self.processor
        processor.prepare(records)
        emits: list[Emit] = []
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            try:
                caused = processor.step(record)
            except STORAGE_FAILURES:
                raise
            except Exception as error:  # the guard: a record's failure is answered
                caused = self._failed(record, error)
            if caused is None:
                continue  # not this processor's record (any more): not committed
            if commits:
                offsets[record.position] = record.offset + 1
            emits.extend(caused)
        self._send(outbox, emits, offsets)

    @staticmethod
    def _send(outbox: Outbox, emits: Sequence[Emit], offsets: Mapping[TopicPartition, int]) -> None:
        """One outbox batch: the emits, with the input offsets they answer."""
        if not emits and not offsets:
            return
        callbacks = [(n, e.on_delivered) for n, e in enumerate(emits) if e.on_delivered]

        def delivered(where: list[Delivered]) -> None:
            for n, callback in callbacks:
                callback(where[n])

        outbox.send([(e.topic, e.record) for e in emits], offsets, delivered if callbacks else None)

    def _failed(self, record: ConsumedRecord, error: Exception) -> list[Emit]:
        self.health.errors += 1
        self.health.last_error = (
            f"{record.topic}[{record.partition}]@{record.offset}: {type(error).__name__}: {error}"
        )
        self.progress(f"{self.processor.name}: failed on {self.health.last_error}; answered")
        return self.processor.failed(record, error)
