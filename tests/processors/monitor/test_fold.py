"""The monitor's fold: counts equal the log, alerts carry checkable evidence, open once
per episode, and are a function of each partition's records alone — the same alerts at
the same offsets however the partitions interleave and wherever a restart cut the fold."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.processors.monitor.config import MonitorConfig
from ordinance.processors.monitor.fold import (
    DRIFT,
    FAIL_CLOSED_SPIKE,
    MonitorState,
    fold_all,
    two_proportion_z,
)
from tests.processors.monitor.helpers import T0, decision, traffic


def _fold(
    decisions: list[dict[str, Any]], partition: int = 0, state: MonitorState | None = None
) -> tuple[MonitorState, list[dict[str, Any]]]:
    state = state or MonitorState(MonitorConfig())
    records = [(partition, i, "Decision", d) for i, d in enumerate(decisions)]
    return state, fold_all(state, records)


def test_the_z_test_is_the_textbook_pooled_one() -> None:
    # 30 of 100 against 10 of 100: pooled p = 0.2, se = sqrt(.2*.8*(2/100)) = 0.05657
    z, p = two_proportion_z(30, 100, 10, 100)
    assert z == pytest.approx(0.2 / math.sqrt(0.2 * 0.8 * 0.02))
    assert p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert two_proportion_z(5, 10, 50, 100) == (0.0, 1.0)


def test_a_deny_rate_drift_opens_one_alert_with_its_evidence_and_resolves() -> None:
    # 20 min of allows at 10/s, then 2 min where most are denied, then allows again.
    calm = traffic(12_000)
    bad_start = T0 + dt.timedelta(minutes=20)
    bad = [
        decision(
            12_000 + i,
            at=bad_start + dt.timedelta(milliseconds=100 * i),
            effect="deny" if i % 4 else "allow",
        )
        for i in range(1200)
    ]
    after_start = bad_start + dt.timedelta(minutes=2)
    after = [
        decision(13_200 + i, at=after_start + dt.timedelta(milliseconds=100 * i))
        for i in range(1200)
    ]
    state, alerts = _fold(calm + bad + after)
    kinds = [a["kind"] for a in alerts]
    assert kinds == [DRIFT, f"{DRIFT}_resolved"], kinds
    opened = alerts[0]
    details = opened["details"]
    assert opened["alert_id"] == f"{DRIFT}:0:{details['offset']}"
    assert 12_000 <= details["offset"] < 12_600  # within one window of the change
    observed, baseline = float(details["observed_deny_rate"]), float(details["baseline_deny_rate"])
    assert observed - baseline >= 0.2 and float(details["p_value"]) < 0.001
    z, _ = two_proportion_z(
        round(observed * details["sample"]),
        details["sample"],
        round(baseline * details["baseline_sample"]),
        details["baseline_sample"],
    )
    assert float(details["z"]) == pytest.approx(z, rel=1e-6)  # a reviewer can recompute it
    assert opened["at"] == (calm + bad + after)[details["offset"]]["evaluated_at"]  # log time
    assert alerts[1]["details"]["opened_by"] == opened["alert_id"]
    assert not state.open()


def test_steady_noisy_traffic_raises_nothing() -> None:
    # 10 % denies, scattered: the rate wobbles but never drifts.
    noisy = [
        decision(
            i,
            at=T0 + dt.timedelta(milliseconds=100 * i),
            effect="deny" if (i * 7919) % 10 == 0 else "allow",
        )
        for i in range(30_000)
    ]
    _, alerts = _fold(noisy)
    assert alerts == []


def test_a_fail_closed_spike_is_an_alert() -> None:
    state, alerts = _fold(traffic(3000, fail_closed_from=2000))
    # Every fail-closed deny is a deny: the deny rate drifts too, and says so.
    assert sorted(a["kind"] for a in alerts) == [DRIFT, FAIL_CLOSED_SPIKE]
    [spike] = [a for a in alerts if a["kind"] == FAIL_CLOSED_SPIKE]
    details = spike["details"]
    assert details["fail_closed"] >= 20 and float(details["observed_fraction"]) >= 0.5
    assert state.totals()["fail_closed"] == 1000


def test_counts_are_the_log() -> None:
    decisions = traffic(500, deny_from=400)
    state, _ = _fold(decisions)
    assert state.decisions == {
        (decisions[0]["bundle_id"], "payments.transfer", "allow", "matched"): 400,
        (decisions[0]["bundle_id"], "payments.transfer", "deny", "matched"): 100,
    }
    assert state.latency_count == 500 and state.latency_buckets[2] == 500  # 3 ms: <= 5 ms
    assert state.positions == {0: 500}


partitions = st.lists(
    st.lists(st.sampled_from(["allow", "deny", "fail"]), min_size=0, max_size=300),
    min_size=1,
    max_size=3,
)


def _partition_traffic(
    effects: list[str], partition: int
) -> list[tuple[int, int, str, dict[str, Any]]]:
    out = []
    for i, effect in enumerate(effects):
        at = T0 + dt.timedelta(seconds=i)
        if effect == "fail":
            d = decision(i, at=at, effect="deny", code="clock_skew", tool="", rule=None)
        else:
            d = decision(i, at=at, effect=effect)
        out.append((partition, i, "Decision", d))
    return out


SMALL = MonitorConfig.from_mapping(
    {
        "window_s": 20,
        "baseline_s": 60,
        "drift": {"min_samples": 5, "min_baseline": 10},
        "fail_closed": {"min_count": 3},
    }
)


@settings(max_examples=60, deadline=None)
@given(partitions, st.randoms(use_true_random=False), st.integers(0, 900))
def test_alerts_do_not_depend_on_interleaving_or_restarts(
    per_partition: list[list[str]], rnd: Any, cut: int
) -> None:
    streams = [_partition_traffic(effects, p) for p, effects in enumerate(per_partition)]
    in_order = [r for s in streams for r in s]
    reference = fold_all(MonitorState(SMALL), in_order)
    # Interleave the partitions at random (each partition's own order kept).
    queues = [list(s) for s in streams]
    mixed = []
    while any(queues):
        q = rnd.choice([q for q in queues if q])
        mixed.append(q.pop(0))
    shuffled = fold_all(MonitorState(SMALL), mixed)
    key = lambda a: a["alert_id"]  # noqa: E731
    assert sorted(shuffled, key=key) == sorted(reference, key=key)
    # A restart: everything before the cut folded quietly, the rest for real.
    restarted = MonitorState(SMALL)
    fold_all(restarted, mixed[:cut])
    after_cut = fold_all(restarted, mixed[cut:])
    cut_ids = {(r[0], r[1]) for r in mixed[cut:]}
    expected = [
        a for a in shuffled if (a["details"]["partition"], a["details"]["offset"]) in cut_ids
    ]
    assert after_cut == expected
