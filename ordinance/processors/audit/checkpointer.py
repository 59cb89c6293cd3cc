"""The checkpointer: follows every ``agent.decisions`` partition, keeps the Merkle tree of
its chain hashes, and every N records or T seconds signs a checkpoint onto
``audit.checkpoints`` (docs/audit.md, "Checkpoints").

It is a fold of the decisions log: on start it rehashes each partition from its first
record (hashing raw bytes, no decoding, so this is fast) and signs only past the latest
checkpoint already on the topic, so a restart writes no duplicates. Run one instance per
log, like a Certificate Transparency log's signer.

It signs only what it has checked: a record whose stored chain links do not match what
came before stops checkpointing of its partition and raises a critical Alert on
``monitor.alerts`` — a signer must never bless a tampered or forked log. A fenced write
(an enforcer writing on after losing the partition, `audit.fence`) is not a fork: it is
signed as a leaf like every record, and the chain goes on past it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ordinance.keys import Signer
from ordinance.processors.audit.chain import GENESIS, record_hash, stored_links
from ordinance.processors.audit.checkpoint import checkpoint_hash, signed
from ordinance.processors.audit.fence import Ownership
from ordinance.processors.audit.merkle import Frontier
from ordinance.processors.audit.verify import latest, read_checkpoints
from ordinance.processors.runtime import Emit, ProcessorBase, Runtime, Task
from ordinance.streams import ConsumedRecord, Consumer, Log, Position, Record, TopicPartition
from ordinance.streams.serde import Serde
from ordinance.streams.topics import (
    AGENT_DECISIONS,
    AUDIT_CHECKPOINTS,
    DEFAULT_PREFIX,
    MONITOR_ALERTS,
    ensure_topics,
)

Clock = Callable[[], float]


@dataclass
class _Tail:
    """What the checkpointer knows of one partition."""

    partition: int
    ownership: Ownership
    frontier: Frontier = field(default_factory=Frontier)
    head: bytes = GENESIS  # position chain hash of the last record (what is signed)
    # The chain the partition's owners continue: it skips fenced writes (`audit.fence`),
    # which stay leaves of the Merkle tree like every record.
    claimed: bytes = GENESIS
    fenced: int = 0
    first_offset: int | None = None
    last_offset: int = -1
    signed_count: int = 0  # records covered by the latest checkpoint on the topic
    signed_root: bytes | None = None
    last_checkpoint: bytes | None = None  # hash of the latest checkpoint's text
    signed_at: float = field(default_factory=time.monotonic)
    broken: str | None = None


@dataclass
class CheckpointerReport:
    records: int = 0
    checkpoints: int = 0
    alerts: list[str] = field(default_factory=list)


class Checkpointer(ProcessorBase):
    name = "checkpointer"

    def __init__(
        self,
        log: Log,
        signer: Signer,
        *,
        prefix: str = DEFAULT_PREFIX,
        every_records: int = 1000,
        every_seconds: float = 10.0,
        clock: Clock = time.time,
        progress: Callable[[str], None] = lambda _message: None,
    ) -> None:
        if every_records < 1 or every_seconds <= 0:
            raise ValueError("checkpoint every >= 1 record and > 0 seconds")
        self.log = log
        self.signer = signer
        self.every_records = every_records
        self.every_seconds = every_seconds
        self.clock = clock
        self.progress = progress
        self.serde = Serde()
        specs = ensure_topics(log, prefix)
        self.decisions = specs[AGENT_DECISIONS].name
        self.checkpoints = specs[AUDIT_CHECKPOINTS].name
        self.alerts = specs[MONITOR_ALERTS].name
        self.prefix = prefix
        self.report = CheckpointerReport()
        self.tails = {p: _Tail(p, Ownership(self.serde)) for p in log.partitions(self.decisions)}
        for partition, existing in read_checkpoints(log, prefix).items():
            if partition in self.tails and existing:
                newest = latest(existing)
                tail = self.tails[partition]
                tail.signed_count = newest["record_count"]
                tail.signed_root = newest["merkle_root"]
                tail.last_checkpoint = checkpoint_hash(newest)

    def run(
        self, *, stop: threading.Event | None = None, until_idle: bool = False, idle_s: float = 1.0
    ) -> CheckpointerReport:
        """Follow the log until ``stop`` (or, with ``until_idle``, until nothing new arrived
        for ``idle_s``), then sign whatever is not yet covered."""
        Runtime(self.log, self, max_records=2000, progress=self.progress).run(
            stop=stop, until_idle=until_idle, idle_s=idle_s
        )
        return self.report

    # -- steps (run by `runtime.Runtime`) --------------------------------------------------
    def open(self, log: Log, resources: contextlib.ExitStack) -> Consumer:
        # No group: the position is rebuilt from the checkpoints themselves.
        reader = resources.enter_context(log.consumer(None, relaxed=True))
        reader.assign({TopicPartition(self.decisions, p): Position.BEGINNING for p in self.tails})
        return reader

    def step(self, record: ConsumedRecord) -> list[Emit]:
        return self._follow(record)

    def tasks(self) -> list[Task]:
        return [Task(0.0, self._sign_due)]

    def _sign_due(self) -> list[Emit]:
        now = time.monotonic()
        return [
            emit
            for tail in self.tails.values()
            if now - tail.signed_at >= self.every_seconds
            for emit in self._sign(tail)
        ]

    def finish(self) -> list[Emit]:
        return [emit for tail in self.tails.values() for emit in self._sign(tail)]

    def _follow(self, record: ConsumedRecord) -> list[Emit]:
        tail = self.tails[record.partition]
        emits: list[Emit] = []
        self.report.records += 1
        prev, own = stored_links(record.headers)
        fenced = False
        if prev is None:
            tail.ownership.unlinked(record.value)
        elif prev != tail.claimed:
            fenced = tail.ownership.fenced_writer(record.value) is not None
            if fenced:
                tail.fenced += 1
            elif tail.broken is None:
                emits += self._break(
                    tail, record, "its stored previous hash is not the partition's head"
                )
        link = tail.claimed if prev is None else prev
        before, tail.head = tail.head, record_hash(tail.head, record.key, record.value)
        # Untampered and unfenced, the chain and the position chain agree: hash once.
        mine = tail.head if link == before else record_hash(link, record.key, record.value)
        if tail.broken is None and own is not None and own != mine:
            emits += self._break(tail, record, "its bytes do not hash to the hash stored with it")
        if not fenced:
            tail.claimed = mine
        tail.frontier.append(tail.head)
        if tail.first_offset is None:
            tail.first_offset = record.offset
        tail.last_offset = record.offset
        if tail.frontier.size == tail.signed_count and tail.frontier.root() != tail.signed_root:
            emits += self._break(
                tail, record, "the log no longer matches the latest signed checkpoint"
            )
        if tail.frontier.size - tail.signed_count >= self.every_records:
            emits += self._sign(tail)
        return emits

    def _sign(self, tail: _Tail) -> list[Emit]:
        """The next checkpoint of ``tail``, counted as signed now: a write that fails ends
        the run, and the restart reads back the checkpoints that did land."""
        tail.signed_at = time.monotonic()
        if tail.broken is not None or tail.frontier.size <= tail.signed_count:
            return []
        assert tail.first_offset is not None
        unsigned: dict[str, Any] = {
            "partition": tail.partition,
            "first_offset": tail.first_offset,
            "last_offset": tail.last_offset,
            "record_count": tail.frontier.size,
            "merkle_root": tail.frontier.root(),
            "chain_head": tail.head,
            "prev_checkpoint_hash": tail.last_checkpoint,
            "at": dt.datetime.fromtimestamp(self.clock(), dt.UTC),
        }
        datum = signed(unsigned, self.signer)
        key = str(tail.partition).encode()
        value = self.serde.encode("AuditCheckpoint", datum)
        tail.signed_count = tail.frontier.size
        tail.signed_root = datum["merkle_root"]
        tail.last_checkpoint = checkpoint_hash(datum)
        self.report.checkpoints += 1
        return [Emit(self.checkpoints, Record(key, value, (), int(self.clock() * 1000)))]

    def _break(self, tail: _Tail, record: ConsumedRecord, why: str) -> list[Emit]:
        tail.broken = f"decisions partition {tail.partition}, offset {record.offset}: {why}"
        message = f"chain broken at {tail.broken}; checkpointing of the partition stopped"
        self.report.alerts.append(message)
        self.progress(message)
        datum = {
            "alert_id": f"audit-chain-broken:{tail.partition}:{record.offset}",
            "kind": "audit_chain_broken",
            "severity": "critical",
            "policy_id": None,
            "bundle_id": None,
            "message": message,
            "at": dt.datetime.fromtimestamp(self.clock(), dt.UTC),
            "details": {"partition": tail.partition, "offset": record.offset},
        }
        value = self.serde.encode("Alert", datum)
        return [Emit(self.alerts, Record(b"audit", value, (), int(self.clock() * 1000)))]
