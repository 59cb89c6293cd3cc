"""Stateful conditions: ``window.count(d)`` and ``window.sum(action.args.x, d)``.

Meaning, stated once so the evaluator, the enforcer's state and the analysis agree:
``window.count(d)`` is the number of earlier actions *of this agent, with this tool* that
were allowed and whose event time ``t`` satisfies ``now - d < t <= now``;
``window.sum(action.args.x, d)`` is the sum of argument ``x`` over the same actions
(actions without ``x`` contribute nothing). ``now`` is the clock injected into the state
(in the pipeline, the event time of the action being decided) — policy code never reads a clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

Number = int | Decimal


class WindowState(Protocol):
    """What the evaluator asks of the enforcer's state."""

    def count(self, agent_id: str, tool: str, seconds: int) -> int: ...

    def sum(self, agent_id: str, tool: str, arg: str, seconds: int) -> Number: ...


@dataclass(frozen=True, slots=True)
class _Event:
    at: float
    args: Mapping[str, Any]


class InMemoryWindows:
    """A plain in-memory :class:`WindowState`: a list of allowed actions per (agent, tool)."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self._events: dict[tuple[str, str], list[_Event]] = defaultdict(list)

    def record(self, agent_id: str, tool: str, args: Mapping[str, Any], at: float) -> None:
        self._events[(agent_id, tool)].append(_Event(at, args))

    def _recent(self, agent_id: str, tool: str, seconds: int) -> list[_Event]:
        now = self.clock()
        return [e for e in self._events.get((agent_id, tool), ()) if now - seconds < e.at <= now]

    def count(self, agent_id: str, tool: str, seconds: int) -> int:
        return len(self._recent(agent_id, tool, seconds))

    def sum(self, agent_id: str, tool: str, arg: str, seconds: int) -> Number:
        total: Number = 0
        for event in self._recent(agent_id, tool, seconds):
            value = event.args.get(arg)
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                total += value
        return total
