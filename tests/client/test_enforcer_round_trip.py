"""The client against the real enforcer (not the stand-in loop): the bundle is published
through policy.changes, and the decisions partition the client reads also carries the
enforcer's control records (takeover, ruleset swap), which are not answers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from ordinance.client import (
    ActionDenied,
    ApprovalRequired,
    Client,
    ClientDecision,
    SyncClient,
    guard,
)
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.approvals import answer, pending_approvals
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


def approve_when_pending(url: str, *, approve: bool, timeout: float = 20) -> threading.Thread:
    """A human in another thread: answers the first pending approval once one appears."""

    def human() -> None:
        deadline = time.monotonic() + timeout
        with open_log(url) as log:
            while time.monotonic() < deadline:
                waiting = pending_approvals(log)
                if waiting:
                    answer(log, waiting[0]["request_id"], approve=approve, approver="dana")
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=human, daemon=True)
    thread.start()
    return thread


BIG = {"amount": "20000", "currency": "EUR", "country": "FR", "iban": "FR76"}
BILLING = {"agent_id": "billing-bot", "roles": ["billing"], "attributes": {"team": "finance"}}


def test_waiting_for_a_human_approval(log_url: str, enforcer: tuple[Enforcer, str]) -> None:
    async def run() -> tuple[ClientDecision, ClientDecision, ClientDecision]:
        async with Client(log_url, **BILLING) as client:  # type: ignore[arg-type]
            asked = await client.decide({"tool": "payments.transfer", "args": BIG}, timeout=20)
            human = approve_when_pending(log_url, approve=True)
            answered = await client.wait_for_approval(asked, timeout=20)
            human.join()
            # Waiting again after the answer arrived still gets it.
            again = await client.wait_for_approval(asked, timeout=1)
            return asked, answered, again

    asked, answered, again = asyncio.run(run())
    assert asked.effect == "require_approval" and asked.approval_ticket
    assert (answered.effect, answered.code) == ("allow", "approved")
    assert answered.request_id == asked.request_id
    assert answered.approval_ticket == asked.approval_ticket
    assert "dana" in answered.detail
    assert again == answered


def test_guard_runs_the_body_once_approved_and_never_when_rejected(
    log_url: str, enforcer: tuple[Enforcer, str]
) -> None:
    ran: list[str] = []
    with SyncClient(log_url, **BILLING) as client:

        @guard(tool="payments.transfer", client=client, timeout=20, approval_timeout=20)
        def transfer(amount: str, currency: str, country: str, iban: str) -> str:
            ran.append(amount)
            return "sent"

        human = approve_when_pending(log_url, approve=True)
        assert transfer(**BIG) == "sent"
        human.join()
        human = approve_when_pending(log_url, approve=False)
        with pytest.raises(ActionDenied) as denied:
            transfer(**BIG)
        human.join()
        assert denied.value.decision.code == "approval_rejected"
        # Nobody answers within the approval timeout: still ApprovalRequired, with the ticket.
        impatient = guard(tool="payments.transfer", client=client, approval_timeout=0.3)(
            transfer.__wrapped__  # type: ignore[attr-defined]
        )
        with pytest.raises(ApprovalRequired) as pending:
            impatient(**BIG)
        assert pending.value.ticket == pending.value.decision.approval_ticket
    assert ran == ["20000"]
