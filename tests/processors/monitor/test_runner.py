"""The monitor process on both backends: alerts written once (a restart resumes from the
committed position without repeating any), /metrics equal to counts recomputed from the
log, health endpoints, and the liveness alerts (an enforcer that stopped answering)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ordinance.processors.http_server import HttpServer
from ordinance.processors.monitor.config import MonitorConfig
from ordinance.processors.monitor.fold import MonitorState, fold_all
from ordinance.processors.monitor.http import build_app
from ordinance.processors.monitor.runner import SILENCE, Monitor
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, MONITOR_ALERTS, ensure_topics
from tests.processors.http_client import http_get
from tests.processors.monitor.helpers import T0, decision, traffic, write_decisions


def _alerts(log_url: str) -> list[dict[str, Any]]:
    serde = Serde()
    with open_log(log_url) as log:
        topic = ensure_topics(log)[MONITOR_ALERTS].name
        out = []
        for record in log.read_to_end(topic):
            decoded = serde.decode_record(record, expect={"Alert"})
            assert isinstance(decoded, Decoded)
            out.append(decoded.value)
        return out


def _caught_up(ends: dict[int, int]) -> Callable[[MonitorState], bool]:
    return lambda state: all(state.positions.get(p, 0) >= end for p, end in ends.items())


def _run_once(log_url: str, clock: list[float], ends: dict[int, int], **kwargs: Any) -> Monitor:
    with open_log(log_url) as log:
        monitor = Monitor(log, clock=lambda: clock[0], **kwargs)
        monitor.run(threading.Event(), until=_caught_up(ends))
        return monitor


def test_alerts_are_written_once_and_a_restart_does_not_repeat_them(log_url: str) -> None:
    first = traffic(3000, fail_closed_from=2000)
    with open_log(log_url) as log:
        write_decisions(log, first, partition=0)
    clock = [1e9]
    _run_once(log_url, clock, {0: 3000})
    written = _alerts(log_url)
    expected = fold_all(MonitorState(), [(0, i, "Decision", d) for i, d in enumerate(first)])
    assert [a["alert_id"] for a in written] == [a["alert_id"] for a in expected]
    assert {a["kind"] for a in written} == {"drift", "fail_closed_spike"}
    # More traffic: the spike ends. A new process folds the old records quietly.
    start = first[-1]["evaluated_at"] + dt.timedelta(milliseconds=100)
    second = [
        decision(3000 + i, at=start + dt.timedelta(milliseconds=100 * i)) for i in range(3000)
    ]
    with open_log(log_url) as log:
        write_decisions(log, second, partition=0)
    _run_once(log_url, clock, {0: 6000})
    everything = fold_all(
        MonitorState(), [(0, i, "Decision", d) for i, d in enumerate(first + second)]
    )
    again = _alerts(log_url)
    assert [a["alert_id"] for a in again] == [a["alert_id"] for a in everything]
    assert len({a["alert_id"] for a in again}) == len(again)  # nothing written twice
    later = {a["kind"] for a in again[len(written) :]}
    assert {"drift_resolved", "fail_closed_spike_resolved"} <= later


def test_metrics_equal_the_counts_recomputed_from_the_log(log_url: str) -> None:
    decisions = traffic(400, deny_from=300) + [
        decision(
            400 + i,
            at=T0 + dt.timedelta(seconds=50 + i),
            effect="deny",
            code="no_ruleset",
            tool="",
            rule=None,
        )
        for i in range(7)
    ]
    with open_log(log_url) as log:
        write_decisions(log, decisions[:200], partition=1)
        write_decisions(log, decisions[200:], partition=2)
        monitor = Monitor(log, read_only=True)
        monitor.fold_to_end()
        server = HttpServer(build_app(monitor), "127.0.0.1", 0)
        server.start()
        try:
            base = f"http://127.0.0.1:{server.bound_port}"
            status, body = http_get(base + "/metrics")
            assert status == 200
            families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            health = http_get(base + "/healthz")
            ready = http_get(base + "/readyz")
            report = json.loads(http_get(base + "/v1/report")[1])
        finally:
            server.stop()
        # Recount from the log itself.
        serde = Serde()
        expected: dict[tuple[str, str, str, str], float] = {}
        for record in log.read_to_end(ensure_topics(log)[AGENT_DECISIONS].name):
            value = serde.decode_record(record, expect={"Decision"})
            assert isinstance(value, Decoded)
            d = value.value
            key = (d["bundle_id"], d["tool"], d["effect"], d["code"])
            expected[key] = expected.get(key, 0) + 1
    scraped = {
        (s.labels["bundle"], s.labels["tool"], s.labels["effect"], s.labels["code"]): s.value
        for s in families["ordinance_decisions"].samples
        if s.name == "ordinance_decisions_total"
    }
    assert scraped == expected
    closed = {
        s.labels["code"]: s.value
        for s in families["ordinance_fail_closed"].samples
        if s.name.endswith("_total")
    }
    assert closed == {"no_ruleset": 7}
    latency = families["ordinance_decision_latency_seconds"]
    count = [s.value for s in latency.samples if s.name.endswith("_count")]
    assert count == [len(decisions)]
    assert health[0] == 200 and ready[0] == 200
    assert report["totals"] == {"allow": 300, "deny": 107, "fail_closed": 7}


def test_an_enforcer_that_stopped_answering_is_a_silence_alert(log_url: str) -> None:
    with open_log(log_url) as log:
        actions = ensure_topics(log)[AGENT_ACTIONS].name
        log.produce(actions, [Record(b"a", b"not judged yet", (), 0, 1) for _ in range(3)])
    config = MonitorConfig.from_mapping({"silence": {"after_s": 30}})
    clock = [1000.0]
    _run_once(log_url, clock, {}, config=config, check_every_s=0)  # starts waiting
    assert [a for a in _alerts(log_url) if a["kind"] == SILENCE] == []
    clock[0] += 31
    with open_log(log_url) as log:
        # A fresh process forgets the wait and starts waiting again.
        live = Monitor(log, config=config, clock=lambda: clock[0], check_every_s=0)
        live.run(threading.Event(), until=_caught_up({}))
        clock[0] += 31
        live.run(threading.Event(), until=_caught_up({}))
        [silence] = [a for a in _alerts(log_url) if a["kind"] == SILENCE]
        # (Kafka's end offsets are informational: the local broker may report fewer.)
        assert silence["details"]["partition"] == 1 and 1 <= silence["details"]["actions_end"] <= 3
        # The enforcer answers: the alert resolves.
        write_decisions(log, [decision(i, at=T0) for i in range(3)], partition=1)
        clock[0] += 1
        live.run(threading.Event(), until=_caught_up({1: 3}))
    assert [a["kind"] for a in _alerts(log_url) if a["kind"].startswith(SILENCE)] == [
        SILENCE,
        f"{SILENCE}_resolved",
    ]
