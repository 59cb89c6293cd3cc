"""Decision records for the monitor's tests: synthetic traffic with known counts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ordinance.streams import Log, Record
from ordinance.streams.serde import Serde
from ordinance.streams.topics import AGENT_DECISIONS, ensure_topics

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
BUNDLE = "sha256:" + "ab" * 32


def decision(
    n: int,
    *,
    at: dt.datetime,
    effect: str = "allow",
    code: str = "matched",
    tool: str = "payments.transfer",
    rule: str | None = "payments-guardrails/small-ok",
    latency_ms: int = 3,
    bundle: str = BUNDLE,
) -> dict[str, Any]:
    return {
        "request_id": f"req-{n}",
        "agent_id": "billing-bot-7",
        "effect": effect,
        "rule_ids": [rule] if rule else [],
        "reasons": [],
        "code": code,
        "detail": "",
        "obligations": [],
        "bundle_id": bundle,
        "policy_offset": 1,
        "evaluated_at": at,
        "enforcer_id": "e",
        "action_offset": n,
        "prev_hash": None,
        "hash": None,
        "tool": tool,
        "args": {},
        "event_time": at - dt.timedelta(milliseconds=latency_ms),
        "approval_ticket": None,
    }


def traffic(
    count: int,
    *,
    start: dt.datetime = T0,
    every_ms: int = 100,
    deny_from: int | None = None,
    fail_closed_from: int | None = None,
) -> list[dict[str, Any]]:
    """``count`` decisions ``every_ms`` apart: allows, then denies from ``deny_from``
    (a policy deciding differently: drift), or fail-closed denies from ``fail_closed_from``."""
    out = []
    for i in range(count):
        at = start + dt.timedelta(milliseconds=every_ms * i)
        if fail_closed_from is not None and i >= fail_closed_from:
            out.append(decision(i, at=at, effect="deny", code="no_ruleset", tool="", rule=None))
        elif deny_from is not None and i >= deny_from:
            out.append(decision(i, at=at, effect="deny", rule="payments-guardrails/limit"))
        else:
            out.append(decision(i, at=at))
    return out


def write_decisions(log: Log, decisions: list[dict[str, Any]], partition: int = 0) -> None:
    topic = ensure_topics(log)[AGENT_DECISIONS].name
    serde = Serde()
    records = [
        Record(d["agent_id"].encode(), serde.encode("Decision", d), (), 0, partition)
        for d in decisions
    ]
    for i in range(0, len(records), 500):
        log.produce(topic, records[i : i + 500])


def write_records(log: Log, records: list[tuple[str, dict[str, Any]]], partition: int = 0) -> None:
    """Write (schema name, datum) records — Decisions and RulesetSwaps — in order."""
    topic = ensure_topics(log)[AGENT_DECISIONS].name
    serde = Serde()
    log.produce(
        topic,
        [Record(b"k", serde.encode(name, datum), (), 0, partition) for name, datum in records],
    )


def canary_swap(
    candidate: str, *, percent: int = 20, auto: bool = False, stable: str = BUNDLE
) -> dict[str, Any]:
    """A RulesetSwap starting a canary of ``candidate`` beside ``stable`` on partition 0."""
    return {
        "enforcer_id": "e",
        "partition": 0,
        "bundle_id": stable,
        "previous_bundle_id": None,
        "policy_offset": 7,
        "longest_window_ms": 0,
        "candidate_bundle_id": candidate,
        "mode": "canary",
        "canary_percent": percent,
        "canary_seed": candidate,
        "auto_rollback": auto,
        "at": T0,
        "prev_hash": None,
        "hash": None,
    }


def armed(
    n: int, arm: str, deny: bool, candidate: str, *, tool: str = "payments.transfer"
) -> dict[str, Any]:
    """A decision of a canary rollout: the candidate decides for the canary arm."""
    d = decision(
        n,
        at=T0 + dt.timedelta(seconds=n),
        effect="deny" if deny else "allow",
        bundle=candidate if arm == "canary" else BUNDLE,
        tool=tool,
    )
    d["arm"] = arm
    return d
