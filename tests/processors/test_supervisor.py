"""Transient storage failures (`supervisor`): a processor whose log fails under it reports
unhealthy, restarts with backoff and resumes by itself; any other failure stops serve.
End to end: the embedded log locked by another process under a running ``serve``, then
released — the same process decides what came meanwhile, once each."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from ordinance.processors import supervisor as sup
from ordinance.processors.supervisor import Supervisor
from ordinance.streams import Log, Record, open_log
from ordinance.streams.errors import LogError
from ordinance.streams.serde import Serde
from ordinance.streams.topics import AGENT_ACTIONS, topic_specs
from tests.commands.test_service_signals import started, wait_ready
from tests.processors.http_client import http_get
from tests.processors.serve_process import decision_ids, serve_config
from tests.processors.test_enforcer import EXAMPLES, T0, publish, transfer

SPECS = topic_specs()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_transient_failures_restart_with_backoff_and_health_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sup, "BACKOFF_S", 0.01)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    stop = threading.Event()
    clock = _Clock()
    runs: list[str] = []
    seen_problems: list[list[str]] = []

    def work(log: Log) -> None:
        runs.append("run")
        if len(runs) <= 2:
            raise LogError("attempt to write a readonly database")
        seen_problems.append(supervisor.problems())  # running again, not yet proven healthy
        clock.now += sup.HEALTHY_AFTER_S + 1
        seen_problems.append(supervisor.problems())
        stop.set()

    supervisor = Supervisor("enforcer", lambda: open_log(url), work, stop, monotonic=clock)
    supervisor.run()
    assert len(runs) == 3 and supervisor.restarts == 2 and supervisor.fatal is None
    assert seen_problems[0] == [
        "enforcer restarting (attempt 2): LogError: attempt to write a readonly database"
    ]
    assert seen_problems[1] == []


def test_a_failure_that_is_not_the_storage_stops_everything(tmp_path: Path) -> None:
    stop = threading.Event()

    def work(log: Log) -> None:
        raise ValueError("another target holds partition 0")

    url = f"sqlite:///{tmp_path / 'log.db'}"
    supervisor = Supervisor("enforcer", lambda: open_log(url), work, stop)
    supervisor.run()
    assert stop.is_set() and isinstance(supervisor.fatal, ValueError)
    assert supervisor.restarts == 0
    assert supervisor.problems() == [
        "enforcer stopped: ValueError: another target holds partition 0"
    ]


def test_serve_rides_out_a_locked_log_and_decides_what_came_meanwhile(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    # Writers give up on a held lock after 0.3 s, so the lock is a storage failure here.
    url = f"sqlite:///{db}?busy_timeout_s=0.3&session_timeout_ms=2000&heartbeat_interval_ms=200"
    publish(url, EXAMPLES)
    config = serve_config(tmp_path, url)
    serde = Serde()
    with started("serve", config) as serve:
        base = serve.base_url("metrics and health on http://")
        wait_ready(base)
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            serve.wait_for("restarting in", timeout=30)
            assert http_get(base + "/healthz")[0] == 503
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        actions = [transfer(f"m{i}", "50", i) for i in range(20)]
        with open_log(f"sqlite:///{db}") as log:
            log.produce(
                SPECS[AGENT_ACTIONS].name,
                [
                    Record(
                        a["agent"]["id"].encode(),
                        serde.encode("ActionRequest", a),
                        (),
                        int(T0 * 1000),
                    )
                    for a in actions
                ],
            )
        deadline = time.monotonic() + 60
        while len(set(decision_ids(url))) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        decided = decision_ids(url)
        assert sorted(decided) == sorted(f"m{i}" for i in range(20))  # each exactly once
        assert serve.child.poll() is None  # the same process, never restarted by hand
        deadline = time.monotonic() + 30
        while http_get(base + "/healthz")[0] != 200:
            assert time.monotonic() < deadline, http_get(base + "/healthz")
            time.sleep(0.5)
        code, _ = serve.terminate()
    assert code == 0, "".join(serve.seen)
