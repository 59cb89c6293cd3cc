"""Time arguments (``--from``, ``--to``, ``policy at T``) and the event time of records.

Replay selects by *event time carried in the payload*, never by the log's record
timestamp: the local broker's time index uses receive time, and a record's position in
the log says when it was written, not when the agent acted.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)(s|m|h|d)(?: ago)?$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class TimeArgumentError(ValueError):
    """A time argument that is none of the accepted forms."""


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """ISO 8601 (a naive time is UTC), epoch seconds, ``now``, or a duration before now
    (``2h``, ``30m``, ``7d``; also ``-2h`` / ``2h ago``, though argparse needs
    ``--from=-2h`` for the dash form). Always an aware UTC datetime."""
    current = now or dt.datetime.now(dt.UTC)
    value = text.strip()
    if value == "now":
        return current
    relative = _RELATIVE.match(value)
    if relative:
        return current - dt.timedelta(seconds=float(relative[1]) * _UNIT_S[relative[2]])
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TimeArgumentError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-25T16:00:00Z), epoch seconds, now, or 2h (ago)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


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
