"""Time arguments and event-time windows."""

from __future__ import annotations

import datetime as dt

import pytest

from ordinance.replay.times import TimeArgumentError, Window, parse_time

NOW = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("2h", NOW - dt.timedelta(hours=2)),
        ("-2h", NOW - dt.timedelta(hours=2)),
        ("30m ago", NOW - dt.timedelta(minutes=30)),
        ("1.5d", NOW - dt.timedelta(hours=36)),
        ("2026-11-25T15:00:00Z", dt.datetime(2026, 11, 25, 15, tzinfo=dt.UTC)),
        ("2026-11-25T15:00:00", dt.datetime(2026, 11, 25, 15, tzinfo=dt.UTC)),  # naive: UTC
        ("2026-11-25T16:00:00+01:00", dt.datetime(2026, 11, 25, 15, tzinfo=dt.UTC)),
        ("0", dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
    ],
)
def test_time_forms(text: str, expected: dt.datetime) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2 hours", "2 fortnights", ""])
def test_what_is_not_a_time(text: str) -> None:
    with pytest.raises(TimeArgumentError):
        parse_time(text, now=NOW)


def test_windows_are_half_open() -> None:
    window = Window(NOW, NOW + dt.timedelta(hours=1))
    assert NOW in window and NOW + dt.timedelta(minutes=59) in window
    assert NOW + dt.timedelta(hours=1) not in window and NOW - dt.timedelta(seconds=1) not in window
    assert NOW in Window() and NOW in Window(None, NOW + dt.timedelta(seconds=1))
    with pytest.raises(TimeArgumentError):
        Window(NOW, NOW - dt.timedelta(seconds=1))


@pytest.mark.parametrize(
    "text",
    ["2026-01-02", "2026-01-02T03:04:05Z", "now", "15m", "2h ago", "-7d", "2w", "1767323045"],
)
def test_every_command_reads_a_time_the_same_way(text: str) -> None:
    """`replay --from`, `policy at` and `audit query --since` share one parser."""
    from ordinance.processors.audit.query import micros
    from ordinance.processors.audit.query import parse_time as query_time

    assert query_time(text, NOW) == micros(parse_time(text, now=NOW))
