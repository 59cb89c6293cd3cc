"""Witnessed checkpoints and the unsigned-tail limit (issue 17, Build item 4).

The four tamperings the log's own checkpoints cannot see — a forged tail after the last
checkpoint, a deleted last checkpoint, a rollback to an older valid prefix, a log
re-signed under another keyring — each verify clean without the new options (the limit,
stated) and are each found with ``--witness`` / ``--max-unsigned-tail``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ordinance.keys import Keyring, Signer, generate
from ordinance.processors.audit.chain import GENESIS, chain_headers, record_hash, stored_links
from ordinance.processors.audit.checkpointer import Checkpointer
from ordinance.processors.audit.verify import DELETED, FORGED_CHECKPOINT, VerifyReport
from ordinance.processors.audit.witness import (
    CHECKPOINT_MISSING,
    KEYRING_MISMATCH,
    ROLLBACK,
    UNSIGNED_TAIL,
    WITNESS_CONFLICT,
    WITNESS_INVALID,
    WITNESS_MISMATCH,
    AnchorReport,
    TailLimit,
    TailLimitError,
    WitnessState,
    anchor,
    load,
    verify_witnessed,
)
from ordinance.processors.audit.witness_store import (
    FileWitness,
    GitWitness,
    Witness,
    WitnessError,
    open_witness,
)
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.sqlite_store import decode_headers, encode_headers
from ordinance.streams.topics import AGENT_DECISIONS, AUDIT_CHECKPOINTS, topic_specs

from ..test_enforcer import T0
from .conftest import EVERY, AuditedLog
from .test_verify import PARTITION, _db

SPECS = topic_specs()
DECISIONS_TOPIC = SPECS[AGENT_DECISIONS].name
LATER = T0 + 7200  # "now" for the age checks: two hours after the log was written


def _verify(
    url: str,
    keyring: Path,
    witness: Witness | None = None,
    tail: str | None = None,
) -> VerifyReport:
    state = load(witness) if witness is not None else None
    with open_log(url) as log:
        return verify_witnessed(
            log,
            Keyring.from_file(keyring),
            witness=state,
            tail=None if tail is None else TailLimit.parse(tail),
            now=lambda: LATER,
        )


def _kinds(report: VerifyReport) -> set[str]:
    return {f.kind for f in report.findings}


def _anchor(url: str, keyring: Path, witness: Witness, *, repin: bool = False) -> AnchorReport:
    with open_log(url) as log:
        return anchor(log, Keyring.from_file(keyring), witness, repin=repin, log_name=url)


def _forge_tail(url: str, partition: int, count: int) -> list[int]:
    """Append ``count`` decisions to ``partition`` through the log, as a writer with
    access would, each correctly chained to the head: nothing signed covers them."""
    serde = Serde()
    with open_log(url) as log:
        records = list(log.read_to_end(DECISIONS_TOPIC, [partition]))
        head = GENESIS
        for record in records:
            head = record_hash(head, record.key, record.value)
        template = next(
            d
            for r in reversed(records)
            if isinstance(d := serde.decode_record(r, expect={"Decision"}), Decoded)
        )
        key = next(r.key for r in reversed(records) if r.value is not None)
        forged = []
        for i in range(count):
            value = serde.encode(
                "Decision", dict(template.value, request_id=f"forged-{i}", effect="allow")
            )
            own = record_hash(head, key, value)
            forged.append(
                Record(key, value, chain_headers(head, own), int(T0 * 1000), partition=partition)
            )
            head = own
        delivered = log.produce(DECISIONS_TOPIC, forged)
    return [d.offset for d in delivered]


def _checkpoint_rows(conn: sqlite3.Connection) -> list[tuple[int, dict[str, Any]]]:
    """(offset, datum) of every record on audit.checkpoints, in order."""
    serde = Serde()
    [(topic_id,)] = conn.execute(
        "SELECT id FROM topics WHERE name=?", (SPECS[AUDIT_CHECKPOINTS].name,)
    )
    rows = []
    for offset, value in conn.execute(
        "SELECT offset, value FROM records WHERE topic_id=? ORDER BY offset", (topic_id,)
    ):
        decoded = serde.decode(value)
        assert isinstance(decoded, Decoded)
        rows.append((offset, decoded.value))
    return rows


def _delete_checkpoints(conn: sqlite3.Connection, offsets: list[int]) -> None:
    [(topic_id,)] = conn.execute(
        "SELECT id FROM topics WHERE name=?", (SPECS[AUDIT_CHECKPOINTS].name,)
    )
    conn.executemany(
        "DELETE FROM records WHERE topic_id=? AND offset=?", [(topic_id, o) for o in offsets]
    )


def _rewrite_and_rechain(conn: sqlite3.Connection, topic_id: int, index: int) -> int:
    """Flip a byte of the ``index``-th chained record of PARTITION and fix every chain
    header from there on, as a careful forger would: only a signature can tell. Returns
    the offset of the edited record."""
    rows = conn.execute(
        "SELECT offset, key, value, headers FROM records WHERE topic_id=? AND partition=? "
        "ORDER BY offset",
        (topic_id, PARTITION),
    ).fetchall()
    chained = [i for i, row in enumerate(rows) if stored_links(decode_headers(row[3]))[0]]
    target = chained[index]
    offset, key, value, headers = rows[target]
    rows[target] = (offset, key, value[:40] + bytes([value[40] ^ 0x01]) + value[41:], headers)
    head = GENESIS
    for position, (offset, key, value, headers) in enumerate(rows):
        own = record_hash(head, key, value)
        if position >= target and stored_links(decode_headers(headers))[0] is not None:
            conn.execute(
                "UPDATE records SET value=?, headers=? WHERE topic_id=? AND partition=? "
                "AND offset=?",
                (value, encode_headers(chain_headers(head, own)), topic_id, PARTITION, offset),
            )
        head = own
    return int(rows[target][0])


@pytest.fixture
def witnessed(audited_log: AuditedLog, tmp_path: Path) -> tuple[str, FileWitness]:
    """A copy of the signed log, every checkpoint of it anchored to a file witness."""
    url = audited_log.copy(tmp_path)
    witness = FileWitness(tmp_path / "witness.jsonl")
    report = _anchor(url, audited_log.keyring, witness)
    assert report.ok and report.pinned and report.anchored
    return url, witness


def test_anchoring_is_idempotent_and_the_untouched_log_verifies(
    audited_log: AuditedLog, witnessed: tuple[str, FileWitness]
) -> None:
    url, witness = witnessed
    state = load(witness)
    assert state.fingerprint == Keyring.from_file(audited_log.keyring).fingerprint()
    assert state.count >= 8  # at least two checkpoints in each of the four partitions
    before = witness.path.read_bytes()
    again = _anchor(url, audited_log.keyring, witness)
    assert again.ok and again.anchored == [] and not again.pinned
    assert again.witnessed_before == state.count
    assert witness.path.read_bytes() == before
    report = _verify(url, audited_log.keyring, witness, "0")
    assert report.findings == []
    assert all(p.witnessed == p.covered == p.records for p in report.partitions)


def test_re_anchoring_adds_only_new_checkpoints(
    audited_log: AuditedLog, witnessed: tuple[str, FileWitness]
) -> None:
    url, witness = witnessed
    count = load(witness).count
    _forge_tail(url, PARTITION, 3)  # the honest log grows (here: any new records) ...
    with open_log(url) as log:  # ... and the checkpointer signs them
        Checkpointer(log, Signer.from_file(audited_log.key), clock=lambda: T0).run(
            until_idle=True, idle_s=0.2
        )
    report = _anchor(url, audited_log.keyring, witness)
    assert report.ok and len(report.anchored) == 1
    assert report.anchored[0]["partition"] == PARTITION
    assert load(witness).count == count + 1


def test_blind_spot_forged_tail_is_found_by_the_unsigned_tail_limit(
    audited_log: AuditedLog, witnessed: tuple[str, FileWitness]
) -> None:
    url, witness = witnessed
    offsets = _forge_tail(url, PARTITION, 5)
    # The limit, stated: nothing signed covers the tail, and a witness holds only
    # checkpoints, so neither plain verify nor the witness sees it.
    assert _verify(url, audited_log.keyring).findings == []
    assert _verify(url, audited_log.keyring, witness).findings == []
    assert _verify(url, audited_log.keyring, tail="5").findings == []
    for limit in ("4", "0", "1h"):
        report = _verify(url, audited_log.keyring, tail=limit)
        [finding] = report.findings
        assert (finding.kind, finding.partition, finding.offset) == (
            UNSIGNED_TAIL,
            PARTITION,
            offsets[0],
        )
        assert f"5 records (offsets {offsets[0]}..{offsets[-1]})" in finding.detail
    assert (
        "written 2.0h ago, longer than 1h"
        in _verify(url, audited_log.keyring, tail="1h").findings[0].detail
    )
    assert _verify(url, audited_log.keyring, tail="3h").findings == []


def test_blind_spot_deleted_last_checkpoint_is_found_by_the_witness(
    audited_log: AuditedLog, witnessed: tuple[str, FileWitness]
) -> None:
    url, witness = witnessed
    with _db(url) as (conn, topic_id):
        mine = [(o, d) for o, d in _checkpoint_rows(conn) if d["partition"] == PARTITION]
        last_offset, last = mine[-1]
        _delete_checkpoints(conn, [last_offset])
    assert _verify(url, audited_log.keyring).findings == []  # the limit, stated
    [finding] = _verify(url, audited_log.keyring, witness).findings
    assert (finding.kind, finding.partition) == (CHECKPOINT_MISSING, PARTITION)
    assert f"{last['record_count']:,} records" in finding.detail
    # Without the checkpoint its records are an unsigned tail a forger can rewrite:
    with _db(url) as (conn, topic_id):
        edited = _rewrite_and_rechain(conn, topic_id, -3)
    assert _verify(url, audited_log.keyring).findings == []
    [finding] = _verify(url, audited_log.keyring, witness).findings
    assert (finding.kind, finding.offset) == (WITNESS_MISMATCH, last["last_offset"])
    assert edited <= last["last_offset"]
    # ... and the unsigned-tail limit sees the tail the deletion left
    assert _kinds(_verify(url, audited_log.keyring, tail="0")) == {UNSIGNED_TAIL}


def test_blind_spot_rollback_to_an_older_prefix_is_found_by_the_witness(
    audited_log: AuditedLog, witnessed: tuple[str, FileWitness]
) -> None:
    url, witness = witnessed
    with _db(url) as (conn, topic_id):
        rows = _checkpoint_rows(conn)
        first: dict[int, tuple[int, dict[str, Any]]] = {}  # the prefix rolled back to
        for offset, datum in rows:
            first.setdefault(datum["partition"], (offset, datum))
        _delete_checkpoints(conn, [o for o, _d in rows if o not in {o for o, _ in first.values()}])
        for partition, (_o, datum) in first.items():
            conn.execute(
                "DELETE FROM records WHERE topic_id=? AND partition=? AND offset>?",
                (topic_id, partition, datum["last_offset"]),
            )
    clean = _verify(url, audited_log.keyring)
    assert clean.findings == []  # the limit, stated: an older prefix is a valid log
    assert all(p.covered == EVERY for p in clean.partitions)
    report = _verify(url, audited_log.keyring, witness)
    assert sorted((f.kind, f.partition) for f in report.findings) == [
        (ROLLBACK, p) for p in sorted(first)
    ]
    assert "rolled back or truncated" in report.findings[0].detail
    # and the witness takes nothing from it
    before = witness.path.read_bytes()
    refused = _anchor(url, audited_log.keyring, witness)
    assert not refused.ok and refused.anchored == []
    assert witness.path.read_bytes() == before


def _resign(url: str, directory: Path) -> Path:
    """Rewrite a decision, rechain, drop every checkpoint and sign the log anew under a
    key of one's own; returns that key's keyring."""
    with _db(url) as (conn, topic_id):
        _rewrite_and_rechain(conn, topic_id, 100)
        _delete_checkpoints(conn, [o for o, _d in _checkpoint_rows(conn)])
    key, keyring = directory / "attacker.pem", directory / "attacker.json"
    generate(key, keyring)
    with open_log(url) as log:
        Checkpointer(log, Signer.from_file(key), every_records=EVERY, clock=lambda: T0).run(
            until_idle=True, idle_s=0.2
        )
    return keyring


def test_blind_spot_re_signed_with_another_keyring_is_found_by_the_pin(
    audited_log: AuditedLog, witnessed: tuple[str, FileWitness], tmp_path: Path
) -> None:
    url, witness = witnessed
    theirs = _resign(url, tmp_path)
    assert _verify(url, theirs).findings == []  # the limit, stated: it verifies under theirs
    report = _verify(url, theirs, witness)
    assert report.log_findings and report.log_findings[0].kind == KEYRING_MISMATCH
    assert report.log_findings[0].partition is None
    assert (WITNESS_MISMATCH, PARTITION) in {(f.kind, f.partition) for f in report.findings}
    # Under the real keyring, the new signatures are forgeries (what verify always did).
    assert FORGED_CHECKPOINT in _kinds(_verify(url, audited_log.keyring, witness))
    refused = _anchor(url, theirs, witness)
    assert not refused.ok and KEYRING_MISMATCH in _kinds(refused.verify)


def test_repinning_cannot_launder_a_rewritten_history(
    audited_log: AuditedLog, witnessed: tuple[str, FileWitness], tmp_path: Path
) -> None:
    """--repin-keyring (for a key rotation) still holds the log to what was witnessed:
    with only the attacker's key the witnessed checkpoints do not verify; with both keys
    the log's re-signed checkpoints contradict the witnessed ones."""
    url, witness = witnessed
    theirs = _resign(url, tmp_path)
    alone = _anchor(url, theirs, witness, repin=True)
    assert not alone.ok and _kinds(alone.verify) == {WITNESS_INVALID}
    assert "must keep the keys" in alone.verify.findings[0].detail
    both = tmp_path / "both.json"
    keys = [json.loads(ring.read_text())["keys"] for ring in (audited_log.keyring, theirs)]
    both.write_text(json.dumps({"keys": keys[0] + keys[1]}))
    report = _anchor(url, both, witness, repin=True)
    assert not report.ok
    assert {WITNESS_CONFLICT, WITNESS_MISMATCH} <= _kinds(report.verify)


def test_an_altered_witness_entry_is_reported(
    audited_log: AuditedLog, witnessed: tuple[str, FileWitness]
) -> None:
    url, witness = witnessed
    original = witness.path.read_text().splitlines()

    def with_entry_3(edit: Callable[[dict[str, Any]], None]) -> None:
        entry = json.loads(original[3])
        edit(entry)
        lines = [*original[:3], json.dumps(entry), *original[4:]]
        witness.path.write_text("\n".join(lines) + "\n")

    def bigger(entry: dict[str, Any]) -> None:
        entry["checkpoint"] = entry["checkpoint"].replace("record_count ", "record_count 9")

    with_entry_3(bigger)  # a claim the signature does not cover
    [finding] = _verify(url, audited_log.keyring, witness).findings
    assert finding.kind == WITNESS_INVALID and "was altered" in finding.detail

    def padded(entry: dict[str, Any]) -> None:
        entry["checkpoint"] = entry["checkpoint"].replace("record_count ", "record_count 0")

    with_entry_3(padded)  # not a text the checkpointer writes
    with pytest.raises(WitnessError, match="malformed"):
        load(witness)

    witness.path.write_text("\n".join(original[1:]) + "\n")  # the keyring pin removed
    assert _kinds(_verify(url, audited_log.keyring, witness)) == {KEYRING_MISMATCH}


def test_git_witness_commits_each_anchoring(audited_log: AuditedLog, tmp_path: Path) -> None:
    url = audited_log.copy(tmp_path)
    repo = tmp_path / "witness-repo"
    witness = open_witness(f"git:{repo}")
    assert isinstance(witness, GitWitness)
    first = _anchor(url, audited_log.keyring, witness)
    assert first.ok and first.pinned

    def commits() -> list[str]:
        log = subprocess.run(
            ["git", "-C", str(repo), "log", "--format=%s"], capture_output=True, check=True
        )
        return log.stdout.decode().splitlines()

    assert commits() == [f"anchor {len(first.anchored)} checkpoint(s)"]
    state = load(witness)
    assert state.count == len(first.anchored)
    assert state.fingerprint == first.fingerprint
    assert open_witness(str(repo)).name == witness.name  # a directory is a Git witness
    assert _anchor(url, audited_log.keyring, witness).anchored == []
    assert len(commits()) == 1  # nothing new, no commit
    _forge_tail(url, 0, 2)
    with open_log(url) as log:
        Checkpointer(log, Signer.from_file(audited_log.key), clock=lambda: T0).run(
            until_idle=True, idle_s=0.2
        )
    assert len(_anchor(url, audited_log.keyring, witness).anchored) == 1
    assert len(commits()) == 2
    # what is witnessed is what is committed: an uncommitted edit is not read
    for path in (repo / "entries").iterdir():
        path.write_text("{}")
    assert load(witness).count == state.count + 1
    assert _verify(url, audited_log.keyring, witness).findings == []


def test_a_deleted_record_is_still_located_with_a_witness(
    audited_log: AuditedLog, witnessed: tuple[str, FileWitness]
) -> None:
    """The witness adds findings; it does not mask the log's own."""
    url, witness = witnessed
    with _db(url) as (conn, topic_id):
        conn.execute(
            "DELETE FROM records WHERE topic_id=? AND partition=? AND offset=?",
            (topic_id, PARTITION, 50),
        )
    assert DELETED in _kinds(_verify(url, audited_log.keyring, witness))


def test_tail_limits_parse() -> None:
    assert TailLimit.parse("100") == TailLimit("100", records=100)
    assert TailLimit.parse("10m") == TailLimit("10m", seconds=600)
    assert TailLimit.parse("1h").seconds == 3600
    with pytest.raises(TailLimitError, match="neither a number"):
        TailLimit.parse("soon")


def test_witness_specs_and_an_empty_witness(tmp_path: Path) -> None:
    assert isinstance(open_witness(f"file:{tmp_path}/w.jsonl"), FileWitness)
    assert isinstance(open_witness(str(tmp_path / "w.jsonl")), FileWitness)
    assert isinstance(open_witness(str(tmp_path)), GitWitness)
    assert load(FileWitness(tmp_path / "none.jsonl")) == WitnessState(f"file:{tmp_path}/none.jsonl")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(WitnessError, match="not a Git repository"):
        GitWitness(tmp_path / "full").append([], "nothing")
