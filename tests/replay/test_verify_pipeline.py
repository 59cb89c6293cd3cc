"""replay verify over what the real enforcer wrote for approvals, duplicates and
undecodable input; and the findings for an altered approval, a deleted decision and a
decision written twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ordinance.processors.approvals import answer
from ordinance.processors.enforcer import Enforcer
from ordinance.replay.findings import VerifyReport
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.streams import open_log
from tests.processors.caught_up import run_caught_up
from tests.processors.test_enforcer import EXAMPLES, T0, publish, send, transfer

from .conftest import rewrite


def _verify(url: str) -> VerifyReport:
    source, log = open_source(url, None)
    assert log is not None
    with log:
        return verify(source)


def _enforce(url: str, now: float) -> None:
    with open_log(url) as log:
        run_caught_up(Enforcer(log, clock=lambda: now))


@pytest.fixture(scope="module")
def approvals_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("approvals") / "log.db"
    url = f"sqlite:///{db}"
    publish(url, EXAMPLES)
    first = transfer("small", "20", 0)
    send(url, first, transfer("big1", "25000", 1), transfer("big2", "26000", 2), b"\x00garbage")
    send(url, first, transfer("big3", "27000", 3))  # "small" again: a re-sent request
    _enforce(url, T0)
    with open_log(url) as log:
        answer(log, "big1", approve=True, approver="bob", clock=lambda: T0 + 60)
        answer(log, "big2", approve=False, approver="bob", clock=lambda: T0 + 60)
        answer(log, "big3", approve=True, approver="bob", expires_in_s=30, clock=lambda: T0 + 60)
    _enforce(url, T0 + 120)
    return db


def _copy(db: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy.db"
    with sqlite3.connect(db) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return target


def _decision_offset(db: Path, request_id: str, code: str | None = None) -> tuple[int, int]:
    from ordinance.streams.serde import Decoded, Serde

    serde = Serde()
    with open_log(f"sqlite:///{db}") as log:
        for record in log.read_to_end("ordinance.agent.decisions"):
            d = serde.decode_record(record)
            if (
                isinstance(d, Decoded)
                and d.name == "Decision"
                and d.value["request_id"] == request_id
                and (code is None or code in (d.value["code"], d.value["effect"]))
            ):
                return record.partition, record.offset
    raise AssertionError(request_id)


def test_the_enforcers_log_replays_clean(approvals_log: Path) -> None:
    report = _verify(f"sqlite:///{approvals_log}")
    assert report.ok, [f.to_json() for f in report.findings]
    counts = [c for c in report.partitions.values() if c.decisions]
    assert sum(c.follow_ups for c in counts) == 3  # approved, rejected, expired
    assert sum(c.duplicates_skipped for c in counts) == 1  # "small" sent twice
    assert report.decisions == 5 + 3  # small, big1-3, the undecodable action; 3 follow-ups


def test_an_altered_approval_is_reported_on_its_follow_up(
    approvals_log: Path, tmp_path: Path
) -> None:
    db = _copy(approvals_log, tmp_path)
    with open_log(f"sqlite:///{db}") as log:
        [approval] = [
            r for r in log.read_to_end("ordinance.agent.approvals") if b"big2" in (r.value or b"")
        ]
    rewrite(
        db,
        "agent.approvals",
        approval.partition,
        approval.offset,
        lambda a: {**a, "verdict": "approved"},
    )
    [finding] = _verify(f"sqlite:///{db}").findings
    assert (finding.partition, finding.offset) == _decision_offset(db, "big2", "approval_rejected")
    assert finding.differences["effect"] == {"recorded": "deny", "recomputed": "allow"}


def test_a_deleted_decision_and_a_decision_written_twice(
    approvals_log: Path, tmp_path: Path
) -> None:
    db = _copy(approvals_log, tmp_path)
    partition, offset = _decision_offset(db, "big1", "require_approval")
    with sqlite3.connect(db) as conn:
        (topic_id,) = conn.execute(
            "SELECT id FROM topics WHERE name='ordinance.agent.decisions'"
        ).fetchone()
        conn.execute(
            "DELETE FROM records WHERE topic_id=? AND partition=? AND offset=?",
            (topic_id, partition, offset),
        )
    kinds = {f.kind: f for f in _verify(f"sqlite:///{db}").findings}
    # The action has no decision now, and big1's approval answers nothing pending.
    assert kinds["action_without_decision"].request_id == "big1"
    assert kinds["approval_missing"].request_id == "big1"

    (tmp_path / "second").mkdir()
    db = _copy(approvals_log, tmp_path / "second")  # a fresh copy
    partition, offset = _decision_offset(db, "big2", "require_approval")
    garbage = 3  # the fourth action sent: small, big1, big2, garbage
    # Overwrite the next decision (the undecodable action's) with big2's: big2's action
    # decided twice, the undecodable one never.
    with sqlite3.connect(db) as conn:
        (topic_id,) = conn.execute(
            "SELECT id FROM topics WHERE name='ordinance.agent.decisions'"
        ).fetchone()
        (value,) = conn.execute(
            "SELECT value FROM records WHERE topic_id=? AND partition=? AND offset=?",
            (topic_id, partition, offset),
        ).fetchone()
        conn.execute(
            "UPDATE records SET value=? WHERE topic_id=? AND partition=? AND offset=?",
            (value, topic_id, partition, offset + 1),
        )
    findings = _verify(f"sqlite:///{db}").findings
    assert sorted((f.kind, f.offset) for f in findings) == [
        ("action_without_decision", garbage),
        ("duplicate_decision", offset + 1),
    ]
