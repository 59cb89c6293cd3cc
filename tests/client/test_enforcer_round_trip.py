"""The client against the real enforcer (not the stand-in loop): the bundle is published
through policy.changes, and the decisions partition the client reads also carries the
enforcer's control records (takeover, ruleset swap), which are not answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from ordinance.client import Client, ClientDecision
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.policy_log import publish_bundle, run_controller
from ordinance.streams import open_log

from .conftest import EXAMPLES


@pytest.fixture
def enforcer(log_url: str) -> Iterator[tuple[Enforcer, str]]:
    files = read_bundle_dir(EXAMPLES)
    bundle_id = compile_bundle(files).bundle_id
    stop = threading.Event()
    with open_log(log_url) as log:
        publish_bundle(log, files, bundle_id, actor="test")
        run_controller(log, once=True)
        running = Enforcer(log)
        thread = threading.Thread(target=running.run, kwargs={"stop": stop}, daemon=True)
        thread.start()
        try:
            yield running, bundle_id
        finally:
            stop.set()
            thread.join()


def test_round_trip_through_the_enforcer(log_url: str, enforcer: tuple[Enforcer, str]) -> None:
    running, bundle_id = enforcer
    args = {"currency": "EUR", "iban": "DE00"}

    async def run() -> list[ClientDecision]:
        async with Client(
            log_url, agent_id="billing-bot", roles=["billing"], attributes={"team": "finance"}
        ) as client:
            # The first answer waits for the enforcer's takeover of the partition.
            first = await client.decide(
                {"tool": "payments.transfer", "args": {"amount": "50", "country": "DE", **args}},
                timeout=20,
            )
            rest = await asyncio.gather(
                *[
                    client.decide(
                        {
                            "tool": "Payments.TRANSFER",
                            "args": {"amount": "10", "country": c, **args},
                        },
                        timeout=20,
                    )
                    for c in ["KP", "DE", "IR", "FR"]
                ]
            )
            return [first, *rest]

    answers = asyncio.run(run())
    assert [a.effect for a in answers] == ["allow", "deny", "allow", "deny", "allow"]
    assert all(a.bundle_id == bundle_id and not a.client_side for a in answers)
    assert all(a.enforcer_id == running.enforcer_id for a in answers)
    assert all(a.policy_offset is not None for a in answers)
