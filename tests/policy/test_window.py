"""The window state answers exactly what its definition says, however the history arrives."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.policy.cel.parser import parse_condition as parse
from ordinance.policy.loader import load_ruleset
from ordinance.policy.window import InMemoryWindows, WindowHistoryPruned, longest_window_seconds

events = st.lists(
    st.tuples(
        st.integers(0, 1000),  # event time
        st.sampled_from(["a", "b"]),  # agent
        st.one_of(
            st.integers(-50, 50), st.decimals("-9.99", "9.99", places=2), st.none(), st.just("x")
        ),
    ),
    max_size=40,
)


@settings(max_examples=200)
@given(events, st.integers(0, 1100), st.integers(1, 600))
def test_count_and_sum_equal_the_definition(
    history: list[tuple[int, str, object]], now: int, seconds: int
) -> None:
    windows = InMemoryWindows(clock=lambda: float(now))
    for at, agent, amount in history:
        windows.record(agent, "pay", {} if amount is None else {"amount": amount}, float(at))
    for agent in ("a", "b"):
        inside = [m for at, who, m in history if who == agent and now - seconds < at]
        numbers = [m for m in inside if isinstance(m, int | Decimal) and not isinstance(m, bool)]
        assert windows.count(agent, "pay", seconds) == len(inside)
        assert windows.sum(agent, "pay", "amount", seconds) == sum(numbers, Decimal(0))
        assert windows.sum(agent, "pay", "other", seconds) == 0
    assert windows.count("a", "other-tool", seconds) == 0


@settings(max_examples=200)
@given(events, st.integers(0, 1000), st.integers(0, 1100), st.integers(1, 600))
def test_pruned_history_answers_every_window_it_still_covers_and_refuses_the_rest(
    history: list[tuple[int, str, object]], boundary: int, now: int, seconds: int
) -> None:
    clock = [float(now)]
    full = InMemoryWindows(clock=lambda: clock[0])
    pruned = InMemoryWindows(clock=lambda: clock[0])
    half = len(history) // 2
    for windows in (full, pruned):  # pruning between arrivals, as the fold does
        for at, agent, amount in history[:half]:
            windows.record(agent, "pay", {} if amount is None else {"amount": amount}, at)
    dropped = pruned.prune(float(boundary))
    assert dropped == sum(1 for at, _, _ in history[:half] if at <= boundary)
    for windows in (full, pruned):
        for at, agent, amount in history[half:]:
            windows.record(agent, "pay", {} if amount is None else {"amount": amount}, at)
    for agent in ("a", "b"):
        if now - seconds >= boundary:
            assert pruned.count(agent, "pay", seconds) == full.count(agent, "pay", seconds)
            assert pruned.sum(agent, "pay", "amount", seconds) == full.sum(
                agent, "pay", "amount", seconds
            )
        else:
            with pytest.raises(WindowHistoryPruned):
                pruned.count(agent, "pay", seconds)
            with pytest.raises(WindowHistoryPruned):
                pruned.sum(agent, "pay", "amount", seconds)
    assert pruned.prune(float(boundary)) == 0  # the boundary only moves forward


def test_the_longest_window_is_read_from_the_conditions() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "policies"
    ruleset = load_ruleset(examples)
    assert longest_window_seconds(cr.rule.condition.expr for cr in ruleset.rules) == 86400
    nested = parse(
        'has(action.args.x) && (window.count("90s") > 2 || window.sum(action.args.x, "7d") > 1)'
    )
    assert longest_window_seconds([nested]) == 7 * 86400
    assert longest_window_seconds([parse("action.args.x > 1")]) == 0
