"""The agent client against a real log: round trips through the enforcer, many requests in
flight, and every way of not getting an answer ending in a client-side deny."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ordinance.client import (
    CLIENT_CLOSED,
    CLIENT_INVALID_REQUEST,
    CLIENT_TIMEOUT,
    TRANSPORT_ERROR,
    Client,
    ClientDecision,
    SyncClient,
)
from ordinance.errors import OrdinanceError
from ordinance.policy.decision import DENY, Decision
from ordinance.streams import Record, open_log, partition_for
from ordinance.streams.serde import Decoded, Serde
from ordinance.wire import decision_to_wire

from .conftest import DECISIONS, Pipeline, published

BILLING = {"agent_id": "billing-bot", "roles": ["billing"], "attributes": {"team": "finance"}}
# Where an answer is expected: generous, so a loaded shared machine does not turn a slow
# answer into a client-side deny (the timeout tests use their own short timeouts).
ANSWER = 10.0


def transfer(amount: str, country: str = "DE") -> dict[str, Any]:
    args = {"amount": amount, "currency": "EUR", "country": country, "iban": "DE00"}
    return {"tool": "payments.transfer", "args": args}


def decisions_by_request(url: str) -> Counter[str]:
    serde = Serde()
    with open_log(url) as log:
        found: Counter[str] = Counter()
        for record in log.read_to_end(DECISIONS):
            decoded = serde.decode_record(record)
            assert isinstance(decoded, Decoded)
            if decoded.name == "Decision":  # not the enforcer's takeover and swap records
                found[decoded.value["request_id"]] += 1
        return found


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_round_trip_allow_deny_and_approval(pipeline: Pipeline) -> None:
    async def run() -> list[ClientDecision]:
        async with Client(pipeline.url, **BILLING) as client:  # type: ignore[arg-type]
            return [
                await client.decide(transfer("50"), timeout=ANSWER),
                await client.decide(transfer("50", "KP"), timeout=ANSWER),
                await client.decide(transfer("20000"), timeout=ANSWER),
            ]

    allow, deny, approval = asyncio.run(run())
    assert (allow.effect, allow.rule_ids) == ("allow", ("payments-guardrails/small-ok",))
    assert (deny.effect, deny.rule_ids) == ("deny", ("payments-guardrails/block-sanctioned",))
    assert approval.effect == "require_approval"
    assert approval.obligations == ({"notify": "finance-oncall"},)  # as the policy wrote it
    for decision in (allow, deny, approval):
        assert isinstance(decision, Decision)  # what the rest of Ordinance consumes
        assert not decision.client_side
        assert decision.bundle_id == pipeline.bundle_id
        assert decision.enforcer_id == pipeline.enforcer_id
        assert decision.policy_offset is not None  # the enforced event it answered under
        # Answered on the partition the agent's key hashes to, where the action went.
        assert decision.action_partition == partition_for(b"billing-bot", 4)
    sent = pipeline.published()
    assert [a["request_id"] for a in sent] == [
        allow.request_id,
        deny.request_id,
        approval.request_id,
    ]
    assert {a["reply_to"] for a in sent} == {DECISIONS}
    assert {a["_partition"] for a in sent} == {partition_for(b"billing-bot", 4)}


def test_sync_client_and_a_full_request_naming_its_own_agent(pipeline: Pipeline) -> None:
    request = {
        "agent": {"id": "coder-1", "team": "eng"},
        "action": {"tool": "fs.read", "args": {"path": "/workspace/src/main.py"}},
    }
    with SyncClient(pipeline.url) as client:
        decision = client.decide(request, timeout=ANSWER)
        denied = client.decide(
            {**request, "action": {"tool": "fs.read", "args": {"path": "/etc/x"}}},
            timeout=ANSWER,
        )
    assert decision.effect == "allow" and decision.rule_ids == ("filesystem-safety/workspace",)
    assert denied.effect == "deny"


def test_event_time_comes_from_the_injected_clock(pipeline: Pipeline) -> None:
    with SyncClient(pipeline.url, clock=lambda: 1_767_225_600.5, **BILLING) as client:
        assert client.decide(transfer("50"), timeout=ANSWER).effect == "allow"
    [action] = pipeline.published()
    assert action["event_time"] == dt.datetime(2026, 1, 1, 0, 0, 0, 500000, dt.UTC)


def test_two_hundred_concurrent_requests_are_each_answered_exactly_once(
    pipeline: Pipeline,
) -> None:
    agents = [f"agent-{i}" for i in range(8)]  # spread over several partitions

    async def run() -> list[ClientDecision]:
        async with Client(pipeline.url) as client:
            calls = [
                client.decide(
                    {
                        "agent": {"id": agents[i % 8], "team": "eng"},
                        "action": {"tool": "fs.read", "args": {"path": f"/workspace/f{i}"}},
                    },
                    timeout=20,
                )
                for i in range(200)
            ]
            answers = await asyncio.gather(*calls)
            assert client.stats()["in_flight"] == 0
            return answers

    answers = asyncio.run(run())
    assert all(a.effect == "allow" and not a.client_side for a in answers)
    ids = [a.request_id for a in answers]
    assert len(set(ids)) == 200
    on_log = decisions_by_request(pipeline.url)
    assert all(on_log[i] == 1 for i in ids)  # published once, decided once
    partitions = {partition_for(a.encode(), 4) for a in agents}
    assert {a.action_partition for a in answers} == partitions and len(partitions) > 1


def test_the_first_answer_wins_and_non_answers_on_the_partition_are_skipped(
    log_url: str,
) -> None:
    """No enforcer: the test answers by hand — garbage, a duplicate, a stranger's answer."""
    serde = Serde()

    def answer(log: Any, request_id: str, effect: str, partition: int) -> None:
        decision = Decision(effect, ("by-hand",), (), (), "sha256:test")
        datum = decision_to_wire(
            decision,
            request_id=request_id,
            agent_id="billing-bot",
            enforcer_id="hand",
            evaluated_at=dt.datetime.now(dt.UTC),
        )
        log.produce(
            DECISIONS,
            [Record(b"billing-bot", serde.encode("Decision", datum), partition=partition)],
        )

    async def run() -> ClientDecision:
        async with Client(log_url, **BILLING) as client:  # type: ignore[arg-type]
            waiting = asyncio.create_task(client.decide(transfer("50"), timeout=10))
            await asyncio.to_thread(wait_until, lambda: client.stats()["in_flight"] == 1)
            [action] = published(log_url)
            p = action["_partition"]
            with open_log(log_url) as log:
                log.produce(DECISIONS, [Record(b"billing-bot", b"\xc3\x01garbage", partition=p)])
                answer(log, "someone-else", "allow", p)
                answer(log, action["request_id"], DENY, p)
                answer(log, action["request_id"], "allow", p)  # a duplicate: ignored
            return await waiting

    decision = asyncio.run(run())
    assert (decision.effect, decision.rule_ids, decision.enforcer_id) == (
        "deny",
        ("by-hand",),
        "hand",
    )


def test_the_reader_starts_at_the_end_not_at_the_beginning(pipeline: Pipeline) -> None:
    with SyncClient(pipeline.url, **BILLING) as first:
        for _ in range(3):
            assert first.decide(transfer("50"), timeout=ANSWER).effect == "allow"
    p = partition_for(b"billing-bot", 4)
    with open_log(pipeline.url) as log:
        end = log.end_offsets(DECISIONS)[p]
    # Below the end: the enforcer's takeover and swap records and the first client's answers.
    assert end >= 5
    with SyncClient(pipeline.url, **BILLING) as second:
        assert second.decide(transfer("50"), timeout=ANSWER).effect == "allow"
        assert second.client.stats()["readers"] == {p: end}  # the history is not read


def test_no_answer_within_the_timeout_is_a_client_side_deny(log_url: str) -> None:
    async def run() -> tuple[ClientDecision, dict[str, Any]]:
        async with Client(log_url, **BILLING) as client:  # type: ignore[arg-type]
            decision = await client.decide(transfer("50"), timeout=0.3)
            return decision, client.stats()

    started = time.monotonic()
    decision, stats = asyncio.run(run())
    assert time.monotonic() - started < 5
    assert (decision.effect, decision.code, decision.client_side) == ("deny", CLIENT_TIMEOUT, True)
    assert decision.bundle_id == "" and decision.enforcer_id.startswith("client:")
    assert "0.3s" in decision.detail
    assert stats["in_flight"] == 0  # forgotten: a late answer finds nobody
    assert [a["request_id"] for a in published(log_url)] == [decision.request_id]


def test_sync_timeout(log_url: str) -> None:
    with SyncClient(log_url, **BILLING) as client:
        decision = client.decide(transfer("50"), timeout=0.2)
    assert (decision.effect, decision.code) == ("deny", CLIENT_TIMEOUT)


def test_a_log_without_the_topics_is_a_transport_error(tmp_path: Path) -> None:
    # create=True: without it a log that does not exist is an error (test_timeouts.py).
    with SyncClient(f"sqlite:///{tmp_path / 'empty.db'}", create=True, **BILLING) as client:
        decision = client.decide(transfer("50"))
    assert (decision.effect, decision.code, decision.client_side) == ("deny", TRANSPORT_ERROR, True)
    assert "does not exist" in decision.detail


def test_a_bad_log_url_raises_at_construction() -> None:
    with pytest.raises(OrdinanceError):
        Client("nosuch://x")


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (transfer("50") | {"args": {"amount": float("nan")}}, "exact decimal"),
        ({"tool": "fs.read", "args": {"path": b"/etc/passwd"}}, "bytes"),
        ({"tool": "fs.read", "args": {"paths": {"/a", "/b"}}}, "set"),
        ({"args": {}}, "neither a request"),
        ("fs.read", "expected a request"),
    ],
)
def test_what_cannot_be_sent_is_denied_and_never_published(
    pipeline: Pipeline, request_: Any, why: str
) -> None:
    with SyncClient(pipeline.url, **BILLING) as client:
        decision = client.decide(request_)
    assert (decision.effect, decision.code) == ("deny", CLIENT_INVALID_REQUEST)
    assert why in decision.detail
    assert pipeline.published() == []


def test_a_bare_action_needs_an_agent(pipeline: Pipeline) -> None:
    with SyncClient(pipeline.url) as client:
        decision = client.decide(transfer("50"))
    assert decision.code == CLIENT_INVALID_REQUEST and "no agent" in decision.detail


def test_decimal_amounts_travel_exactly(pipeline: Pipeline) -> None:
    with SyncClient(pipeline.url, **BILLING) as client:
        decision = client.decide(
            transfer("0") | {"args": {**transfer("0")["args"], "amount": Decimal("10000.01")}},
            timeout=ANSWER,
        )
    assert decision.effect == "require_approval"  # 10000.01 > 10000, not rounded down
    [action] = pipeline.published()
    assert action["action"]["args"]["amount"] == Decimal("10000.01")


def test_close_answers_what_is_in_flight_and_later_calls(log_url: str) -> None:
    async def run() -> tuple[ClientDecision, ClientDecision]:
        client = Client(log_url, **BILLING)  # type: ignore[arg-type]
        waiting = asyncio.create_task(client.decide(transfer("50"), timeout=30))
        await asyncio.to_thread(wait_until, lambda: client.stats()["in_flight"] == 1)
        started = time.monotonic()
        await client.aclose()
        assert time.monotonic() - started < 5
        return await waiting, await client.decide(transfer("50"))

    in_flight, after = asyncio.run(run())
    assert (in_flight.effect, in_flight.code) == ("deny", CLIENT_CLOSED)
    assert (after.effect, after.code) == ("deny", CLIENT_CLOSED)


def test_a_cancelled_caller_leaves_nothing_waiting(log_url: str) -> None:
    async def run() -> dict[str, Any]:
        async with Client(log_url, **BILLING) as client:  # type: ignore[arg-type]
            task = asyncio.create_task(client.decide(transfer("50"), timeout=30))
            await asyncio.to_thread(wait_until, lambda: client.stats()["in_flight"] == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return client.stats()

    assert asyncio.run(run())["in_flight"] == 0


def test_a_failed_reader_fails_its_callers_fast_and_is_replaced(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SyncClient(pipeline.url, **BILLING) as client:
        log = client.client._engine.log
        real = log.consumer
        calls: list[int] = []

        def broken_once(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise OSError("disk went away")
            return real(*args, **kwargs)

        monkeypatch.setattr(log, "consumer", broken_once)
        started = time.monotonic()
        failed = client.decide(transfer("50"), timeout=10)
        assert (failed.code, failed.client_side) == (TRANSPORT_ERROR, True)
        assert "disk went away" in failed.detail
        assert time.monotonic() - started < 5  # told at once, not after the timeout
        assert (
            client.decide(transfer("50"), timeout=ANSWER).effect == "allow"
        )  # a fresh reader took over


def test_a_late_answer_after_a_timeout_is_ignored(pipeline: Pipeline) -> None:
    with SyncClient(pipeline.url, **BILLING) as client:
        # Long enough to be published, too short for the answer: it arrives for nobody.
        hurried = client.decide(transfer("50"), timeout=0.002)
        assert (hurried.effect, hurried.code) == ("deny", CLIENT_TIMEOUT)
        assert client.decide(transfer("50"), timeout=ANSWER).effect == "allow"
        assert client.client.stats()["in_flight"] == 0
