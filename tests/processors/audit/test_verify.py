"""Every kind of tampering, done directly in a copy of the embedded log's database file,
is detected and located; the untouched log verifies clean."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ordinance.keys import Keyring
from ordinance.processors.audit.chain import record_hash, stored_links
from ordinance.processors.audit.verify import (
    CHECKPOINT_GAP,
    CHECKPOINT_MISMATCH,
    DELETED,
    FORGED_CHECKPOINT,
    INSERTED,
    MODIFIED,
    REORDERED,
    TRUNCATED,
    Finding,
    VerifyReport,
    verify_log,
)
from ordinance.streams import open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.sqlite_store import decode_headers, encode_headers
from ordinance.streams.topics import AGENT_DECISIONS, AUDIT_CHECKPOINTS, topic_specs

from .conftest import DECISIONS, AuditedLog

SPECS = topic_specs()
PARTITION = 1
CONSEQUENCES = {CHECKPOINT_MISMATCH, CHECKPOINT_GAP}  # what a located tampering also breaks


def _verify(url: str, keyring: Path) -> VerifyReport:
    with open_log(url) as log:
        return verify_log(log, Keyring.from_file(keyring))


def _located(report: VerifyReport) -> set[tuple[str, int | None]]:
    return {(f.kind, f.offset) for f in report.findings if f.kind not in CONSEQUENCES}


@contextmanager
def _db(url: str) -> Iterator[tuple[sqlite3.Connection, int]]:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    [(topic_id,)] = conn.execute(
        "SELECT id FROM topics WHERE name=?", (SPECS[AGENT_DECISIONS].name,)
    )
    try:
        yield conn, topic_id
        conn.commit()
    finally:
        conn.close()


def _decision_offsets(conn: sqlite3.Connection, topic_id: int) -> list[int]:
    """Offsets of records in the partition that carry chain links (not takeover markers)."""
    rows = conn.execute(
        "SELECT offset, headers FROM records WHERE topic_id=? AND partition=? ORDER BY offset",
        (topic_id, PARTITION),
    ).fetchall()
    return [o for o, h in rows if stored_links(decode_headers(h))[0] is not None]


def test_untouched_log_verifies_clean(audited_log: AuditedLog) -> None:
    report = _verify(f"sqlite:///{audited_log.db}", audited_log.keyring)
    assert report.findings == []
    assert report.records > DECISIONS  # decisions plus swaps and takeover markers
    assert all(p.checkpoints >= 2 and p.covered == p.records for p in report.partitions)


def test_an_edited_byte_is_a_modified_record(audited_log: AuditedLog, tmp_path: Path) -> None:
    url = audited_log.copy(tmp_path)
    with _db(url) as (conn, topic_id):
        offset = _decision_offsets(conn, topic_id)[700]
        [(value,)] = conn.execute(
            "SELECT value FROM records WHERE topic_id=? AND partition=? AND offset=?",
            (topic_id, PARTITION, offset),
        )
        edited = value[:40] + bytes([value[40] ^ 0x01]) + value[41:]
        conn.execute(
            "UPDATE records SET value=? WHERE topic_id=? AND partition=? AND offset=?",
            (edited, topic_id, PARTITION, offset),
        )
    report = _verify(url, audited_log.keyring)
    assert _located(report) == {(MODIFIED, offset)}
    assert any(f.kind == CHECKPOINT_MISMATCH for f in report.findings)


def test_a_deleted_record_is_a_gap(audited_log: AuditedLog, tmp_path: Path) -> None:
    url = audited_log.copy(tmp_path)
    with _db(url) as (conn, topic_id):
        offsets = _decision_offsets(conn, topic_id)
        victim, after = offsets[300], offsets[301]
        assert after == victim + 1
        conn.execute(
            "DELETE FROM records WHERE topic_id=? AND partition=? AND offset=?",
            (topic_id, PARTITION, victim),
        )
    report = _verify(url, audited_log.keyring)
    assert _located(report) == {(DELETED, after)}
    [finding] = [f for f in report.findings if f.kind == DELETED]
    assert f"offsets {victim}..{victim}" in finding.detail


def test_an_inserted_forged_record_is_found(audited_log: AuditedLog, tmp_path: Path) -> None:
    """The forger links the new record correctly to its predecessor; the record after it
    still names the predecessor, which gives the insertion away."""
    url = audited_log.copy(tmp_path)
    with _db(url) as (conn, topic_id):
        offsets = _decision_offsets(conn, topic_id)
        at = offsets[500]
        [(key, value, headers)] = conn.execute(
            "SELECT key, value, headers FROM records WHERE topic_id=? AND partition=? AND offset=?",
            (topic_id, PARTITION, at - 1),
        )
        prev = stored_links(decode_headers(headers))[1]
        assert prev is not None
        forged_value = value.replace(b"deny", b"allo") if b"deny" in value else value + b"\x00"
        own = record_hash(prev, key, forged_value)
        forged_headers = encode_headers(
            (("ordinance-chain-prev", prev), ("ordinance-chain-hash", own))
        )
        where = "topic_id=? AND partition=? AND offset>=?"
        conn.execute(
            f"UPDATE records SET offset=-offset-1 WHERE {where}", (topic_id, PARTITION, at)
        )
        conn.execute(
            "UPDATE records SET offset=-offset WHERE topic_id=? AND partition=? AND offset<0",
            (topic_id, PARTITION),
        )
        conn.execute(
            "INSERT INTO records(topic_id, partition, offset, key, value, headers, ts, appended) "
            "SELECT topic_id, partition, ?, ?, ?, ?, ts, appended FROM records "
            "WHERE topic_id=? AND partition=? AND offset=?",
            (at, key, forged_value, forged_headers, topic_id, PARTITION, at - 1),
        )
    report = _verify(url, audited_log.keyring)
    assert _located(report) == {(INSERTED, at)}


def test_swapped_records_are_reordered(audited_log: AuditedLog, tmp_path: Path) -> None:
    url = audited_log.copy(tmp_path)
    with _db(url) as (conn, topic_id):
        offsets = _decision_offsets(conn, topic_id)
        first = offsets[900]
        assert offsets[901] == first + 1
        rows = {
            o: conn.execute(
                "SELECT key, value, headers FROM records WHERE topic_id=? AND partition=? AND offset=?",
                (topic_id, PARTITION, o),
            ).fetchone()
            for o in (first, first + 1)
        }
        for o, other in ((first, first + 1), (first + 1, first)):
            conn.execute(
                "UPDATE records SET key=?, value=?, headers=? WHERE topic_id=? AND partition=? AND offset=?",
                (*rows[other], topic_id, PARTITION, o),
            )
    report = _verify(url, audited_log.keyring)
    assert _located(report) == {(REORDERED, first)}


def test_a_truncated_tail_is_reported(audited_log: AuditedLog, tmp_path: Path) -> None:
    url = audited_log.copy(tmp_path)
    with _db(url) as (conn, topic_id):
        [(last,)] = conn.execute(
            "SELECT max(offset) FROM records WHERE topic_id=? AND partition=?",
            (topic_id, PARTITION),
        )
        conn.execute(
            "DELETE FROM records WHERE topic_id=? AND partition=? AND offset>?",
            (topic_id, PARTITION, last - 25),
        )
    report = _verify(url, audited_log.keyring)
    assert _located(report) == {(TRUNCATED, last - 25)}
    [finding] = [f for f in report.findings if f.kind == TRUNCATED]
    assert f"through offset {last}" in finding.detail


def test_a_replaced_checkpoint_signature_is_a_forgery(
    audited_log: AuditedLog, tmp_path: Path
) -> None:
    url = audited_log.copy(tmp_path)
    serde = Serde()
    with _db(url) as (conn, _topic_id):
        [(checkpoints_id,)] = conn.execute(
            "SELECT id FROM topics WHERE name=?", (SPECS[AUDIT_CHECKPOINTS].name,)
        )
        rows = conn.execute(
            "SELECT partition, offset, value FROM records WHERE topic_id=? ORDER BY offset",
            (checkpoints_id,),
        ).fetchall()
        partition, offset, value = rows[len(rows) // 2]
        decoded = serde.decode(value)
        assert isinstance(decoded, Decoded)
        datum = dict(decoded.value, signature=bytes(reversed(decoded.value["signature"])))
        conn.execute(
            "UPDATE records SET value=? WHERE topic_id=? AND partition=? AND offset=?",
            (serde.encode("AuditCheckpoint", datum), checkpoints_id, partition, offset),
        )
    report = _verify(url, audited_log.keyring)
    forged = [f for f in report.findings if f.kind == FORGED_CHECKPOINT]
    assert [(f.checkpoint_offset, f.partition) for f in forged] == [(offset, datum["partition"])]
    assert _located(report) == {(FORGED_CHECKPOINT, None)}


def test_findings_serialise(audited_log: AuditedLog) -> None:
    report = _verify(f"sqlite:///{audited_log.db}", audited_log.keyring)
    as_json = report.to_json()
    assert as_json["ok"] is True and as_json["records"] == report.records
    assert Finding("modified", 0, 1, "x").kind == MODIFIED
