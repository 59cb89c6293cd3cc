"""``ordinance audit index`` / ``audit query`` as commands: summaries, CSV, JSON and table
output, truncation, refresh from the log, and usage errors.

Run through ``ordinance.cli.main``: the shared ``audit`` group (audit_cmds) adds these
sub-commands beside verify and prove."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ordinance import cli
from ordinance.processors.approvals import answer
from ordinance.processors.audit.indexer import AuditIndex, DecisionRow
from ordinance.processors.audit.query import QueryError, QueryFilter, connect, query
from ordinance.processors.enforcer_state import APPROVED
from ordinance.streams import open_log
from ordinance.streams.topics import ensure_topics

from .index_helpers import build_log, enforce, log_decisions, send_rounds, sqlite_url


def main(argv: list[str]) -> int:
    return cli.main(argv)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    directory = tmp_path_factory.mktemp("audit-cmds")
    url = sqlite_url(directory)
    build_log(url, rounds=3)
    index = directory / "index.db"
    assert main(["audit", "index", "--log", url, "--index", str(index)]) == 0
    return url, index


def test_index_reports_what_it_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sqlite_url(tmp_path)
    build_log(url, rounds=1)
    index = str(tmp_path / "index.db")
    assert main(["audit", "index", "--log", url, "--index", index, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    decisions, control = log_decisions(url)
    assert report["indexed"] == report["total"] == len(decisions) == 9
    assert report["control_records"] == control
    assert main(["audit", "index", "--log", url, "--index", index]) == 0
    out = capsys.readouterr().out
    assert "indexed 0 decision(s)" in out and "the index holds 9" in out


def rows_of(index: Path, **filters: Any) -> list[dict[str, Any]]:
    return list(query(connect(str(index)), QueryFilter(**filters)))


def test_csv(log: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, index = log
    assert main(["audit", "query", "--index", str(index), "--effect", "deny", "--csv"]) == 0
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    want = rows_of(index, effect="deny")
    assert [r["request_id"] for r in parsed] == [r["request_id"] for r in want]
    assert len(parsed) == 9
    fetch = next(r for r in parsed if r["tool"] == "http.fetch")
    assert fetch["rule_ids"] == "web-fetch/metadata;web-fetch/plain-http"
    assert fetch["effect"] == "deny" and fetch["evaluated_at"].endswith("Z")
    assert fetch["bundle_id"] and int(fetch["policy_offset"]) >= 0


def test_json(log: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, index = log
    argv = ["audit", "query", "--index", str(index), "--agent", "files-bot", "--tool", "fs.*"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = rows_of(index, agent="files-bot", tool="fs.*")
    assert out == {"count": 9, "truncated": False, "decisions": want}
    # --json given to the shared `audit` parser works as well
    assert main(["audit", "--json", *argv[1:]]) == 0
    assert json.loads(capsys.readouterr().out) == out


def test_table_and_truncation(log: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, index = log
    assert main(["audit", "query", "--index", str(index), "--policy", "payments-guardrails"]) == 0
    out = capsys.readouterr().out
    assert "12 decision(s)" in out and "q2-2" in out and "files-bot" not in out
    assert main(["audit", "query", "--index", str(index), "--limit", "2", "--json"]) == 0
    captured = capsys.readouterr()
    out_json = json.loads(captured.out)
    assert (out_json["count"], out_json["truncated"]) == (2, True)
    assert out_json["decisions"] == rows_of(index, limit=2)
    assert "--limit 0 for all" in captured.err
    assert main(["audit", "query", "--index", str(index), "--limit", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 27
    # CSV is streamed, and cut the same way
    assert main(["audit", "query", "--index", str(index), "--limit", "2", "--csv"]) == 0
    captured = capsys.readouterr()
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == 2
    assert "--limit 0 for all" in captured.err
    assert main(["audit", "query", "--index", str(index), "--limit", "27", "--csv"]) == 0
    captured = capsys.readouterr()
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == 27
    assert captured.err == ""  # exactly all of them: nothing was cut


def test_time_filters_from_the_command_line(
    log: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, index = log
    everything = rows_of(index)
    since, until = everything[5]["evaluated_at"], everything[9]["evaluated_at"]
    argv = ["audit", "query", "--index", str(index), "--since", since, "--until", until]
    assert main([*argv, "--json"]) == 0
    got = [d["request_id"] for d in json.loads(capsys.readouterr().out)["decisions"]]
    assert got == [r["request_id"] for r in everything[5:9]]
    assert main(["audit", "query", "--index", str(index), "--since", "1h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 0  # the log's clock is in 2026


def test_query_refreshes_from_the_log_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url(tmp_path)
    clock = build_log(url, rounds=1)
    index = str(tmp_path / "index.db")
    assert main(["audit", "index", "--log", url, "--index", index]) == 0
    send_rounds(url, range(1, 2))
    enforce(url, clock)
    capsys.readouterr()
    base = ["audit", "query", "--index", index, "--agent", "billing-bot", "--json"]
    assert main(base) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 2  # stale: round 0 only
    assert main([*base, "--log", url]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["count"] == 4
    assert "9 new decision(s) indexed" in captured.err


def test_one_requests_decisions(log: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, index = log
    assert main(["audit", "query", "--index", str(index), "--request", "q1-2", "--json"]) == 0
    [decision] = json.loads(capsys.readouterr().out)["decisions"]
    assert (decision["agent_id"], decision["effect"]) == ("billing-2", "require_approval")


def test_explain_shows_an_index_search(
    log: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, index = log
    argv = ["audit", "query", "--index", str(index), "--agent", "a", "--since", "2026-01-01"]
    assert main([*argv, "--explain"]) == 0
    assert "SEARCH decisions USING INDEX decisions_agent_time" in capsys.readouterr().out


def test_usage_errors(
    log: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, index = log
    assert main(["audit", "query", "--index", str(index), "--since", "last tuesday"]) == 2
    assert "cannot read time" in capsys.readouterr().err
    assert main(["audit", "query", "--index", str(index), "--csv", "--json"]) == 2
    assert main(["audit", "query", "--index", str(tmp_path / "none.db")]) == 1
    assert "not an audit index" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["audit", "query", "--index", str(index), "--effect", "permit"])
    assert main(["audit", "index", "--log", "nope://x", "--index", str(tmp_path / "i.db")]) == 1
    url = sqlite_url(tmp_path)
    bad_index = str(tmp_path / "no-such-dir" / "i.db")
    with open_log(url) as opened:
        ensure_topics(opened)
    assert main(["audit", "index", "--log", url, "--index", bad_index]) == 1
    assert "audit index failed" in capsys.readouterr().err
    argv = ["audit", "query", "--index", str(index), "--since", "2026-02-01"]
    assert main([*argv, "--until", "2026-01-01"]) == 2
    assert "is not before" in capsys.readouterr().err


def test_index_follow_runs_until_sigterm(tmp_path: Path) -> None:
    """The command in its own process: it indexes what arrives, prints its rate to stderr,
    and stops cleanly on SIGTERM with the summary on stdout."""
    url = sqlite_url(tmp_path)
    clock = build_log(url, rounds=1)
    index = tmp_path / "index.db"
    argv = ["audit", "index", "--follow", "--log", url, "--index", str(index), "--json"]
    child = subprocess.Popen(
        [sys.executable, "-m", "ordinance.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        send_rounds(url, range(1, 3))
        enforce(url, clock)
        expected, _ = log_decisions(url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _count(index) < len(expected):
            time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert json.loads(out)["total"] == len(expected) == 27
    assert "records/s" in err


def _count(index: Path) -> int:
    try:
        return len(rows_of(index))
    except QueryError:
        return 0  # not created yet


def test_the_table_prints_ids_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Agent and request ids are the agents' text: rich markup in one is not interpreted."""
    index = tmp_path / "index.db"
    row = DecisionRow(
        0, 0, "[link=x]r1[/link]", "[bold]evil[/bold]", "fs.read", "deny", "matched",
        ("p/r",), None, None, None, 1_767_225_600_000_000, "e",
    )  # fmt: skip
    with AuditIndex(index, topic="ordinance.agent.decisions") as idx:
        idx.write_batch([row], {0: 1})
    assert main(["audit", "query", "--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert "[bold]evil[/bold]" in out and "[link=x]r1[/link]" in out, out


def test_rebuild_deletes_the_index_and_indexes_the_whole_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url(tmp_path)
    build_log(url, rounds=1)
    index = tmp_path / "index.db"
    assert main(["audit", "index", "--log", url, "--index", str(index)]) == 0
    before = rows_of(index)
    capsys.readouterr()
    assert main(["audit", "index", "--log", url, "--index", str(index), "--rebuild", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["indexed"] == len(before) == 9  # all again, not 0
    assert "rebuilding" in captured.err
    assert rows_of(index) == before
    # --rebuild naming the log's own database deletes nothing
    log_db = tmp_path / "log.db"
    assert main(["audit", "index", "--log", url, "--index", str(log_db), "--rebuild"]) == 1
    assert "not an audit index" in capsys.readouterr().err
    assert log_db.exists() and len(log_decisions(url)[0]) == 9


def test_an_approved_request_has_both_decisions(tmp_path: Path) -> None:
    """require_approval, then the approval's follow-up decision for the same request id:
    `--request` shows the request's history in order."""
    url = sqlite_url(tmp_path)
    clock = build_log(url, rounds=1)
    with open_log(url) as opened:
        answer(opened, "q0-2", approve=True, approver="bob", clock=lambda: clock.start + 30)
    enforce(url, clock)
    index = tmp_path / "index.db"
    assert main(["audit", "index", "--log", url, "--index", str(index)]) == 0
    history = rows_of(index, request="q0-2")
    assert [(r["effect"], r["code"]) for r in history] == [
        ("require_approval", "matched"),
        ("allow", APPROVED),
    ]
    assert history[0]["evaluated_at"] < history[1]["evaluated_at"]


def test_index_and_query_never_create_a_log_at_a_mistyped_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nosuch.db"
    index = str(tmp_path / "index")
    assert main(["audit", "index", "--log", f"sqlite:///{missing}", "--index", index]) != 0
    assert not missing.exists()
