"""Fault test: an enforcer under a steady stream of actions is SIGKILLed at random moments,
20 times on the embedded log and 6 on Kafka (where each kill costs a session timeout
before the next member gets the partitions); afterwards every action has exactly one decision and every decision equals a
from-scratch recomputation over the same actions (so budgets never double-count)."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.policy.ruleset import Ruleset
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.enforcer_state import PartitionState, decide
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import Log, Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics, topic_specs

from .test_enforcer import EXAMPLES, T0, transfer

KILLS = 20  # on the embedded log; Kafka: KAFKA_KILLS
# Each Kafka kill costs a session timeout; the freeze test (test_enforcer_freeze.py) takes
# partitions over on Kafka too, so six kills keep the Kafka run inside CI's budget.
KAFKA_KILLS = 6
ACTIONS = 240
SPECS = topic_specs()


def _produce_stream(url: str, done: threading.Event, interval_s: float) -> None:
    """A steady stream of transfers from three agents, with every 10th request re-sent."""
    serde = Serde()
    rng = random.Random(7)
    with open_log(url) as log:
        for i in range(ACTIONS):
            agent = ["billing-a", "billing-b", "billing-c"][i % 3]
            datum = transfer(f"q{i}", str(rng.choice([50, 900, 4000, 9500, 12000])), i)
            datum["agent"]["id"] = agent
            records = [
                Record(agent.encode(), serde.encode("ActionRequest", datum), (), int(T0 * 1000))
            ]
            if i % 10 == 9:
                records.append(records[0])  # the same request id again: must not be decided twice
            log.produce(SPECS[AGENT_ACTIONS].name, records)
            time.sleep(interval_s)  # the stream lasts about as long as the kills
    done.set()


def _serve(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # The stream's event times are T0 + minutes (2026-01-01), not the enforcer's clock:
        # no skew bound, and no horizon (they would all be older than a week).
        [
            sys.executable,
            "-m",
            "ordinance.cli",
            "serve",
            "--log",
            url,
            "--max-clock-skew",
            "off",
            "--dedupe-horizon",
            "off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _kill_repeatedly(url: str, lifetime_s: tuple[float, float], kills: int) -> None:
    rng = random.Random(11)
    for _ in range(kills):
        child = _serve(url)
        time.sleep(rng.uniform(*lifetime_s))
        child.send_signal(signal.SIGKILL)
        child.wait()


def _check(url: str) -> None:
    serde = Serde()
    files = read_bundle_dir(EXAMPLES)
    ruleset = compile_bundle(files)
    with open_log(url) as log:
        decisions: list[dict[str, Any]] = []
        for record in log.read_to_end(SPECS[AGENT_DECISIONS].name):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            if decoded.name == "Decision":
                decisions.append(decoded.value)
        counts = Counter(d["request_id"] for d in decisions)
        assert set(counts) == {f"q{i}" for i in range(ACTIONS)}, "an action has no decision"
        assert max(counts.values()) == 1, [rid for rid, n in counts.items() if n > 1]
        # the killed enforcers really were deciding when they died
        assert len({d["enforcer_id"] for d in decisions}) >= 3
        recomputed = recompute_effects(log, ruleset)
    logged = {d["request_id"]: d["effect"] for d in decisions}
    assert logged == recomputed
    assert Counter(logged.values())["deny"] > 0 and Counter(logged.values())["allow"] > 0


def recompute_effects(log: Log, ruleset: Ruleset) -> dict[str, str]:
    """From scratch: every action on the log, in partition order, through the same decide()
    with a fresh state per partition (so budgets count each request once); request id ->
    effect. Shared with the freeze test (test_enforcer_freeze.py)."""
    serde = Serde()
    recomputed: dict[str, str] = {}
    states: dict[int, PartitionState] = {}
    for record in log.read_to_end(SPECS[AGENT_ACTIONS].name):
        state = states.setdefault(
            record.partition, PartitionState(record.partition, bundle_id=ruleset.bundle_id)
        )
        datum = decide(
            state,
            ruleset,
            serde.decode_record(record, expect={"ActionRequest"}),
            action_offset=record.offset,
            agent_key=record.key,
            enforcer_id="recompute",
            evaluated_at=datum_time(),
        )
        if datum is not None:
            state.fold("Decision", datum, record.offset)
            recomputed[datum["request_id"]] = datum["effect"]
    return recomputed


def datum_time() -> dt.datetime:
    return dt.datetime.fromtimestamp(T0, dt.UTC)


def _run(url: str, lifetime_s: tuple[float, float], kills: int = KILLS) -> None:
    """``lifetime_s``: how long each enforcer lives before its SIGKILL. It must let a new
    member get partitions and decide (on Kafka a dead member holds its partitions until its
    6 s session expires), or the kills would test nothing; the check asserts they did."""
    files = read_bundle_dir(EXAMPLES)
    with open_log(url) as log:
        ensure_topics(log)
        publish_bundle(log, files, compile_bundle(files).bundle_id, actor="test")
        run_controller(log, once=True)
    done = threading.Event()
    interval = kills * sum(lifetime_s) / 2 / ACTIONS
    producer = threading.Thread(target=_produce_stream, args=(url, done, interval))
    producer.start()
    try:
        _kill_repeatedly(url, lifetime_s, kills)
    finally:
        producer.join()
    # A last, surviving enforcer drains the rest. On Kafka it first waits for the killed
    # members' sessions to expire, so wait for the decisions rather than for idleness.
    stop = threading.Event()
    with open_log(url) as log:
        survivor = threading.Thread(target=lambda: Enforcer(log).run(stop=stop))
        survivor.start()
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and len(_decided(url)) < ACTIONS:
                time.sleep(1.0)
        finally:
            stop.set()
            survivor.join()
    _check(url)


def _decided(url: str) -> set[str]:
    serde = Serde()
    with open_log(url) as log:
        return {
            decoded.value["request_id"]
            for record in log.read_to_end(SPECS[AGENT_DECISIONS].name)
            if isinstance(decoded := serde.decode_record(record), Decoded)
            and decoded.name == "Decision"
        }


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    # Short sessions: a killed member's partitions move on within a second.
    yield f"sqlite:///{tmp_path / 'log.db'}?session_timeout_ms=1000&heartbeat_interval_ms=100"


def test_sigkill_20_times_embedded(sqlite_url: str) -> None:
    _run(sqlite_url, (0.8, 2.0))


@pytest.mark.kafka
def test_sigkill_6_times_kafka() -> None:
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker:
        _run(broker.url, (5.0, 9.0), KAFKA_KILLS)
