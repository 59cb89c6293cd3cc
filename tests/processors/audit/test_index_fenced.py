"""The audit index and a zombie writer (docs/audit.md, "Fenced writes"): a decision an
enforcer wrote after another enforcer's takeover marker is indexed with the owner that
fenced it, and queries leave it out unless they ask — also when the indexer stopped
between the marker and the zombie's writes and resumed from its stored position."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ordinance import cli
from ordinance.processors.audit.index_follow import index_log
from ordinance.processors.audit.query import QueryFilter, connect, explain, query
from ordinance.streams import open_log

from .zombie_helpers import OWNER, ZOMBIE, decisions, take_over, zombie_then_owner


def test_fenced_writes_are_flagged_and_left_out_unless_asked_across_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    path = tmp_path / "index.db"
    with open_log(url) as log:
        takeover = take_over(url, log, tmp_path)
        # The indexer stops right after B's marker: the owner must survive in the index.
        first = index_log(log, path)
        assert (first.indexed, first.fenced) == (3, 0)
        zombie_then_owner(takeover)
        second = index_log(log, path)
        on_log = decisions(log)
    zombie_writes = [
        (p, o)
        for p, o, d in on_log
        if d["enforcer_id"] == ZOMBIE and d["request_id"] in {"q3", "q4"}
    ]
    assert len(zombie_writes) == 2
    assert (second.indexed, second.fenced) == (4, 2)

    conn = connect(str(path))
    acted_on = list(query(conn, QueryFilter()))
    # Each request once, decided by whoever owned the partition when deciding it.
    assert [(r["request_id"], r["enforcer_id"]) for r in acted_on] == [
        *((f"q{i}", ZOMBIE) for i in range(3)),
        ("q3", OWNER),
        ("q4", OWNER),
    ]
    assert all(r["fenced_owner"] is None for r in acted_on)
    assert [r["request_id"] for r in query(conn, QueryFilter(effect="deny"))] == ["q4"]
    fenced = list(query(conn, QueryFilter(fenced="only")))
    assert [(r["partition"], r["offset"]) for r in fenced] == zombie_writes
    assert {(r["enforcer_id"], r["fenced_owner"]) for r in fenced} == {(ZOMBIE, OWNER)}
    assert [r["request_id"] for r in query(conn, QueryFilter(fenced="only", effect="deny"))] == [
        "q4"
    ]
    assert len(list(query(conn, QueryFilter(fenced="include")))) == len(on_log) == 7
    # Asking for them alone reads only them (a partial index: free on logs without any).
    assert any(
        "decisions_fenced_time" in line for line in explain(conn, QueryFilter(fenced="only"))
    )
    conn.close()

    # A rebuild in one pass (batches of one: the owner carried record to record) agrees.
    rebuilt = tmp_path / "rebuilt.db"
    with open_log(url) as log:
        assert index_log(log, rebuilt, batch=1).fenced == 2
    table = "SELECT id, fenced_owner FROM decisions ORDER BY id"
    with sqlite3.connect(path) as a, sqlite3.connect(rebuilt) as b:
        assert a.execute(table).fetchall() == b.execute(table).fetchall()

    # The command: left out by default, asked for with --fenced, marked in the table.
    ask = ["audit", "query", "--index", str(path), "--request", "q4"]
    assert cli.main([*ask, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["decisions"]
    assert (row["enforcer_id"], row["fenced_owner"]) == (OWNER, None)
    assert cli.main([*ask, "--fenced", "include", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["decisions"]
    assert [(r["enforcer_id"], r["fenced_owner"]) for r in rows] == [(ZOMBIE, OWNER), (OWNER, None)]
    assert cli.main([*ask, "--fenced", "only"]) == 0
    table = capsys.readouterr().out
    assert f"by {ZOMBIE}, owner {OWNER}" in table and "1 decision(s)" in table
