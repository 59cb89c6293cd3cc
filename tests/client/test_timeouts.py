"""The caller's timeout bounds the whole call — opening, deciding, closing — whatever the
log is doing (another process holding the SQLite write lock, a broker down or paused),
and every failure is a documented error, never a raw sqlite3 or librdkafka one.

The bounds asserted are generous (a 1 s timeout must finish well under 10 s): before these
fixes each of these calls took the full 30 s SQLite busy timeout or Kafka ``timeout_s``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.client import CLIENT_TIMEOUT, TRANSPORT_ERROR, Client, SyncClient
from ordinance.streams import open_log
from ordinance.streams.errors import LogError
from ordinance.streams.kafka_broker import free_port, start_broker
from ordinance.streams.topics import ensure_topics

from .conftest import published

AGENT = "billing-bot"
ACTION = {"tool": "fs.read", "args": {"path": "/workspace/a"}}
BOUND_S = 10.0  # "within the timeout", generously: the unbounded calls took 30 s


def _hold(path: Path, *statements: str) -> subprocess.Popen[str]:
    """Another process that runs ``statements`` on the database and keeps its lock."""
    script = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        f"for s in {list(statements)!r}: c.execute(s)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture
def write_locked(log_url: str) -> Iterator[subprocess.Popen[str]]:
    """The log's write lock held by another process (as a busy writer would)."""
    holder = _hold(Path(log_url.removeprefix("sqlite:///")), "BEGIN IMMEDIATE")
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_locked_log_neither_blocks_nor_breaks_the_client(
    log_url: str, write_locked: subprocess.Popen[str]
) -> None:
    started = time.monotonic()
    # Opening an existing log needs no write lock (it used to wait 30 s for it and then
    # raise sqlite3.OperationalError).
    client = SyncClient(log_url, agent_id=AGENT)
    decision = client.decide(ACTION, timeout=1)
    assert (decision.effect, decision.code, decision.client_side) == ("deny", CLIENT_TIMEOUT, True)
    # The publisher is still waiting for the lock: close must not wait for it.
    client.close(timeout=1)
    assert time.monotonic() - started < BOUND_S
    # Once the lock is free the abandoned write finds the log closed and writes nothing:
    # its caller was told deny, so its intent must not reach the enforcer.
    write_locked.kill()
    write_locked.wait()
    publisher = client.client._engine._publisher  # the thread close() left behind
    publisher.join(60)
    assert not publisher.is_alive()
    assert published(log_url) == []


def test_opening_waits_at_most_open_timeout_and_raises_log_error(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with open_log(f"sqlite:///{path}") as log:
        ensure_topics(log)
    # A lock even readers wait for: the file back in rollback-journal mode, exclusively
    # locked by another process (opening switches it to WAL, which needs that lock).
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    holder = _hold(path, "BEGIN EXCLUSIVE", "PRAGMA user_version=1")
    try:
        started = time.monotonic()
        with pytest.raises(LogError, match="locked by another process"):
            Client(f"sqlite:///{path}", open_timeout=1)
        assert time.monotonic() - started < BOUND_S
    finally:
        holder.kill()
        holder.wait()


def _request(tmp_path: Path) -> str:
    request = {"agent": {"id": AGENT, "roles": ["billing"]}, "action": ACTION}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    return str(path)


def test_submit_on_a_locked_log_exits_within_its_timeout(
    tmp_path: Path,
    log_url: str,
    write_locked: subprocess.Popen[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    code = main(["submit", _request(tmp_path), "--log", log_url, "--timeout", "1", "--json"])
    assert time.monotonic() - started < BOUND_S  # was 30.7 s, exit 1, a raw traceback
    report = json.loads(capsys.readouterr().out)
    assert code == 8 and report["decision"]["code"] == CLIENT_TIMEOUT


def test_submit_with_the_broker_down_exits_within_its_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on the port: every metadata request waits for timeout_s (30 s).
    url = f"kafka://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = main(["submit", _request(tmp_path), "--log", url, "--timeout", "1", "--json"])
    assert time.monotonic() - started < BOUND_S  # was 30.6 s
    report = json.loads(capsys.readouterr().out)
    assert code == 8 and report["decision"]["effect"] == "deny"
    assert report["decision"]["code"] in (CLIENT_TIMEOUT, TRANSPORT_ERROR)


def test_a_log_that_does_not_exist_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mistyped = tmp_path / "ordnance.db"
    with pytest.raises(LogError, match="no embedded log at"):
        SyncClient(f"sqlite:///{mistyped}", agent_id=AGENT)
    args = ["submit", _request(tmp_path), "--log", f"sqlite:///{mistyped}", "--timeout", "1"]
    assert main(args) == 8
    assert "no embedded log at" in capsys.readouterr().err
    assert not mistyped.exists()
    # Asked for, it is created (empty: no topics, so a request is a transport error).
    with SyncClient(f"sqlite:///{mistyped}", create=True, agent_id=AGENT) as client:
        assert client.decide(ACTION, timeout=1).code == TRANSPORT_ERROR
    assert mistyped.exists()


@pytest.mark.parametrize("kind", ["directory", "not a database", "no such directory"])
def test_a_path_that_cannot_be_opened_is_a_log_error(tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        path = tmp_path
    elif kind == "not a database":
        path = tmp_path / "notes.txt"
        path.write_text("these are not the records you are looking for\n" * 100)
    else:
        path = tmp_path / "missing" / "log.db"
    for create in (False, True):
        with pytest.raises(LogError) as raised:
            Client(f"sqlite:///{path}", create=create)
        assert str(path) in str(raised.value)
        assert not isinstance(raised.value, sqlite3.Error)


@pytest.mark.kafka
def test_close_is_bounded_with_the_broker_paused(tmp_path: Path) -> None:
    broker = start_broker(log_path=tmp_path / "broker.log")  # our own: this test pauses it
    try:
        with open_log(broker.url) as log:
            ensure_topics(log)
        client = SyncClient(broker.url, agent_id=AGENT)
        # Nobody answers: the request is published and the decisions reader started.
        assert client.decide(ACTION, timeout=1).code == CLIENT_TIMEOUT
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            # Published, never acknowledged: close used to wait for it (flush, 28-35 s).
            assert client.decide(ACTION, timeout=1).client_side
            started = time.monotonic()
            client.close(timeout=1)
            assert time.monotonic() - started < BOUND_S
        finally:
            os.kill(broker.pid, signal.SIGCONT)
    finally:
        broker.stop()
