"""Two enforcers in one group split the partitions; when one leaves, the other takes its
partitions over with the marker protocol; no decision is lost or duplicated."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from ordinance.processors.enforcer import Enforcer
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS

from .test_enforcer import EXAMPLES, SPECS, T0, publish, transfer

ON_MEMORY_LOG = True  # also on memory:// (tests/processors/conftest.py)

AGENTS = [f"agent-{i}" for i in range(12)]  # keys spread over all four partitions


def _send(url: str, first: int, count: int) -> None:
    serde = Serde()
    with open_log(url) as log:
        records = []
        for i in range(first, first + count):
            datum = transfer(f"s{i}", "20", 0)
            datum["agent"]["id"] = AGENTS[i % len(AGENTS)]
            records.append(
                Record(
                    datum["agent"]["id"].encode(),
                    serde.encode("ActionRequest", datum),
                    (),
                    int(T0 * 1000),
                )
            )
        log.produce(SPECS[AGENT_ACTIONS].name, records)


def _decisions(url: str) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
    serde = Serde()
    decisions, takeovers = [], []
    with open_log(url) as log:
        for record in log.read_to_end(SPECS[AGENT_DECISIONS].name):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            if decoded.name == "Decision":
                decisions.append(decoded.value)
            elif decoded.name == "EnforcerTakeover":
                takeovers.append((record.partition, decoded.value))
    return decisions, takeovers


def _wait_for(url: str, count: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(_decisions(url)[0]) < count:
        time.sleep(0.5)


def _wait_for_owners(url: str, owners: set[str], timeout_s: float = 90.0) -> None:
    """Until the latest takeover marker of every partition names one of `owners` and each
    of them holds at least one partition: both members have joined and split the work."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        latest = {partition: m["enforcer_id"] for partition, m in _decisions(url)[1]}
        if len(latest) == SPECS[AGENT_DECISIONS].partitions and set(latest.values()) == owners:
            return
        time.sleep(0.2)
    raise AssertionError(f"the group never settled on {sorted(owners)}")


def _member(url: str, name: str, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        with open_log(url) as log:
            Enforcer(log, enforcer_id=name, clock=lambda: T0).run(stop=stop)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_members_split_partitions_and_take_over_on_leave(log_url: str) -> None:
    url = log_url
    publish(url, EXAMPLES)
    stop_a, stop_b = threading.Event(), threading.Event()
    a, b = _member(url, "enforcer-a", stop_a), _member(url, "enforcer-b", stop_b)
    try:
        _wait_for_owners(url, {"enforcer-a", "enforcer-b"})
        _send(url, 0, 120)
        _wait_for(url, 120)
        stop_a.set()  # a leaves the group: its partitions move to b
        a.join()
        _send(url, 120, 120)
        _wait_for(url, 240)
    finally:
        stop_a.set()
        stop_b.set()
        a.join()
        b.join()
    decisions, takeovers = _decisions(url)
    counts = Counter(d["request_id"] for d in decisions)
    assert set(counts) == {f"s{i}" for i in range(240)} and max(counts.values()) == 1
    first_half = {d["enforcer_id"] for d in decisions if int(d["request_id"][1:]) < 120}
    assert first_half == {"enforcer-a", "enforcer-b"}  # the partitions were split
    second_half = {d["enforcer_id"] for d in decisions if int(d["request_id"][1:]) >= 120}
    assert second_half == {"enforcer-b"}
    owners: dict[int, list[str]] = {}
    for partition, marker in takeovers:
        owners.setdefault(partition, []).append(marker["enforcer_id"])
    # every partition a had ended with a takeover by b
    assert all(names[-1] == "enforcer-b" for names in owners.values())
    assert any("enforcer-a" in names for names in owners.values())
