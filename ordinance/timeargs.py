"""The one parser for every time argument (``--from``/``--to``, ``--since``/``--until``,
``policy at T``): the same words mean the same instant in every command.

Accepted: ISO 8601 (``2026-01-02``, ``2026-01-02T03:04:05Z``, an offset; a naive time is
UTC), epoch seconds (``1767323045``), ``now``, or a duration before now (``15m``, ``2h
ago``, ``-7d``, ``1.5h``, units s/sec/m/min/h/d/w; argparse needs ``--from=-2h`` for the
dash form). Always an aware UTC datetime.
"""

from __future__ import annotations

import datetime as dt
import re

from ordinance.errors import OrdinanceError

_RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)(?:\s+ago)?$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class TimeArgumentError(OrdinanceError, ValueError):
    """A time argument that is none of the accepted forms."""


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    current = now or dt.datetime.now(dt.UTC)
    value = text.strip()
    if value.lower() == "now":
        return current
    relative = _RELATIVE.match(value)
    if relative:
        seconds = float(relative[1]) * _UNIT_SECONDS[relative[2].lower()]
        return current - dt.timedelta(seconds=seconds)
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TimeArgumentError(
            f"cannot read time {text!r}: use ISO 8601 (2026-11-25T16:00:00Z), epoch seconds,"
            " now, or a duration before now (15m, 2h ago, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)
