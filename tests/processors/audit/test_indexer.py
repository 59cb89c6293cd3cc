"""The audit indexer over a decisions log written by the real enforcer: every decision once,
control records skipped, resume exactly (also after a crash between two batches), rebuild
from the log gives the same index, and an index is never mixed up with another topic."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ordinance.processors.audit.index_follow import decisions_topic, index_log
from ordinance.processors.audit.indexer import AuditIndex, DecisionRow, IndexFileError, remove_index
from ordinance.streams import Record, open_log
from ordinance.streams.topics import ensure_topics

from .index_helpers import (
    T0,
    StepClock,
    build_log,
    enforce,
    log_decisions,
    send_rounds,
    sqlite_url,
)

COLUMNS = (
    "partition, offset, request_id, agent_id, tool, effect, code, rule_ids, bundle_id,"
    " policy_offset, arm, shadow_bundle_id, shadow_effect, shadow_code, shadow_rule_ids,"
    " event_time, evaluated_at, enforcer_id, args"
)


def index_rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        cursor = conn.execute(f"SELECT {COLUMNS} FROM decisions ORDER BY evaluated_at, id")
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor]
    for row in rows:
        row["rule_ids"] = row["rule_ids"].split("\n") if row["rule_ids"] else []
        row["args"] = json.loads(row["args"])
        shadow_rules = row["shadow_rule_ids"]
        row["shadow_rule_ids"] = (
            None if shadow_rules is None else [*filter(None, shadow_rules.split("\n"))]
        )
    return rows


def rule_rows(path: Path) -> list[tuple[str, str, int, int]]:
    with sqlite3.connect(path) as conn:
        return sorted(
            conn.execute("SELECT policy, rule, evaluated_at, decision FROM decision_rules")
        )


def index(url: str, path: Path, **options: Any) -> Any:
    with open_log(url) as log:
        return index_log(log, path, **options)


def test_every_decision_is_indexed_once_with_its_fields(log_url: str, tmp_path: Path) -> None:
    """Both backends. The oracle reads the log with read_to_end, which on Kafka leaves end
    markers in the decisions topic: the indexer must step over them and still finish."""
    build_log(log_url, rounds=3)
    expected, control = log_decisions(log_url)
    assert {d["effect"] for d in expected} == {"allow", "deny", "require_approval"}
    path = tmp_path / "index.db"
    report = index(log_url, path)
    assert index_rows(path) == expected
    assert (report.indexed, report.control, report.other) == (len(expected), control, 0)
    with open_log(log_url) as log:
        assert report.positions == log.end_offsets(decisions_topic())
    assert index(log_url, path).indexed == 0  # nothing new: nothing written


def test_rule_rows_split_policy_and_rule(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    build_log(url, rounds=1)
    path = tmp_path / "index.db"
    index(url, path)
    ids = {(d["request_id"]): d for d in index_rows(path)}
    with sqlite3.connect(path) as conn:
        found = conn.execute(
            "SELECT policy, rule FROM decision_rules r JOIN decisions d ON d.id = r.decision"
            " WHERE d.request_id = 'q0-7' ORDER BY rule"
        ).fetchall()
    assert ids["q0-7"]["rule_ids"] == ["web-fetch/metadata", "web-fetch/plain-http"]
    assert found == [("web-fetch", "metadata"), ("web-fetch", "plain-http")]
    assert len(rule_rows(path)) == sum(len(d["rule_ids"]) for d in ids.values())


def test_resume_indexes_only_the_new_decisions(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    clock = build_log(url, rounds=2)
    path = tmp_path / "index.db"
    first = index(url, path)
    _, control_before = log_decisions(url)
    send_rounds(url, range(2, 5))
    enforce(url, clock)  # a second enforcer lifetime: takeover records among the decisions
    expected, control = log_decisions(url)
    second = index(url, path)
    assert second.indexed == len(expected) - first.indexed == 27
    # Only the new control records (one takeover per partition) are read again.
    assert second.control == control - control_before == 4
    rows = index_rows(path)
    assert rows == expected
    assert len({(r["partition"], r["offset"]) for r in rows}) == len(rows)


def test_a_crash_between_batches_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows and positions commit together: a batch that fails leaves neither behind, and
    the next run starts at the last committed position, not before it and not after."""
    url = sqlite_url(tmp_path)
    build_log(url, rounds=4)
    expected, _ = log_decisions(url)
    path = tmp_path / "index.db"
    real = AuditIndex.write_batch
    calls = 0

    def crash_on_third(self: AuditIndex, *args: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            # Rows are inserted, then the process dies before COMMIT.
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "INSERT INTO decisions (id, partition, offset, request_id, agent_id, tool,"
                " effect, code, rule_ids, evaluated_at, enforcer_id)"
                " VALUES (-1 - ?, 0, 0, 'ghost', 'x', 't', 'allow', 'c', '', 0, 'e')",
                [(i,) for i in range(3)],
            )
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(AuditIndex, "write_batch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        index(url, path, batch=5)
    monkeypatch.setattr(AuditIndex, "write_batch", real)
    partial = index_rows(path)
    assert 0 < len(partial) < len(expected)
    assert all(r["request_id"] != "ghost" for r in partial)
    index(url, path, batch=5)
    assert index_rows(path) == expected


def test_rebuilding_from_the_log_gives_the_same_index(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    build_log(url, rounds=3)
    path = tmp_path / "index.db"
    index(url, path, batch=4)  # built in many small batches...
    rows, rules = index_rows(path), rule_rows(path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    rebuilt = index(url, path)  # ...rebuilt in one
    assert rebuilt.indexed == len(rows)
    assert index_rows(path) == rows
    assert rule_rows(path) == rules


def test_records_that_are_not_decisions_are_skipped_but_consumed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    build_log(url, rounds=1)
    with open_log(url) as log:
        log.produce(decisions_topic(), [Record(b"x", b"\xc3\x01garbage", partition=1)])
    path = tmp_path / "index.db"
    report = index(url, path)
    assert report.other == 1
    assert report.indexed == len(log_decisions_without_garbage(url))
    with open_log(url) as log:
        assert report.positions == log.end_offsets(decisions_topic())


def log_decisions_without_garbage(url: str) -> list[int]:
    from ordinance.streams.serde import Decoded, Serde

    serde = Serde()
    with open_log(url) as log:
        return [
            r.offset
            for r in log.read_to_end(decisions_topic())
            if isinstance(d := serde.decode_record(r), Decoded) and d.name == "Decision"
        ]


def test_an_index_of_another_topic_is_refused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    build_log(url, rounds=1)
    path = tmp_path / "index.db"
    index(url, path)
    with open_log(url) as log:
        ensure_topics(log, "other.")  # the topic exists: only the index file is wrong
    with pytest.raises(IndexFileError, match="indexes topic"):
        index(url, path, prefix="other.")


def test_a_replayed_batch_writes_nothing_and_positions_only_move_forward(
    tmp_path: Path,
) -> None:
    row = DecisionRow(0, 7, "r", "a", "t", "deny", "matched", ("p/r",), None, None, None, 1, "e")
    with AuditIndex(tmp_path / "index.db", topic="t") as idx:
        assert idx.write_batch([row], {0: 8}) == 1
        assert idx.write_batch([row], {0: 8}) == 0
        assert idx.write_batch([row._replace(offset=8)], {0: 3, 1: 2}) == 1
        assert idx.count() == 2
        assert idx.positions() == {0: 8, 1: 2}  # 0 stays at 8: 3 is behind it
        assert idx.write_batch([], {0: 9}) == 0
        assert idx.positions() == {0: 9, 1: 2}


def test_two_indexers_on_one_file_index_every_decision_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A following indexer and a query refreshing first may write the same file at once."""
    real = AuditIndex.write_batch
    both_started = threading.Barrier(2, timeout=30)
    local = threading.local()

    def slow(self: AuditIndex, *args: Any) -> int:
        if not getattr(local, "started", False):
            local.started = True
            both_started.wait()  # both hold their first batch of the same offsets
        time.sleep(0.01)
        return real(self, *args)

    monkeypatch.setattr(AuditIndex, "write_batch", slow)
    url = sqlite_url(tmp_path)
    build_log(url, rounds=8)
    expected, _ = log_decisions(url)
    path = tmp_path / "index.db"
    AuditIndex(path, topic=decisions_topic()).close()  # created before the race
    reports: list[Any] = []
    threads = [
        threading.Thread(target=lambda: reports.append(index(url, path, batch=3))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert index_rows(path) == expected
    assert len(reports) == 2  # neither thread died (a duplicate key would have raised)
    assert sum(r.indexed for r in reports) == len(expected) == 72


def test_follow_indexes_new_decisions_until_stopped(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    clock = build_log(url, rounds=1)
    path = tmp_path / "index.db"
    stop = threading.Event()
    reports: list[Any] = []
    seen: list[int] = []
    thread = threading.Thread(
        target=lambda: reports.append(
            index(
                url,
                path,
                follow=True,
                stop=stop,
                progress=lambda r: seen.append(r.indexed),
                progress_every_s=0.1,
            )
        )
    )
    thread.start()
    try:
        send_rounds(url, range(1, 3))
        enforce(url, clock)
        expected, _ = log_decisions(url)
        deadline = time.monotonic() + 30
        while (not seen or seen[-1] < len(expected)) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert reports[0].indexed == len(expected) == 27
    assert index_rows(path) == expected


def test_progress_reports_work_done_and_stays_quiet_when_idle(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    build_log(url, rounds=2)
    path = tmp_path / "index.db"
    seen: list[tuple[int, float]] = []
    index(url, path, progress=lambda r: seen.append((r.indexed, r.per_second)), progress_every_s=0)
    assert seen and seen[-1][0] == 18 and all(rate > 0 for _, rate in seen)
    seen.clear()
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    report = index(url, path, follow=True, stop=stop, progress=seen.append, progress_every_s=0)
    assert (report.indexed, seen) == (0, [])  # nothing new on the log: no progress lines


def test_the_log_database_is_never_taken_for_an_index(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    build_log(url, rounds=1)
    log_db = tmp_path / "log.db"
    with sqlite3.connect(log_db) as conn:
        before = conn.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
    with pytest.raises(IndexFileError, match="not an audit index"):
        index(url, log_db)
    with sqlite3.connect(log_db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall() == before


def test_remove_index_deletes_an_index_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    assert not remove_index(path)  # nothing there: nothing to do
    AuditIndex(path, topic="t").close()
    Path(f"{path}-wal").write_bytes(b"")  # as a crash would leave it
    assert remove_index(path)
    assert not path.exists() and not Path(f"{path}-wal").exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database")
    with pytest.raises(IndexFileError, match="not deleting"):
        remove_index(notes)
    assert notes.read_text() == "not a database"


def _recreate_log(directory: Path, rounds: int, start: float) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{directory / 'log.db'}{suffix}").unlink(missing_ok=True)
    url = sqlite_url(directory)
    build_log(url, rounds=rounds, clock=StepClock(start))
    return url


@pytest.mark.parametrize(
    ("rounds", "match"), [(4, "not the record this index read"), (1, "but the log ends at")]
)
def test_an_index_does_not_resume_on_another_log(tmp_path: Path, rounds: int, match: str) -> None:
    """A log recreated at the same URL (longer or shorter than the first) is not indexed on
    top of the first one's rows; removing the index and indexing again is."""
    url = sqlite_url(tmp_path)
    build_log(url, rounds=2)
    path = tmp_path / "index.db"
    index(url, path)
    before = index_rows(path)
    url = _recreate_log(tmp_path, rounds, start=T0 + 7200)
    with pytest.raises(IndexFileError, match=match):
        index(url, path)
    assert index_rows(path) == before  # untouched
    remove_index(path)
    index(url, path)
    assert index_rows(path) == log_decisions(url)[0]


# The layout of schema 2 (before the rollout columns), as such an index file holds it.
_SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL,
    last_offset INTEGER, last_digest BLOB);
CREATE TABLE decisions (id INTEGER PRIMARY KEY, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, request_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    tool TEXT NOT NULL, effect TEXT NOT NULL, code TEXT NOT NULL, rule_ids TEXT NOT NULL,
    bundle_id TEXT, policy_offset INTEGER, event_time INTEGER, evaluated_at INTEGER NOT NULL,
    enforcer_id TEXT NOT NULL, args TEXT NOT NULL DEFAULT '{}');
INSERT INTO meta VALUES ('schema_version', '2'), ('topic', 'ordinance.agent.decisions');
"""


def test_an_index_of_an_older_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """An index built before the rollout columns: indexing into it and querying it both say
    to delete it and index again (never a bare "no such column"), and change nothing."""
    from ordinance.processors.audit.query import SCHEMA_VERSION, QueryError, connect

    path = tmp_path / "index.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(_SCHEMA_2)
    url = sqlite_url(tmp_path)
    build_log(url, rounds=1)
    message = f"index schema 2, this Ordinance reads {SCHEMA_VERSION}; delete the file and index"
    with pytest.raises(IndexFileError, match=message):
        index(url, path)
    with pytest.raises(QueryError, match=message):
        connect(str(path))
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(decisions)")]
        assert "arm" not in columns  # untouched
    assert remove_index(path)  # what the message says to do, and then it works
    index(url, path)
    assert index_rows(path) == log_decisions(url)[0]
