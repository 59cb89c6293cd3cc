#!/usr/bin/env python3
"""Does the monitor keep up with the enforcer? One run on the embedded backend: the
enforcer's sustained decisions/s over a backlog (`pipeline_bench.sustained`), then the
monitor folding those same decisions — the live process (`Monitor.run`: poll, fold,
alerts written with their offsets in one transaction) and the bare fold alone — as
records/s, and each as a multiple of the enforcer's rate.

    python bench/monitor_bench.py [--backlog 20000] [--runs 3]

A script that prints a table, not a test: no timing assertions anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import pipeline_bench  # noqa: E402

from ordinance.processors.monitor.fold import MonitorState  # noqa: E402
from ordinance.processors.monitor.runner import Monitor  # noqa: E402
from ordinance.streams import open_log  # noqa: E402
from ordinance.streams.serde import Decoded, Serde  # noqa: E402
from ordinance.streams.topics import AGENT_DECISIONS, ensure_topics  # noqa: E402


def one_run(backlog: int) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        with open_log(url, create=True):
            pass
        enforcer_rate = pipeline_bench.sustained(url, backlog)
        with open_log(url) as log:
            topic = ensure_topics(log)[AGENT_DECISIONS].name
            ends = log.end_offsets(topic)
            records = sum(ends.values())
            monitor = Monitor(log)
            started = time.perf_counter()
            monitor.run(
                threading.Event(),
                until=lambda s: all(s.positions.get(p, 0) >= e for p, e in ends.items()),
            )
            live = records / (time.perf_counter() - started)
            serde = Serde()
            decoded = [
                (r.partition, r.offset, d.name, d.value)
                for r in log.read_to_end(topic)
                if isinstance(d := serde.decode_record(r), Decoded)
            ]
        state = MonitorState()
        started = time.perf_counter()
        for partition, offset, name, value in decoded:
            state.fold(partition, offset, name, value)
        bare = len(decoded) / (time.perf_counter() - started)
        return enforcer_rate, live, bare, records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()
    rows = [one_run(args.backlog) for _ in range(args.runs)]
    enforcer = statistics.median(r[0] for r in rows)
    live = statistics.median(r[1] for r in rows)
    bare = statistics.median(r[2] for r in rows)
    print(
        f"Median of {args.runs} run(s), backlog {args.backlog} ({rows[0][3]} decisions-log "
        f"records with control records); {os.cpu_count()} CPUs, load at start "
        f"{[round(x, 2) for x in load]}.\n"
    )
    print("| stage | records/s | vs the enforcer |")
    print("|---|---:|---:|")
    print(f"| enforcer: sustained decisions/s | {enforcer:,.0f} | 1.00x |")
    print(
        f"| monitor process: poll, fold, write alerts + commit | {live:,.0f} | {live / enforcer:.2f}x |"
    )
    print(f"| monitor fold alone (decoded records) | {bare:,.0f} | {bare / enforcer:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
