"""One connection per Kafka log url for a test's own writes and reads (registry records,
actions, approvals, reading the decisions back): a fresh Kafka connection costs its
producer's start-up (about 0.5 s on the local broker) before its first write, and
`read_to_end` writes a marker first, so helpers that open a log per call paid that on
every call. Processors under test still get logs of their own. The embedded log opens per
call as before (cheap, and no connection outlives a test's database).

`tests/conftest.py` closes what is open after every test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ordinance.streams import Log, open_log

_open: dict[str, Log] = {}


@contextmanager
def helper_log(url: str) -> Iterator[Log]:
    """`open_log(url)` for test helpers; on Kafka the test's one connection, left open."""
    if not url.startswith("kafka://"):
        with open_log(url) as log:
            yield log
        return
    log = _open.get(url)
    if log is None:
        log = _open[url] = open_log(url)
    yield log


def close_helper_logs() -> None:
    while _open:
        _, log = _open.popitem()
        log.close(timeout=1.0)
