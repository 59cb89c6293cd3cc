"""Stateful conditions: ``window.count(d)`` and ``window.sum(action.args.x, d)``.

Meaning, stated once so the evaluator, the enforcer's state and the analysis agree:
``window.count(d)`` is the number of earlier actions *of this agent, with this tool* that
were allowed and whose event time ``t`` satisfies ``now - d < t``;
``window.sum(action.args.x, d)`` is the sum of argument ``x`` over the same actions
(actions without ``x`` contribute nothing). ``now`` is the clock injected into the state
(in the pipeline, the event time of the action being decided) — policy code never reads a clock.

"Earlier" means decided earlier, not earlier in event time: an allowed action whose event
time is later than ``now`` still counts. Otherwise a client that dates each request a
little before the previous one sees none of them in any window and gets the budget
again and again (the enforcer bounds how far an event time may be from its own clock,
but any step inside that bound would do).

History is bounded by :meth:`InMemoryWindows.prune`: events dated at or before a
boundary are dropped, and a later question whose window reaches back to the boundary
raises :class:`WindowHistoryPruned` (the rule errs, the action is denied) rather than
answering from a history that is no longer complete. The enforcer's fold chooses the
boundary so that no question it still judges reaches it (``enforcer_state``).
"""

from __future__ import annotations

import bisect
import decimal
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Protocol

from ordinance.policy.cel.ast import Call, Expr, Ident, Literal, children

Number = int | Decimal


class WindowHistoryPruned(ValueError):
    """A window reaches back past the history the state still keeps."""


class WindowState(Protocol):
    """What the evaluator asks of the enforcer's state."""

    def count(self, agent_id: str, tool: str, seconds: int) -> int: ...

    def sum(self, agent_id: str, tool: str, arg: str, seconds: int) -> Number: ...


class _Series:
    """One (agent, tool)'s allowed actions, kept sorted by event time, with running sums
    per argument so a window is two binary searches and a subtraction."""

    __slots__ = ("args", "prefix", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.args: list[Mapping[str, Any]] = []
        self.prefix: dict[str, list[Number]] = {}  # arg -> sums of the first i events

    def add(self, at: float, args: Mapping[str, Any]) -> None:
        if self.times and at < self.times[-1]:
            # Out of event-time order (rare: clocks of different agents' runtimes): insert
            # in place and rebuild the running sums.
            index = bisect.bisect_right(self.times, at)
            self.times.insert(index, at)
            self.args.insert(index, args)
            self.prefix = {}
            for name in {n for a in self.args for n in a}:
                self._rebuild(name)
            return
        self.times.append(at)
        self.args.append(args)
        for name, sums in self.prefix.items():
            sums.append(_EXACT.add(sums[-1], _number(args.get(name))))

    def _rebuild(self, name: str) -> list[Number]:
        sums: list[Number] = [0]
        for args in self.args:
            sums.append(_EXACT.add(sums[-1], _number(args.get(name))))
        self.prefix[name] = sums
        return sums

    def span(self, now: float, seconds: int) -> tuple[int, int]:
        """Indexes [lo, hi) of the events with ``now - seconds < at`` (later ones too)."""
        return bisect.bisect_right(self.times, now - seconds), len(self.times)

    def drop_through(self, boundary: float) -> int:
        """Drop the events dated at or before ``boundary``; how many were dropped."""
        cut = bisect.bisect_right(self.times, boundary)
        if cut:
            del self.times[:cut]
            del self.args[:cut]
            self.prefix = {}  # rebuilt on the next sum that asks
        return cut

    def total(self, name: str, lo: int, hi: int) -> Number:
        sums = self.prefix.get(name) or self._rebuild(name)
        return (
            _EXACT.subtract(sums[hi], sums[lo])
            if isinstance(sums[hi], Decimal)
            else sums[hi] - sums[lo]
        )


# Sums are exact or an error (which denies), never silently rounded.
_EXACT = decimal.Context(
    prec=200,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.Inexact, decimal.Overflow],
)


def numeric_args(args: Mapping[str, Any]) -> dict[str, Number]:
    """What a window keeps of an action's arguments: only ``window.sum`` reads them, and
    it counts every argument without a numeric value as 0 (`_number`). Keeping the
    strings too cost ~700 bytes an event instead of ~400, for as long as the longest
    window (a day's budget holds a day of allowed actions)."""
    return {
        name: value
        for name, value in args.items()
        if isinstance(value, int | Decimal) and not isinstance(value, bool)
    }


def _number(value: Any) -> Number:
    # Arguments without a numeric value contribute nothing (see the module docstring).
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return value
    return 0


class InMemoryWindows:
    """An in-memory :class:`WindowState`: allowed actions per (agent, tool), answered in
    O(log n) per call however long the history grows."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self._series: dict[tuple[str, str], _Series] = defaultdict(_Series)
        # Events at or before this time may have been dropped (-inf: nothing was).
        self.pruned_through = float("-inf")

    def record(
        self, agent_id: str, tool: str, args: Mapping[str, Any], at: float
    ) -> dict[str, Number]:
        """Keep one allowed action; returns what was kept of its arguments (`numeric_args`),
        so a caller that logs the event logs the same without filtering again."""
        kept = numeric_args(args)
        self._series[(agent_id, tool)].add(at, kept)
        return kept

    def prune(self, boundary: float) -> int:
        """Drop every event dated at or before ``boundary``; how many were dropped. Windows
        that reach back to the boundary raise from now on (never a partial answer)."""
        if boundary <= self.pruned_through:
            return 0
        self.pruned_through = boundary
        dropped = 0
        for key in list(self._series):
            series = self._series[key]
            dropped += series.drop_through(boundary)
            if not series.times:
                del self._series[key]
        return dropped

    def events(self) -> int:
        """How many allowed actions the state holds (its size, for metrics and tests)."""
        return sum(len(s.times) for s in self._series.values())

    def history(self) -> Iterator[tuple[str, str, float, Mapping[str, Any]]]:
        """Every kept event as (agent id, tool, event time, arguments), each series in its
        order: recording them again in this order rebuilds the same windows (the state
        cache's snapshot does)."""
        for (agent_id, tool), series in self._series.items():
            for at, args in zip(series.times, series.args, strict=True):
                yield agent_id, tool, at, args

    def _span(self, agent_id: str, tool: str, seconds: int) -> tuple[_Series, int, int] | None:
        now = self.clock()
        if now - seconds < self.pruned_through:
            raise WindowHistoryPruned(
                f"a {seconds}s window at {now} reaches back past the kept history "
                f"(pruned through {self.pruned_through}): the dedupe horizon is shorter "
                "than this window needs"
            )
        series = self._series.get((agent_id, tool))
        if series is None:
            return None
        lo, hi = series.span(now, seconds)
        return series, lo, hi

    def count(self, agent_id: str, tool: str, seconds: int) -> int:
        found = self._span(agent_id, tool, seconds)
        return 0 if found is None else found[2] - found[1]

    def sum(self, agent_id: str, tool: str, arg: str, seconds: int) -> Number:
        found = self._span(agent_id, tool, seconds)
        return 0 if found is None else found[0].total(arg, found[1], found[2])


class AgentWindows:
    """One agent's view of a :class:`WindowState`: the enforcer evaluates an action with
    the windows of the agent id it records the decision under, so the key budgets are
    looked up by is the key allowed amounts are folded under. Asked for any other agent
    (the evaluator derived a different id from the request), it raises: the rule that
    asked counts as an evaluation error, a deny — never a budget read under another key."""

    __slots__ = ("agent_id", "windows")

    def __init__(self, windows: WindowState, agent_id: str) -> None:
        self.windows = windows
        self.agent_id = agent_id

    def _check(self, agent_id: str) -> None:
        if agent_id != self.agent_id:
            raise ValueError(
                f"window state asked for agent {agent_id[:64]!r}, "
                f"but the decision is recorded for {self.agent_id[:64]!r}"
            )

    def count(self, agent_id: str, tool: str, seconds: int) -> int:
        self._check(agent_id)
        return self.windows.count(agent_id, tool, seconds)

    def sum(self, agent_id: str, tool: str, arg: str, seconds: int) -> Number:
        self._check(agent_id)
        return self.windows.sum(agent_id, tool, arg, seconds)


def longest_window_seconds(conditions: Iterable[Expr]) -> int:
    """The longest duration any ``window.count``/``window.sum`` in ``conditions`` asks
    for (0: none uses a window). Durations are literals (the type checker requires it),
    so this is exact: how much history a bundle can ever need."""
    from ordinance.policy.typecheck import parse_duration  # the checker's own parser

    longest = 0
    stack: list[Expr] = list(conditions)
    while stack:
        node = stack.pop()
        if (
            isinstance(node, Call)
            and isinstance(node.target, Ident)
            and node.target.name == "window"
            and node.args
            and isinstance(node.args[-1], Literal)
            and isinstance(node.args[-1].value, str)
        ):
            longest = max(longest, parse_duration(node.args[-1].value) or 0)
        stack.extend(children(node))
    return longest
