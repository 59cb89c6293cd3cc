"""The window state answers exactly what its definition says, however the history arrives."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.policy.window import InMemoryWindows

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
