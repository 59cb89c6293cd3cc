"""The dashboard's two bounded views, folded from the decisions log: the rollout timeline
(swaps de-duplicated across partitions, canary regression alerts opening and resolving)
and the latest denials. Both keep the top N under a fixed key, so the same records give
the same timeline and denials whatever order the partitions are read in, and a long log
keeps only the last N."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.processors.monitor.canary import CANARY_REGRESSION
from ordinance.processors.monitor.config import MonitorConfig
from ordinance.processors.monitor.fold import MonitorState, fold_all
from ordinance.processors.monitor.http import report
from ordinance.processors.monitor.runner import Monitor
from ordinance.processors.monitor.views import TEXT_LIMIT, RecentDenials, Timeline
from ordinance.streams import open_log
from tests.processors.monitor.helpers import (
    BUNDLE,
    T0,
    armed,
    canary_swap,
    decision,
    write_records,
)

CANDIDATE = "sha256:" + "cd" * 32
SMALL_CANARY = MonitorConfig.from_mapping({"canary": {"min_samples": 5}})
Rec = tuple[int, int, str, dict[str, Any]]


def _stable_swap(policy_offset: int, at: dt.datetime, bundle: str = BUNDLE) -> dict[str, Any]:
    swap = canary_swap(CANDIDATE, stable=bundle)
    swap.update(
        policy_offset=policy_offset,
        mode="stable",
        candidate_bundle_id=None,
        canary_percent=0,
        canary_seed=None,
        auto_rollback=False,
        at=at,
    )
    return swap


def _rollout() -> list[Rec]:
    """A canary (policy.changes offset 7) swapped in on partitions 0 and 1, regressing on
    partition 0, then ended by a stable swap (offset 9) on both."""
    records: list[Rec] = []
    for partition in (0, 1):
        swap = canary_swap(CANDIDATE, percent=20, auto=True)
        swap["at"] = T0 + dt.timedelta(milliseconds=partition)
        records.append((partition, 0, "RulesetSwap", swap))
    for n in range(60):
        arm = "canary" if n % 2 == 0 else "control"
        records.append((0, 1 + n, "Decision", armed(n, arm, arm == "canary", CANDIDATE)))
    end = T0 + dt.timedelta(minutes=5)
    records.append((0, 61, "RulesetSwap", _stable_swap(9, end)))
    records.append((1, 1, "RulesetSwap", _stable_swap(9, end + dt.timedelta(seconds=1))))
    return records


def test_the_timeline_merges_a_change_across_partitions_and_shows_the_canary_alerts() -> None:
    state = MonitorState(SMALL_CANARY)
    alerts = fold_all(state, _rollout())
    assert [a["kind"] for a in alerts] == [CANARY_REGRESSION, f"{CANARY_REGRESSION}_resolved"]
    entries = [entry for _, entry in state.timeline.items()]
    assert [(e["event"], e["policy_offset"]) for e in entries] == [
        ("swap", 7),
        (CANARY_REGRESSION, 7),
        ("swap", 9),
        (f"{CANARY_REGRESSION}_resolved", 9),  # the swap that ended the canary resolved it
    ]
    canary, opened, stable, resolved = entries
    assert {k: canary[k] for k in canary if k not in ("at", "last_at")} == {
        "event": "swap",
        "policy_offset": 7,
        "bundle_id": BUNDLE,
        "mode": "canary",
        "candidate_bundle_id": CANDIDATE,
        "canary_percent": 20,
        "auto_rollback": True,
        "partitions": [0, 1],
        "swaps": 2,
    }
    assert (canary["at"], canary["last_at"]) == (T0, T0 + dt.timedelta(milliseconds=1))
    assert opened["alert_id"] == alerts[0]["alert_id"] and opened["partition"] == 0
    assert opened["candidate_bundle_id"] == CANDIDATE and "denies" in opened["message"]
    assert (stable["mode"], stable["candidate_bundle_id"], stable["partitions"]) == (
        "stable",
        None,
        [0, 1],
    )
    assert resolved["opened_by"] == opened["alert_id"]


def test_recent_denials_carry_what_a_person_needs_and_clip_long_strings() -> None:
    state = MonitorState()
    denied = decision(1, at=T0, effect="deny", rule="payments-guardrails/limit")
    denied.update(reasons=["over the limit", "second"], agent_id="a" * 1000, arm="canary")
    records: list[Rec] = [
        (0, 0, "Decision", decision(0, at=T0)),  # an allow: not a denial
        (0, 1, "Decision", denied),
        (2, 0, "Decision", decision(2, at=T0, effect="deny", code="no_ruleset", rule=None)),
    ]
    fold_all(state, records)
    newest, older = state.denials.latest()  # same time: partition 2 sorts after 0
    assert (newest["partition"], newest["code"], newest["reason"]) == (2, "no_ruleset", None)
    assert older == {
        "at": T0,
        "partition": 0,
        "offset": 1,
        "request_id": "req-1",
        "agent_id": "a" * (TEXT_LIMIT - 1) + "…",
        "tool": "payments.transfer",
        "code": "matched",
        "rule_ids": ["payments-guardrails/limit"],
        "reason": "over the limit",
        "reasons": 2,
        "detail": "",
        "bundle_id": BUNDLE,
        "arm": "canary",
    }


# -- bounded and deterministic ----------------------------------------------------------

events = st.lists(
    st.tuples(st.sampled_from(["swap", "allow", "deny"]), st.integers(0, 30), st.booleans()),
    max_size=80,
)


def _partition_records(partition: int, items: list[tuple[str, int, bool]]) -> list[Rec]:
    out: list[Rec] = []
    for offset, (kind, n, flag) in enumerate(items):
        at = T0 + dt.timedelta(seconds=n)
        if kind == "swap":  # a few changes, each swapped in on several partitions
            swap = canary_swap(CANDIDATE, percent=10 + n % 3, auto=flag)
            swap.update(policy_offset=n % 7, at=at)
            if flag:
                swap.update(mode="stable", candidate_bundle_id=None, canary_percent=0)
            out.append((partition, offset, "RulesetSwap", swap))
        else:
            d = decision(offset, at=at, effect=kind, tool=f"tool-{n}")
            if flag:
                d["arm"] = "canary" if n % 2 else "control"
            out.append((partition, offset, "Decision", d))
    return out


def _fold(records: list[Rec], limit: int) -> tuple[Any, list[dict[str, Any]]]:
    state = MonitorState(SMALL_CANARY)
    state.timeline, state.denials = Timeline(limit), RecentDenials(limit)
    fold_all(state, records)
    return state.timeline.items(), state.denials.latest()


@settings(max_examples=80, deadline=None)
@given(st.lists(events, min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_the_views_are_bounded_and_do_not_depend_on_interleaving(
    per_partition: list[list[tuple[str, int, bool]]], rnd: Any
) -> None:
    streams = [_partition_records(p, items) for p, items in enumerate(per_partition)]
    in_order = [r for s in streams for r in s]
    queues = [list(s) for s in streams]
    mixed: list[Rec] = []
    while any(queues):
        q = rnd.choice([q for q in queues if q])
        mixed.append(q.pop(0))
    limit = 4
    timeline, denials = _fold(in_order, limit)
    assert _fold(mixed, limit) == (timeline, denials)  # same records, same views
    # Bounded: the last `limit` of what an unbounded fold keeps, each entry complete.
    full_timeline, full_denials = _fold(in_order, 10_000)
    assert timeline == full_timeline[-limit:]
    assert denials == full_denials[:limit]  # newest first
    deny_keys = sorted(
        ((d["evaluated_at"], p, o) for p, o, name, d in in_order if _denied(name, d)),
        reverse=True,
    )
    assert [(d["at"], d["partition"], d["offset"]) for d in full_denials] == deny_keys


def _denied(name: str, datum: dict[str, Any]) -> bool:
    return name == "Decision" and datum["effect"] == "deny"


# -- in the report ----------------------------------------------------------------------


def test_the_report_carries_the_timeline_with_the_rollbacks_and_the_denials(
    tmp_path: Path,
) -> None:
    records = [("RulesetSwap", canary_swap(CANDIDATE, percent=50, auto=True))]
    for n in range(40):
        arm = "canary" if n % 2 == 0 else "control"
        records.append(("Decision", armed(n, arm, arm == "canary", CANDIDATE)))
    # The swap back, caused by the rolled_back change at policy.changes offset 8.
    records.append(("RulesetSwap", _stable_swap(8, T0 + dt.timedelta(minutes=5))))
    with open_log(f"sqlite:///{tmp_path / 'log.db'}") as log:
        write_records(log, records)
        monitor = Monitor(log, config=SMALL_CANARY, read_only=True)
        monitor.fold_to_end()
    [opened] = [a for a in monitor.state.timeline.entries.values() if a["event"] != "swap"][:1]
    # What the monitor process records when it writes a rollback (policy.changes offset 8).
    monitor.rollbacks.append(
        {
            "candidate": CANDIDATE,
            "policy_offset": 7,
            "alert_id": opened["alert_id"],
            "change_offset": 8,
            "reason": f"{opened['alert_id']}: {opened['message']}",
            "at": T0 + dt.timedelta(seconds=20),
        }
    )
    served = json.loads(json.dumps(report(monitor)))
    assert [(e["event"], e["policy_offset"]) for e in served["timeline"]] == [
        ("swap", 7),
        (CANARY_REGRESSION, 7),
        ("rolled_back", 8),  # the change the monitor wrote, before what it caused:
        ("swap", 8),
        (f"{CANARY_REGRESSION}_resolved", 8),
    ]
    rollback = served["timeline"][2]
    assert rollback == {
        "event": "rolled_back",
        "policy_offset": 8,
        "at": "2026-03-01T12:00:20+00:00",
        "candidate_bundle_id": CANDIDATE,
        "rollout_policy_offset": 7,
        "alert_id": opened["alert_id"],
        "message": f"{opened['alert_id']}: {opened['message']}",
    }
    assert served["timeline"][0]["at"] == "2026-03-01T12:00:00+00:00"
    denials = served["denials"]
    assert len(denials) == 20 and all(d["arm"] == "canary" for d in denials)
    assert [d["offset"] for d in denials] == list(range(39, 0, -2))  # newest first
    assert denials[0]["bundle_id"] == CANDIDATE and denials[0]["at"].startswith("2026-03-01")
