"""Partitions replayed in worker processes (``--jobs N``).

Partitions are independent folds — the enforcer itself owns them one by one — so replay
spreads them over processes. Workers are forked after the parent has loaded and compiled
every stored bundle, so they inherit the compiled rulesets (and an exported slice already
in memory) instead of redoing that work; each opens its own connection to a live log.
Results come back per partition and are merged in partition order, so a report does not
depend on the number of jobs.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from ordinance.replay.source import Source
from ordinance.streams import Log

R = TypeVar("R")
Opener = Callable[[], tuple[Source, Log | None]]

# Set in the parent just before the fork; what a worker reads (never pickled).
_JOB: dict[str, Any] = {}


def _run(partition: int) -> Any:
    source, log = _JOB["open"]()
    try:
        return _JOB["work"](source, partition)
    finally:
        if log is not None:
            log.close()


def map_partitions(
    work: Callable[[Source, int], R],
    partitions: list[int],
    jobs: int,
    reopen: Opener,
    sizes: Mapping[int, int] | None = None,
) -> Iterator[R]:
    """``work(source, partition)`` for each partition, in ``jobs`` forked processes;
    results in completion order. Partitions are handed out largest first (``sizes``,
    records per partition): partitions differ in size by agent hashing (1:3 on the
    bench log), and a large one started last leaves the other workers idle at the end."""
    sizes = sizes or {}
    order = sorted(partitions, key=lambda p: -sizes.get(p, 0))
    _JOB.update(work=work, open=reopen)
    try:
        with multiprocessing.get_context("fork").Pool(min(jobs, len(partitions))) as pool:
            yield from pool.imap_unordered(_run, order)
    finally:
        _JOB.clear()
