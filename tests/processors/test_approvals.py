"""Human approval: a require_approval decision carries a ticket (the request's content
hash); an Approval with that ticket causes one follow-up decision; nothing else does."""

from __future__ import annotations

import datetime as dt

import pytest

from ordinance.processors.approvals import NotPending, answer, pending_approvals
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.enforcer_state import APPROVAL_EXPIRED, APPROVAL_REJECTED, APPROVED
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Serde
from ordinance.streams.topics import AGENT_APPROVALS
from tests.processors.caught_up import run_caught_up

from .test_enforcer import EXAMPLES, SPECS, T0, decisions_log, publish, send, transfer

ON_MEMORY_LOG = True  # also on memory:// (tests/processors/conftest.py)


def enforce_at(url: str, now: float) -> None:
    with open_log(url) as log:
        run_caught_up(Enforcer(log, clock=lambda: now))


def test_approve_reject_expire_and_a_ticket_for_other_content(log_url: str) -> None:
    url = log_url
    publish(url, EXAMPLES)
    send(
        url,
        transfer("big1", "25000", 0),
        transfer("big2", "26000", 1),
        transfer("big3", "27000", 2),
    )
    enforce_at(url, T0)
    with open_log(url) as log:
        pending = pending_approvals(log)
        assert [d["request_id"] for d in pending] == ["big1", "big2", "big3"]
        tickets = {d["request_id"]: d["approval_ticket"] for d in pending}
        assert len(set(tickets.values())) == 3 and all(
            t.startswith("sha256:") for t in tickets.values()
        )
        # An approval carrying another request's ticket must not unlock big1.
        forged = {
            "request_id": "big1", "agent_id": "billing-bot", "verdict": "approved", "approver": "mallory",
            "reason": None, "at": dt.datetime.fromtimestamp(T0, dt.UTC), "expires_at": None, "ticket": tickets["big2"],
        }  # fmt: skip
        log.produce(
            SPECS[AGENT_APPROVALS].name,
            [Record(b"billing-bot", Serde().encode("Approval", forged))],
        )
        answer(
            log,
            "big1",
            approve=True,
            approver="bob",
            reason="known supplier",
            clock=lambda: T0 + 60,
        )
        answer(log, "big2", approve=False, approver="bob", clock=lambda: T0 + 60)
        answer(log, "big3", approve=True, approver="bob", expires_in_s=30, clock=lambda: T0 + 60)
        with pytest.raises(NotPending):
            answer(log, "no-such-request", approve=True, approver="bob")
    enforce_at(url, T0 + 120)  # big3's approval lapsed at T0 + 90
    follow_ups = [
        d
        for _, n, d in decisions_log(url)
        if n == "Decision" and d["code"] in (APPROVED, APPROVAL_REJECTED, APPROVAL_EXPIRED)
    ]
    assert [(d["request_id"], d["effect"], d["code"]) for d in follow_ups] == [
        ("big1", "allow", APPROVED),
        ("big2", "deny", APPROVAL_REJECTED),
        ("big3", "deny", APPROVAL_EXPIRED),
    ]
    assert "approved by bob: known supplier" in follow_ups[0]["reasons"]
    with open_log(url) as log:
        assert pending_approvals(log) == []
        with pytest.raises(NotPending):  # answered once; a second answer has nothing to bind to
            answer(log, "big1", approve=True, approver="bob")


def test_an_approved_transfer_counts_toward_the_budget(log_url: str) -> None:
    url = log_url
    publish(url, EXAMPLES)
    send(url, transfer("big", "45000", 0))
    enforce_at(url, T0)
    with open_log(url) as log:
        answer(log, "big", approve=True, approver="bob", clock=lambda: T0 + 60)
    enforce_at(url, T0 + 60)
    send(url, transfer("small", "6000", 10))  # 45000 approved + 6000 > 50000 per 24h
    enforce_at(url, T0 + 600)
    small = [d for _, n, d in decisions_log(url) if n == "Decision" and d["request_id"] == "small"]
    assert [(d["effect"], d["rule_ids"]) for d in small] == [
        ("deny", ["payments-guardrails/daily-budget"])
    ]
