"""An enforcer drains a backlog of actions written a few at a time, as clients write them.

On the local Kafka broker a fetch returns only the batches it could list within the
fetch's wait, and listing takes time in proportion to the partition's batch count: at
the tail's ``fetch.wait.max.ms=5`` a partition of ~100k actions in batches of 1-10
returned nothing at all, to a consumer behind on it or at its end (`kafka_log`,
``bench/backlog_bench.py``). Writing that many takes a minute, so the Kafka test makes
the tail's wait 0 instead: the broker lists nothing in that time however short the
partition, the same stall on a backlog that takes a second to write. Without the
catch-up reader the enforcer does not even take its partitions over (it never reads
its own takeover marker back) and decides none of it; with it, everything is decided.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from streams_helpers import sqlite_url

from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import Record, open_log
from ordinance.streams.kafka_broker import LocalBroker
from ordinance.streams.serde import Serde
from ordinance.streams.topics import AGENT_ACTIONS, ensure_topics
from ordinance.wire import request_to_wire

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
#: Far more than a drain takes (~5 s on Kafka, with the group join and the takeovers);
#: a stalled drain decides nothing in it (or a few of a long backlog).
BOUND_S = 60.0


def _write_backlog(url: str, prefix: str, actions: int) -> None:
    """The example bundle in force, then ``actions`` intents in batches of 1-3, over two
    partitions (each partition costs the Kafka enforcer a takeover of ~1 s)."""
    files = read_bundle_dir(EXAMPLES)
    serde = Serde()
    rng = random.Random(3)
    now = dt.datetime.now(dt.UTC)
    with open_log(url) as log:
        topic = ensure_topics(log, prefix, agent_partitions=2)[AGENT_ACTIONS].name
        publish_bundle(log, files, compile_bundle(files).bundle_id, actor="test", prefix=prefix)
        run_controller(log, prefix=prefix, once=True)
        written = 0
        while written < actions:
            agent: dict[str, Any] = {"id": f"billing-{rng.randrange(8)}", "roles": ["billing"]}
            batch = []
            for n in range(written, min(actions, written + rng.randint(1, 3))):
                args = {"amount": str(10 + n % 900), "currency": "EUR", "country": "DE"}
                request = {"agent": agent, "action": {"tool": "payments.transfer", "args": args}}
                datum = request_to_wire(request, request_id=f"r{n}", event_time=now, client_id="t")
                batch.append(Record(agent["id"].encode(), serde.encode("ActionRequest", datum)))
            log.produce(topic, batch)
            written += len(batch)


def _drain(url: str, prefix: str, actions: int) -> None:
    """One enforcer decides all ``actions`` within BOUND_S."""
    stop = threading.Event()
    with open_log(url) as log:
        enforcer = Enforcer(log, prefix=prefix, group=f"{prefix}enforcer")
        worker = threading.Thread(target=lambda: enforcer.run(stop=stop), daemon=True)
        worker.start()
        try:
            deadline = time.monotonic() + BOUND_S
            while enforcer.report.decided < actions and worker.is_alive():
                assert time.monotonic() < deadline, (
                    f"{enforcer.report.decided} of {actions} decided in {BOUND_S}s"
                )
                time.sleep(0.1)
        finally:
            stop.set()
            worker.join(30)
    assert enforcer.report.decided == actions, "the enforcer stopped"


@pytest.mark.kafka
def test_a_backlog_in_tiny_batches_drains_on_kafka(kafka_broker: LocalBroker) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    _write_backlog(kafka_broker.url, prefix, 2000)
    _drain(f"{kafka_broker.url}?fetch.wait.max.ms=0", prefix, 2000)


def test_a_backlog_in_tiny_batches_drains_embedded(tmp_path: Path) -> None:
    # The embedded log has no fetch wait to stall on: a contract check, kept small.
    url = sqlite_url(tmp_path / "log.db")
    _write_backlog(url, "t.", 500)
    _drain(url, "t.", 500)
