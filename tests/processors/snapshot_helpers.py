"""Fold records for the state cache's snapshot tests, and a state's comparable content
(also used by the child process a kill test runs, so: no pytest here)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.state_snapshot import _SCALARS

T0 = 1_700_000_000.0
OWNER = "e1"


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def takeover(horizon_ms: int | None = 60_000) -> dict[str, Any]:
    return {
        "enforcer_id": OWNER,
        "agent_partitions": 4,
        "max_clock_skew_ms": None,
        "target": "default",
        "dedupe_horizon_ms": horizon_ms,
        "trust_root": None,
    }


def swap(bundle: str, longest_window_ms: int | None = 30_000) -> dict[str, Any]:
    return {
        "enforcer_id": OWNER,
        "bundle_id": bundle,
        "policy_offset": 3,
        "candidate_bundle_id": None,
        "mode": "stable",
        "canary_percent": 0,
        "canary_seed": None,
        "longest_window_ms": longest_window_ms,
    }


def decision(
    request_id: str,
    *,
    effect: str = "allow",
    code: str = "matched",
    event_time: float,
    evaluated_at: float,
    agent: str = "a",
    tool: str = "pay",
    amount: int = 1,
) -> dict[str, Any]:
    return {
        "enforcer_id": OWNER,
        "request_id": request_id,
        "agent_id": agent,
        "effect": effect,
        "code": code,
        "tool": tool,
        "args": {"amount": Decimal(amount), "currency": "EUR"},
        "event_time": at(event_time),
        "evaluated_at": at(evaluated_at),
        "approval_ticket": "ticket-" + request_id if effect == "require_approval" else None,
        "reasons": [],
    }


def nth_decision(i: int) -> dict[str, Any]:
    """The i-th decision of a long deterministic run: half a second apart, some late and
    some repeated ids, a few awaiting approval and answered later."""
    now = T0 + i * 0.5
    if i % 34 == 5:  # a follow-up for the request 5 before it (every other one waits)
        return decision(f"r{i - 5}", code="approved", event_time=now, evaluated_at=now)
    effect = "require_approval" if i % 17 == 0 else "allow" if i % 3 else "deny"
    return decision(
        f"r{i}",
        effect=effect,
        event_time=now - (i % 7) * 2.0,  # out of event-time order
        evaluated_at=now,
        agent=f"a{i % 5}",
        tool="pay" if i % 2 else "refund",
        amount=i % 100,
    )


def fold_run(state: PartitionState, start: int, end: int) -> None:
    """Fold records start..end-1 of the deterministic run (0: takeover, 1: swap)."""
    for i in range(start, end):
        if i == 0:
            state.fold("EnforcerTakeover", takeover(5_000), 0)
        elif i == 1:
            state.fold("RulesetSwap", swap("b1", 3_000), 1)
        else:
            state.fold("Decision", nth_decision(i), i)


def content(state: PartitionState) -> dict[str, Any]:
    """Everything a state holds that a decision can depend on, comparable with ==."""
    series: dict[tuple[str, str], list[tuple[float, Any]]] = {}
    for agent_id, tool, when, args in state.windows.history():
        series.setdefault((agent_id, tool), []).append((when, dict(args)))
    identity = state.identity
    return {
        "partition": state.partition,
        "scalars": {name: getattr(state, name) for name in _SCALARS},
        "horizon": dataclasses.asdict(state.horizon),
        "decided": list(state.decided.items()),
        "pending": dict(state.pending),
        "windows": series,
        "pruned_through": state.windows.pruned_through,
        "identity": None
        if identity is None
        else (identity.trust.fingerprint(), identity.registry_offset, list(identity.installed)),
    }
