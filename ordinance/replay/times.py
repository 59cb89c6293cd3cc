"""Time arguments (``--from``, ``--to``, ``policy at T``) and the event time of records.

Replay selects by *event time carried in the payload*, never by the log's record
timestamp: the local broker's time index uses receive time, and a record's position in
the log says when it was written, not when the agent acted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ordinance.timeargs import TimeArgumentError, parse_time

__all__ = ["TimeArgumentError", "Window", "decision_time", "iso", "parse_time"]


def iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def decision_time(datum: dict[str, Any]) -> dt.datetime:
    """A Decision's event time: the action's (an undecodable action has none, so then
    when it was evaluated)."""
    at: dt.datetime | None = datum.get("event_time")
    return at if at is not None else datum["evaluated_at"]


class Window:
    """A half-open event-time range ``[start, end)``; either side may be open."""

    __slots__ = ("end", "start")

    def __init__(self, start: dt.datetime | None = None, end: dt.datetime | None = None) -> None:
        if start is not None and end is not None and end < start:
            raise TimeArgumentError("--to is before --from")
        self.start = start
        self.end = end

    def __contains__(self, at: dt.datetime) -> bool:
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)

    def to_json(self) -> dict[str, str | None]:
        return {"from": iso(self.start), "to": iso(self.end)}
