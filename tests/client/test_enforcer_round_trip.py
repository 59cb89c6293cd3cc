"""What the enforcer brings to the round trip: the decisions partition the client reads
also carries its control records (takeover, ruleset swap), which are not answers; a human's
approval becomes a follow-up decision; input that does not decode is denied, not skipped.

The module's tests share one log and enforcer, so each speaks for its own billing agent:
the daily budget counts approved transfers, and a pending approval is found by its agent."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from ordinance.client import (
    ActionDenied,
    ApprovalRequired,
    Client,
    ClientDecision,
    SyncClient,
    guard,
)
from ordinance.processors.approvals import answer, pending_approvals
from ordinance.processors.enforcer_state import UNDECODABLE
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde

from .conftest import ACTIONS, DECISIONS, Pipeline


def billing(agent_id: str) -> dict[str, Any]:
    return {"agent_id": agent_id, "roles": ["billing"], "attributes": {"team": "finance"}}


def test_round_trip_through_the_enforcer(pipeline: Pipeline) -> None:
    args = {"currency": "EUR", "iban": "DE00"}

    async def run() -> list[ClientDecision]:
        async with Client(pipeline.url, **billing("billing-bot")) as client:
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
    assert all(a.bundle_id == pipeline.bundle_id and not a.client_side for a in answers)
    assert all(a.enforcer_id == pipeline.enforcer_id for a in answers)
    assert all(a.policy_offset is not None for a in answers)


def approve_when_pending(
    url: str, agent_id: str, *, approve: bool, timeout: float = 20
) -> threading.Thread:
    """A human in another thread: answers the agent's first pending approval once one appears."""

    def human() -> None:
        deadline = time.monotonic() + timeout
        with open_log(url) as log:
            while time.monotonic() < deadline:
                waiting = [d for d in pending_approvals(log) if d["agent_id"] == agent_id]
                if waiting:
                    answer(log, waiting[0]["request_id"], approve=approve, approver="dana")
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=human, daemon=True)
    thread.start()
    return thread


BIG = {"amount": "20000", "currency": "EUR", "country": "FR", "iban": "FR76"}


def test_waiting_for_a_human_approval(pipeline: Pipeline) -> None:
    async def run() -> tuple[ClientDecision, ClientDecision, ClientDecision]:
        async with Client(pipeline.url, **billing("billing-waits")) as client:
            asked = await client.decide({"tool": "payments.transfer", "args": BIG}, timeout=20)
            human = approve_when_pending(pipeline.url, "billing-waits", approve=True)
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


def test_guard_runs_the_body_once_approved_and_never_when_rejected(pipeline: Pipeline) -> None:
    ran: list[str] = []
    with SyncClient(pipeline.url, **billing("billing-guarded")) as client:

        @guard(tool="payments.transfer", client=client, timeout=20, approval_timeout=20)
        def transfer(amount: str, currency: str, country: str, iban: str) -> str:
            ran.append(amount)
            return "sent"

        human = approve_when_pending(pipeline.url, "billing-guarded", approve=True)
        assert transfer(**BIG) == "sent"
        human.join()
        human = approve_when_pending(pipeline.url, "billing-guarded", approve=False)
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


def test_undecodable_actions_are_denied_on_their_partition(pipeline: Pipeline) -> None:
    serde = Serde()
    with open_log(pipeline.url) as log:
        [where] = log.produce(ACTIONS, [Record(b"agent-x", b"\xc3\x01garbage")])
        request_id = f"{UNDECODABLE}@{where.partition}:{where.offset}"
        deadline = time.monotonic() + 10
        while True:
            answers = [
                (record, decoded.value)
                for record in log.read_to_end(DECISIONS, [where.partition])
                if isinstance(decoded := serde.decode_record(record), Decoded)
                and decoded.name == "Decision"
                and decoded.value["request_id"] == request_id
            ]
            if answers:
                break
            assert time.monotonic() < deadline, "no decision for the undecodable action"
            time.sleep(0.02)
    [(record, decision)] = answers
    assert record.partition == where.partition
    assert (decision["effect"], decision["code"]) == ("deny", UNDECODABLE)
    assert decision["action_offset"] == where.offset
    assert decision["enforcer_id"] == pipeline.enforcer_id
