#!/usr/bin/env python3
"""Takeover bench: how long does a restarted enforcer take to own its partitions again,
after 100k and after 1M decisions, with the state cache's snapshot and without it?

One embedded log grows through the run. For each size N a real `Enforcer` decides a
backlog of actions produced beforehand (200 agents, the examples' policies with their
windows shortened to ``--window``, a dedupe horizon of ``--horizon``): the first
N - ``--tail`` with a state cache (snapshots every few seconds, as ``serve --state-dir``
takes them), the last ``--tail`` without it — so the snapshot is ``--tail`` decisions
behind, as after a crash. Then a new enforcer takes over every partition (writes its
marker and folds ``agent.decisions`` up to it), timed from construction to the last
takeover:

* *with snapshot*: it loads each partition's snapshot and folds only the tail after it;
* *without*: it folds every partition from offset 0.

Beside them: the save that follows the restart with the snapshot (the tail's changes,
incremental), the save of the same states whole into an empty cache (what a first save
costs), and the snapshot's size — live bytes of its keys and values, and the cache
directory on disk (RocksDB files: WAL, SSTs not yet compacted).

The enforcer's clock is simulated so the backlog is judged as if it had arrived live:
action i is dated ``T0 + i * --step`` and decided at the time its position says (the
decisions so far times the step), so the horizon prunes as it would at 1/step actions
per second and the state stays bounded whatever N is.

    python bench/takeover_bench.py                       # 100k and 1M (several minutes)
    python bench/takeover_bench.py --sizes 20000 50000   # quicker

A script that prints a table, not a test: no timing assertions anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from soak import _policies, transfer_request  # noqa: E402  (shortened windows; traffic)

from ordinance.policy.bundle import compile_bundle  # noqa: E402
from ordinance.processors.controller_loop import run_controller  # noqa: E402
from ordinance.processors.enforcer import Enforcer  # noqa: E402
from ordinance.processors.enforcer_state import PartitionState  # noqa: E402
from ordinance.processors.policy_log import publish_bundle  # noqa: E402
from ordinance.processors.state_cache import StateCache  # noqa: E402
from ordinance.streams import Record, open_log  # noqa: E402
from ordinance.streams.serde import Serde  # noqa: E402
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics  # noqa: E402
from ordinance.wire import request_to_wire  # noqa: E402

T0 = 1_750_000_000.0
AGENTS = 200


@dataclass
class Row:
    decisions: int
    snapshot: str  # "yes" / "no"
    takeover_s: float
    folded: int  # decisions records folded by the takeovers
    ids: int  # request ids the partitions remember afterwards
    window_events: int
    save_s: float | None  # the save after the takeover
    save_kind: str
    snapshot_mb: float | None  # live keys + values
    cache_dir_mb: float | None


class SimulatedClock:
    """The time the next decision is made at: its position in the log times the step."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.decided_before = 0  # decisions made by earlier enforcers
        self.enforcer: Enforcer | None = None

    def __call__(self) -> float:
        current = self.enforcer.report.decided if self.enforcer is not None else 0
        return T0 + (self.decided_before + current) * self.step


def _produce(url: str, start: int, end: int, step: float) -> None:
    serde, rng = Serde(), random.Random(start)
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_ACTIONS].name
        batch: list[Record] = []
        for i in range(start, end):
            agent = f"bench-bot-{i % AGENTS}"
            event_time = T0 + i * step
            datum = request_to_wire(
                transfer_request(agent, rng),
                request_id=f"t{i}",
                event_time=dt.datetime.fromtimestamp(event_time, dt.UTC),
                client_id="bench",
            )
            value = serde.encode("ActionRequest", datum)
            batch.append(Record(agent.encode(), value, (), int(event_time * 1000)))
            if len(batch) == 2000:
                log.produce(topic, batch)
                batch = []
        if batch:
            log.produce(topic, batch)


def _decide(url: str, clock: SimulatedClock, state_dir: Path | None, horizon_s: float) -> float:
    """Decide everything produced so far; decisions per second."""
    with open_log(url) as log:
        enforcer = Enforcer(
            log,
            enforcer_id="bench",
            clock=clock,
            state_dir=state_dir,
            max_clock_skew_s=None,
            dedupe_horizon_s=horizon_s,
        )
        clock.enforcer = enforcer
        started = time.perf_counter()
        enforcer.run(until_idle=True, idle_s=2.0)
        elapsed = time.perf_counter() - started - 2.0
        clock.decided_before += enforcer.report.decided
        clock.enforcer = None
        return enforcer.report.decided / max(elapsed, 1e-9)


def _restart(
    url: str, clock: SimulatedClock, state_dir: Path | None, horizon_s: float
) -> tuple[float, Enforcer, dict[int, PartitionState]]:
    with open_log(url) as log:
        partitions = log.partitions(ensure_topics(log)[AGENT_DECISIONS].name)
        started = time.perf_counter()
        enforcer = Enforcer(
            log,
            enforcer_id="restarted",
            clock=clock,
            state_dir=state_dir,
            max_clock_skew_s=None,
            dedupe_horizon_s=horizon_s,
        )
        states = {p: enforcer._take_over(p) for p in partitions}
        return time.perf_counter() - started, enforcer, states


def _timed_save(cache: StateCache, states: dict[int, PartitionState]) -> float:
    started = time.perf_counter()
    for state in states.values():
        cache.save(state)
    return time.perf_counter() - started


def _live_mb(directory: Path, topic: str, partitions: list[int]) -> float:
    cache = StateCache(directory, topic)
    try:
        total = 0
        for p in partitions:
            prefix = f"{topic}/{p}/".encode()
            for key, value in cache._scan(prefix, prefix[:-1] + b"0"):
                total += len(key) + len(value)
        return total / 2**20
    finally:
        cache.close()


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def measure(url: str, tmp: Path, size: int, clock: SimulatedClock, args: Any) -> list[Row]:
    cache_dir = tmp / "state"
    _produce(url, clock.decided_before, size - args.tail, args.step)
    rate = _decide(url, clock, cache_dir, args.horizon)
    _produce(url, size - args.tail, size, args.step)
    _decide(url, clock, None, args.horizon)  # the tail: after the last snapshot
    print(f"{size:,} decided ({rate:,.0f} decisions/s with the cache)", file=sys.stderr)
    rows = []
    seconds, enforcer, states = _restart(url, clock, cache_dir, args.horizon)
    assert enforcer.cache is not None
    topic, partitions = enforcer.decisions, sorted(states)
    folded = enforcer.report.replayed
    save_s = _timed_save(enforcer.cache, states)
    enforcer.cache.close()
    ids = sum(len(s.decided) for s in states.values())
    events = sum(s.windows.events() for s in states.values())
    live, on_disk = _live_mb(cache_dir, topic, partitions), _dir_mb(cache_dir)
    rows.append(
        Row(size, "yes", seconds, folded, ids, events, save_s, "incremental", live, on_disk)
    )
    seconds, enforcer, states = _restart(url, clock, None, args.horizon)
    whole = tmp / "whole"
    cache = StateCache(whole, topic)
    save_s = _timed_save(cache, states)
    cache.close()
    rows.append(
        Row(
            size,
            "no",
            seconds,
            enforcer.report.replayed,
            sum(len(s.decided) for s in states.values()),
            sum(s.windows.events() for s in states.values()),
            save_s,
            "whole",
            _live_mb(whole, topic, partitions),
            _dir_mb(whole),
        )
    )
    for path in sorted(whole.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    whole.rmdir()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--tail", type=int, default=10_000, help="decisions after the snapshot")
    parser.add_argument("--step", type=float, default=0.002, help="simulated seconds per action")
    parser.add_argument("--horizon", type=float, default=60.0, help="dedupe horizon, seconds")
    parser.add_argument("--window", default="1m", help="the examples' window durations")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = f"sqlite:///{tmp / 'takeover.db'}"
        files = _policies(args.window)
        with open_log(url, create=True) as log:
            ensure_topics(log)
            publish_bundle(log, files, compile_bundle(files).bundle_id, actor="bench")
            run_controller(log, once=True)
        clock = SimulatedClock(args.step)
        for size in sorted(args.sizes):
            rows.extend(measure(url, tmp, size, clock, args))
    if args.json:
        print(json.dumps({"load_at_start": load, "rows": [asdict(r) for r in rows]}, indent=2))
        return 0
    print(
        f"takeover bench — {os.cpu_count()} CPUs, load at start "
        f"{tuple(round(x, 2) for x in load)}; 4 partitions, {AGENTS} agents, "
        f"{1 / args.step:g} actions/s simulated, horizon {args.horizon:g}s, windows "
        f"{args.window}, snapshot {args.tail:,} decisions behind\n"
    )
    print(
        "| decisions | snapshot | takeover s | records folded | ids kept | window events "
        "| save after s | save | snapshot MB | cache dir MB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print(
            f"| {r.decisions:,} | {r.snapshot} | {r.takeover_s:.2f} | {r.folded:,} | {r.ids:,} "
            f"| {r.window_events:,} | {r.save_s:.2f} | {r.save_kind} | {r.snapshot_mb:.1f} "
            f"| {r.cache_dir_mb:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
