"""The same tamper detection on Kafka: the signed log is copied into topics of a real
local broker — once untouched, once per kind of tampering — and verified there. The
chain covers stored bytes, so a log moved between backends verifies unchanged."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ordinance.keys import Keyring
from ordinance.processors.audit.chain import CHAIN_HASH, CHAIN_PREV, record_hash, stored_links
from ordinance.processors.audit.verify import (
    CHECKPOINT_GAP,
    CHECKPOINT_MISMATCH,
    DELETED,
    FORGED_CHECKPOINT,
    INSERTED,
    MODIFIED,
    REORDERED,
    TRUNCATED,
    verify_log,
)
from ordinance.processors.audit.witness import ROLLBACK, anchor, load, verify_witnessed
from ordinance.processors.audit.witness_store import FileWitness
from ordinance.streams import ConsumedRecord, Record, open_log
from ordinance.streams.kafka_broker import LocalBroker, start_broker
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_DECISIONS, AUDIT_CHECKPOINTS, ensure_topics, topic_specs

from .conftest import AuditedLog

pytestmark = pytest.mark.kafka
PARTITION = 1
Tamper = Callable[[list[ConsumedRecord]], None]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    with start_broker() as running:
        yield running


def _chained(records: list[ConsumedRecord]) -> list[int]:
    return [i for i, r in enumerate(records) if stored_links(r.headers)[0] is not None]


def _modify(records: list[ConsumedRecord]) -> None:
    i = _chained(records)[400]
    value = records[i].value or b""
    records[i] = records[i]._replace(value=value[:30] + bytes([value[30] ^ 1]) + value[31:])


def _delete(records: list[ConsumedRecord]) -> None:
    del records[_chained(records)[300]]


def _insert(records: list[ConsumedRecord]) -> None:
    i = _chained(records)[500]
    before = records[i - 1]
    prev = stored_links(before.headers)[1]
    assert prev is not None
    value = (before.value or b"") + b"\x00"
    own = record_hash(prev, before.key, value)
    records.insert(i, before._replace(value=value, headers=((CHAIN_PREV, prev), (CHAIN_HASH, own))))


def _swap_at(records: list[ConsumedRecord]) -> int:
    """A position whose record and the next are both chained decisions."""
    chained = _chained(records)
    return next(c for c, d in itertools.pairwise(chained) if c >= chained[900] and d == c + 1)


def _swap(records: list[ConsumedRecord]) -> None:
    i = _swap_at(records)
    records[i], records[i + 1] = records[i + 1], records[i]


def _truncate(records: list[ConsumedRecord]) -> None:
    del records[-25:]


# kind -> (tampering of the decisions, position in the copy the finding names)
CASES: dict[str, tuple[Tamper, Callable[[list[ConsumedRecord]], int | None]]] = {
    "clean": (lambda _r: None, lambda _r: None),
    MODIFIED: (_modify, lambda r: _chained(r)[400]),
    DELETED: (_delete, lambda r: _chained(r)[300]),  # the record after the deleted one
    INSERTED: (_insert, lambda r: _chained(r)[500]),
    REORDERED: (_swap, _swap_at),
    TRUNCATED: (_truncate, lambda r: len(r) - 26),
}


def _copy(
    broker: LocalBroker,
    prefix: str,
    decisions: list[ConsumedRecord],
    checkpoints: list[ConsumedRecord],
) -> None:
    with open_log(broker.url) as log:
        specs = ensure_topics(log, prefix)
        log.produce(
            specs[AGENT_DECISIONS].name,
            [Record(r.key, r.value, r.headers, r.timestamp_ms, PARTITION) for r in decisions],
        )
        log.produce(
            specs[AUDIT_CHECKPOINTS].name,
            [Record(r.key, r.value, r.headers, r.timestamp_ms, r.partition) for r in checkpoints],
        )


@pytest.mark.parametrize("kind", [*CASES, FORGED_CHECKPOINT])
def test_tampering_a_kafka_copy_is_located(
    audited_log: AuditedLog, broker: LocalBroker, kind: str
) -> None:
    with open_log(f"sqlite:///{audited_log.db}") as source:
        original = list(source.read_to_end(topic_specs()[AGENT_DECISIONS].name, [PARTITION]))
        checkpoints = list(source.read_to_end(topic_specs()[AUDIT_CHECKPOINTS].name))
    expected_at = CASES[kind][1](original) if kind in CASES else None
    decisions = list(original)
    if kind in CASES:
        CASES[kind][0](decisions)
    serde = Serde()
    ours = [
        c
        for c in checkpoints
        if isinstance(d := serde.decode_record(c), Decoded) and d.value["partition"] == PARTITION
    ]
    if kind == FORGED_CHECKPOINT:
        c = ours[len(ours) // 2]
        decoded = serde.decode_record(c)
        assert isinstance(decoded, Decoded)
        forged = dict(decoded.value, signature=bytes(64))
        ours[len(ours) // 2] = c._replace(value=serde.encode("AuditCheckpoint", forged))
    prefix = f"copy-{kind}."
    _copy(broker, prefix, decisions, ours)
    with open_log(broker.url) as log:
        report = verify_log(
            log, Keyring.from_file(audited_log.keyring), prefix=prefix, partitions=[PARTITION]
        )
    located = {
        (f.kind, f.offset)
        for f in report.findings
        if f.kind not in {CHECKPOINT_MISMATCH, CHECKPOINT_GAP}
    }
    if kind == "clean":
        assert report.findings == [] and report.records == len(original)
    elif kind == FORGED_CHECKPOINT:
        assert located == {(FORGED_CHECKPOINT, None)}
    else:
        assert located == {(kind, expected_at)}


def test_a_rolled_back_kafka_copy_is_found_by_the_witness(
    audited_log: AuditedLog, broker: LocalBroker, tmp_path: Path
) -> None:
    """Witnessed on the embedded log, then served from Kafka as an older valid prefix
    (records and checkpoints through the partition's first checkpoint): plain verify is
    clean, the witness names the rollback. The witness holds signed texts, not backend
    positions, so it follows the log across backends."""
    keyring = Keyring.from_file(audited_log.keyring)
    witness = FileWitness(tmp_path / "witness.jsonl")
    with open_log(f"sqlite:///{audited_log.db}") as source:
        assert anchor(source, keyring, witness).ok
        original = list(source.read_to_end(topic_specs()[AGENT_DECISIONS].name, [PARTITION]))
        checkpoints = list(source.read_to_end(topic_specs()[AUDIT_CHECKPOINTS].name))
    serde = Serde()
    ours = [
        (c, d.value)
        for c in checkpoints
        if isinstance(d := serde.decode_record(c), Decoded) and d.value["partition"] == PARTITION
    ]
    first, datum = ours[0]
    prefix = "copy-rollback."
    _copy(broker, prefix, original[: datum["record_count"]], [first])
    state = load(witness)
    with open_log(broker.url) as log:
        plain = verify_log(log, keyring, prefix=prefix, partitions=[PARTITION])
        witnessed = verify_witnessed(
            log, keyring, witness=state, prefix=prefix, partitions=[PARTITION]
        )
    assert plain.findings == []
    assert [(f.kind, f.partition) for f in witnessed.findings] == [(ROLLBACK, PARTITION)]
