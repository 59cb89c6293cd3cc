"""The client on the real local Kafka-protocol broker: the same round trip through the
published bundle and the enforcer, where the watermark may be under-reported and fetches
always wait their full time."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from ordinance.client import CLIENT_TIMEOUT, TRANSPORT_ERROR, Client, ClientDecision, SyncClient
from ordinance.streams import open_log
from ordinance.streams.kafka_broker import LocalBroker, start_broker
from ordinance.streams.topics import ensure_topics

from .conftest import Bundle, enforcer_thread, publish


@pytest.mark.kafka
def test_round_trip_on_kafka(kafka_broker: LocalBroker, example_bundle: Bundle) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}."  # the broker is shared by the session
    with open_log(kafka_broker.url) as log:
        ensure_topics(log, prefix)
        publish(log, example_bundle, prefix)

    async def run(client: Client) -> list[ClientDecision]:
        first = await client.decide(
            {"tool": "fs.read", "args": {"path": "/workspace/a"}}, timeout=20
        )
        # Then many in flight at once, from agents on every partition: one reader each,
        # every reader starting from a (possibly under-reported) watermark.
        rest = await asyncio.gather(
            *[
                client.decide(
                    {
                        "agent": {"id": f"coder-{i % 8}", "team": "eng"},
                        "action": {"tool": "fs.read", "args": {"path": path}},
                    },
                    timeout=20,
                )
                for i, path in enumerate(
                    ["/workspace/../etc/shadow"] + [f"/workspace/f{i}" for i in range(99)]
                )
            ]
        )
        return [first, *rest]

    async def session() -> list[ClientDecision]:
        async with Client(
            kafka_broker.url, agent_id="coder-1", attributes={"team": "eng"}, topic_prefix=prefix
        ) as client:
            return await run(client)

    with enforcer_thread(kafka_broker.url, prefix=prefix, group=f"{prefix}enforcer") as running:
        answers = asyncio.run(session())
    assert [a.effect for a in answers[:2]] == ["allow", "deny"]
    assert all(a.effect == "allow" for a in answers[2:])
    assert all(not a.client_side and a.bundle_id == example_bundle.bundle_id for a in answers)
    assert all(a.enforcer_id == running.enforcer.enforcer_id for a in answers)
    assert len({a.request_id for a in answers}) == len(answers)
    assert {a.action_partition for a in answers} == {0, 1, 2, 3}


@pytest.mark.kafka
def test_a_broker_that_goes_away_is_a_client_side_deny(tmp_path: Path) -> None:
    broker = start_broker(log_path=tmp_path / "broker.log")  # our own: this test kills it
    try:
        with open_log(broker.url) as log:
            ensure_topics(log)
        client = SyncClient(f"{broker.url}?timeout_s=1", agent_id="coder-1")
        # Nobody answers: the request is published and the partition's reader started.
        assert client.decide({"tool": "fs.read", "args": {"path": "/a"}}, timeout=1).code == (
            CLIENT_TIMEOUT
        )
    finally:
        broker.stop()
    started = time.monotonic()
    decision = client.decide({"tool": "fs.read", "args": {"path": "/a"}}, timeout=1.5)
    assert decision.effect == "deny" and decision.client_side
    assert decision.code in (CLIENT_TIMEOUT, TRANSPORT_ERROR)
    assert time.monotonic() - started < 3
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 10
