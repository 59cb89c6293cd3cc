"""The dedupe horizon bounds a partition's state exactly (`state_horizon`): request ids
and window history older than the horizon are forgotten, an intent dated before it is
denied ``stale_request`` instead of being judged (so never judged twice), and every intent
still judged gets the decision an unpruned state would give."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.policy.ruleset import Ruleset
from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.state_horizon import PRUNE_STEP_S, STALE_REQUEST
from tests.processors.test_enforcer_checks import T0, _action, _decide, _home, ruleset

__all__ = ["ruleset"]  # the fixture, shared

HOUR = dt.timedelta(hours=1)
DAY_MS = 86_400_000


def _state(
    ruleset: Ruleset, horizon_ms: int | None, longest_ms: int | None = DAY_MS
) -> PartitionState:
    state = PartitionState(_home("b1"))
    takeover = {"nonce": "n", "agent_partitions": 4, "max_clock_skew_ms": None}
    state.fold("EnforcerTakeover", {**takeover, "dedupe_horizon_ms": horizon_ms}, 0)
    swap = {"bundle_id": ruleset.bundle_id, "policy_offset": 1, "longest_window_ms": longest_ms}
    state.fold("RulesetSwap", swap, 1)
    return state


def _send(
    state: PartitionState,
    ruleset: Ruleset,
    rid: str,
    at: dt.datetime,
    now: dt.datetime,
    amount: int = 9000,
) -> dict[str, Any] | None:
    return _decide(state, ruleset, _action(rid, "b1", at, amount), key=b"b1", now=now)


def test_an_intent_older_than_the_horizon_is_stale_and_never_judged_twice(ruleset: Ruleset) -> None:
    state = _state(ruleset, horizon_ms=3_600_000)
    first = _send(state, ruleset, "r1", T0, T0)
    assert first is not None and first["effect"] == "allow"
    assert _send(state, ruleset, "r1", T0, T0) is None  # inside the horizon: deduplicated
    later = _send(state, ruleset, "r2", T0 + 2 * HOUR, T0 + 2 * HOUR)
    assert later is not None and later["effect"] == "allow"
    assert "r1" not in state.decided  # forgotten: past the horizon
    again = _send(state, ruleset, "r1", T0, T0 + 2 * HOUR)  # the same intent, re-sent
    assert again is not None and (again["effect"], again["code"]) == ("deny", STALE_REQUEST)
    assert "dedupe horizon" in again["detail"]
    old = _send(state, ruleset, "r3", T0 + 30 * dt.timedelta(minutes=1), T0 + 2 * HOUR)
    assert old is not None and old["code"] == STALE_REQUEST
    edge = _send(state, ruleset, "r4", T0 + HOUR, T0 + 2 * HOUR)  # exactly the horizon
    assert edge is not None and edge["code"] != STALE_REQUEST


def test_state_stays_flat_once_the_horizon_is_reached(ruleset: Ruleset) -> None:
    state = _state(ruleset, horizon_ms=3_600_000, longest_ms=3_600_000)
    sizes = []
    for i in range(2000):
        at = T0 + dt.timedelta(seconds=10 * i)
        _send(state, ruleset, f"r{i}", at, at, amount=1)
        sizes.append((len(state.decided), state.windows.events()))
    # 10 s apart: the horizon holds ~360 ids, and window history ~720 events, plus one
    # prune step of slack — whether 500 or 2000 requests went by.
    bound_ids = 3600 / 10 + PRUNE_STEP_S / 10 + 1
    assert max(n for n, _ in sizes[500:]) <= bound_ids
    assert max(w for _, w in sizes[500:]) <= 2 * bound_ids
    assert sizes[-1][0] >= 3600 / 10  # and nothing inside the horizon was forgotten


def test_no_horizon_on_the_takeover_prunes_nothing_and_stales_nothing(ruleset: Ruleset) -> None:
    state = _state(ruleset, horizon_ms=None)
    _send(state, ruleset, "r1", T0, T0)
    late = _send(state, ruleset, "r2", T0, T0 + 30 * 24 * HOUR)
    assert late is not None and late["code"] != STALE_REQUEST
    assert "r1" in state.decided


def test_a_swap_that_does_not_say_its_longest_window_keeps_window_history(ruleset: Ruleset) -> None:
    state = _state(ruleset, horizon_ms=3_600_000, longest_ms=None)
    for i in range(100):
        at = T0 + dt.timedelta(minutes=10 * i)
        _send(state, ruleset, f"r{i}", at, at, amount=1)
    assert state.windows.events() == 100 and len(state.decided) < 100


steps = st.lists(
    st.tuples(
        st.integers(0, 3 * 3600),  # seconds the enforcer's clock advances
        st.integers(0, 2 * 3600),  # how far the event time lags the clock
        st.integers(1, 30_000),  # amount
        st.integers(0, 9),  # re-send an earlier request id when 0
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(steps)
def test_pruned_state_decides_every_judged_intent_as_the_unpruned_one(
    ruleset: Ruleset, history: list[tuple[int, int, int, int]]
) -> None:
    pruned = _state(ruleset, horizon_ms=3_600_000)
    full = _state(ruleset, horizon_ms=None)
    now = T0
    sent: list[tuple[str, dt.datetime, int]] = []
    for i, (advance, lag, fresh_amount, resend) in enumerate(history):
        now += dt.timedelta(seconds=advance)
        rid, at, amount = f"r{i}", now - dt.timedelta(seconds=lag), fresh_amount
        if resend == 0 and sent:
            rid, at, amount = sent[len(sent) // 2]
        sent.append((rid, at, amount))
        action = _action(rid, "b1", at, amount)
        mine = _decide(pruned, ruleset, action, key=b"b1", now=now)
        if mine is not None and mine["code"] == STALE_REQUEST:
            full.fold("Decision", mine, full.offset + 1)  # the same log, folded
            continue
        theirs = _decide(full, ruleset, action, key=b"b1", now=now)
        assert mine == theirs


@pytest.mark.parametrize("longest", [3_600_000, DAY_MS])
def test_a_longer_window_than_the_history_kept_is_denied_not_counted_short(
    ruleset: Ruleset, longest: int
) -> None:
    # The examples' budget is a 24h window; a partition that only ever swapped in bundles
    # with 1h windows keeps 1h + horizon of history, so the 24h question cannot be
    # answered from it once older history is gone.
    state = _state(ruleset, horizon_ms=3_600_000, longest_ms=longest)
    for i in range(30):
        at = T0 + i * HOUR
        _send(state, ruleset, f"r{i}", at, at, amount=1)
    last = _send(state, ruleset, "last", T0 + 30 * HOUR, T0 + 30 * HOUR, amount=1)
    assert last is not None
    if longest == DAY_MS:
        assert last["effect"] == "allow"
    else:
        assert last["effect"] == "deny" and "reaches back past the kept history" in last["detail"]
