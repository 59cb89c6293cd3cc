"""Helpers shared by the log tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ordinance.streams import ConsumedRecord, Consumer

# Short group timings so takeover tests settle in well under a second.
SQLITE_OPTIONS = "heartbeat_interval_ms=50&session_timeout_ms=1500"


def sqlite_url(path: Path, options: str = SQLITE_OPTIONS) -> str:
    # An absolute path: sqlite:/// + /abs/path (the SQLAlchemy convention).
    return f"sqlite:///{path}?{options}"


def drain(consumer: Consumer, count: int, timeout: float = 20.0) -> list[ConsumedRecord]:
    """Poll until ``count`` records arrived; fail the test after ``timeout``."""
    out: list[ConsumedRecord] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"got {len(out)} of {count} records in {timeout}s")
        out.extend(consumer.poll(max_records=count - len(out), timeout=0.2))
    return out


def poll_until(
    consumers: list[Consumer], done: Callable[[], bool], timeout: float = 30.0
) -> list[ConsumedRecord]:
    """Keep every consumer polling (their group heartbeats) until ``done()``."""
    seen: list[ConsumedRecord] = []
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s")
        for consumer in consumers:
            seen.extend(consumer.poll(max_records=500, timeout=0.05))
    return seen
