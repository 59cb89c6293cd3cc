"""The monitor and a zombie writer (docs/monitor.md, "Fenced writes"): records an enforcer
wrote after another enforcer's takeover marker were never acted on, so they count as no
decision, raise no alert, start no canary and show as no denial; they are counted apart
(``ordinance_monitor_fenced_records_total``). On the fold with synthetic records, and with
the monitor process on a log where a frozen enforcer resumed (the embedded log)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ordinance.processors.monitor.fold import MonitorState, fold_all
from ordinance.processors.monitor.http import MonitorCollector, report
from ordinance.processors.monitor.runner import Monitor
from ordinance.streams import open_log
from ordinance.streams.topics import AGENT_DECISIONS, ensure_topics
from tests.processors.audit.zombie_helpers import ZOMBIE, take_over, zombie_then_owner
from tests.processors.monitor.helpers import T0, canary_swap, decision

Folded = tuple[int, int, str, dict[str, Any]]


def _takeover(enforcer: str) -> dict[str, Any]:
    return {"enforcer_id": enforcer, "partition": 0, "at": T0}


def _by(enforcer: str, datum: dict[str, Any]) -> dict[str, Any]:
    return {**datum, "enforcer_id": enforcer}


def _zombie_log(owner_after: str) -> tuple[list[Folded], int]:
    """Partition 0: "e" takes over and decides 30 allows; ``owner_after`` takes over; "e"
    (a zombie when that is someone else) decides 40 requests as fail-closed denies and
    swaps in a canary; then "B" decides the same 40 requests as allows. (records, the
    number of the zombie's writes)"""
    at = [T0 + dt.timedelta(milliseconds=100 * i) for i in range(70)]
    records: list[tuple[str, dict[str, Any]]] = [("EnforcerTakeover", _takeover("e"))]
    records += [("Decision", decision(i, at=at[i])) for i in range(30)]
    records.append(("EnforcerTakeover", _takeover(owner_after)))
    zombie = [
        decision(i, at=at[i], effect="deny", code="no_ruleset", tool="", rule=None)
        for i in range(30, 70)
    ]
    records += [("Decision", d) for d in zombie]
    records.append(("RulesetSwap", canary_swap("sha256:" + "cd" * 32, auto=True)))
    records += [("Decision", _by("B", decision(i, at=at[i]))) for i in range(30, 70)]
    return [(0, o, name, d) for o, (name, d) in enumerate(records)], len(zombie) + 1


def test_the_fold_leaves_a_zombies_writes_out_and_counts_them() -> None:
    records, zombie_writes = _zombie_log(owner_after="B")
    state = MonitorState()
    assert fold_all(state, records) == []
    assert state.totals() == {"allow": 70}  # each request once: the owner's answer
    assert state.fenced == {(0, "e"): zombie_writes}
    assert state.canaries == {} and state.timeline.items() == []  # the zombie's swap
    assert state.denials.latest() == []
    assert state.decided_through == {0: 70}
    assert state.positions == {0: len(records)}  # consumed, all the same
    # Had "e" still owned the partition, the same denies would be a fail-closed spike.
    owned, _ = _zombie_log(owner_after="e")
    spiking = MonitorState()
    assert "fail_closed_spike" in {a["kind"] for a in fold_all(spiking, owned)}
    assert spiking.fenced == {(0, "B"): 40}  # now B's records are the foreign ones


def test_without_a_takeover_marker_nothing_is_fenced() -> None:
    """A log written before takeover markers (or whose markers retention removed)."""
    state = MonitorState()
    records = [
        (0, 0, "Decision", decision(0, at=T0)),
        (0, 1, "Decision", _by("B", decision(1, at=T0))),
    ]
    fold_all(state, records)
    assert state.totals() == {"allow": 2} and state.fenced == {}


def _scrape(monitor: Monitor) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Counter samples per family: (labels, value)."""
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor))
    text = generate_latest(registry).decode()
    return {
        family.name: [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")]
        for family in text_string_to_metric_families(text)
    }


def test_the_monitor_process_skips_a_resumed_enforcers_decisions_across_a_restart(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        takeover = take_over(url, log, tmp_path)
        zombie_then_owner(takeover)
        partition = str(takeover.partition)
        ends = log.end_offsets(ensure_topics(log)[AGENT_DECISIONS].name)

        def caught_up(state: MonitorState) -> bool:
            return all(state.positions.get(p, 0) >= end for p, end in ends.items())

        for run in range(2):  # the second resumes from the first's commit, folding quietly
            monitor = Monitor(log, clock=T0.timestamp)
            monitor.run(threading.Event(), until=caught_up)
            scraped = _scrape(monitor)
            fenced = {"partition": partition, "enforcer": ZOMBIE}
            assert scraped["ordinance_monitor_fenced_records"] == [(fenced, 2.0)], run
            assert sum(n for _, n in scraped["ordinance_decisions"]) == 5  # q0..q4, once each
            shown = report(monitor)
            assert shown["fenced"] == [
                {"partition": takeover.partition, "enforcer_id": ZOMBIE, "records": 2}
            ]
            assert [d["request_id"] for d in shown["denials"]] == ["q4"]  # the owner's
            assert monitor.alerts_written == 0
