#!/usr/bin/env python3
"""Backlog bench: does an enforcer drain a backlog written in small batches, also after a crash?

Clients send actions a few at a time, so ``agent.actions`` is made of many small batches.
This writes ``--actions`` of them in batches of 1-10 (keyed by eight agents, so the four
partitions differ in length), then starts an enforcer (`Enforcer` in a process of its
own, as `serve` runs it) and measures how long it takes to decide them all:

* *clean*: one enforcer drains the whole backlog;
* *crash*: the enforcer is SIGKILLed once it has decided ``--crash-at`` of the backlog (or
  after ``--crash-after`` seconds, whichever comes first), and a new one drains the rest.
  On Kafka the new member gets the partitions only once the dead one's session (6 s)
  has expired; the table shows that wait apart from the drain.

Progress is read from the enforcer group's committed offsets (which move only once the
decisions are durable); at the end every decision in ``agent.decisions`` is counted, so
the table also says how many actions were left undecided and whether any was decided
twice. On Kafka each setting is a column, in the same run and on a fresh broker each:
the tailing consumer alone (``fetch.wait.max.ms=5``, as before the catch-up reader) and
with the catch-up reader (`ordinance.streams.kafka_consumer`). A drain that makes no
progress for ``--stall-timeout`` seconds is cut short and reported as stalled.

    python bench/backlog_bench.py --backend kafka [--actions 100000]
    python bench/backlog_bench.py --backend sqlite

A script that prints a table, not a test: no timing assertions anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ordinance.policy.bundle import compile_bundle, read_bundle_dir  # noqa: E402
from ordinance.processors.controller_loop import run_controller  # noqa: E402
from ordinance.processors.enforcer import Enforcer  # noqa: E402
from ordinance.processors.policy_log import publish_bundle  # noqa: E402
from ordinance.streams import Record, open_log  # noqa: E402
from ordinance.streams.log import TopicPartition  # noqa: E402
from ordinance.streams.serde import Decoded, Serde  # noqa: E402
from ordinance.streams.topics import AGENT_ACTIONS, AGENT_DECISIONS, ensure_topics  # noqa: E402
from ordinance.wire import request_to_wire  # noqa: E402

EXAMPLES = HERE.parent / "examples" / "policies"
AGENTS: list[dict[str, Any]] = [
    {"id": f"billing-bot-{i}", "roles": ["billing"], "team": "finance"} for i in range(8)
]
GROUP = "ordinance.enforcer"  # the Enforcer's default group
#: Kafka columns: what the enforcer process reads with.
SETTINGS = {
    "tail only (fetch.wait.max.ms=5)": "tail",
    "with the catch-up reader": "catch-up",
}


def _request(i: int) -> dict[str, Any]:
    args = {"amount": str(10 + i % 900), "currency": "EUR", "country": "DE", "iban": "DE00"}
    return {"agent": AGENTS[i % len(AGENTS)], "action": {"tool": "payments.transfer", "args": args}}


def _prepare(url: str, actions: int) -> float:
    """Topics, the example bundle in force, and ``actions`` intents in batches of 1-10;
    returns the seconds the writing took."""
    files = read_bundle_dir(EXAMPLES)
    serde = Serde()
    rng = random.Random(7)
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_ACTIONS].name
        publish_bundle(log, files, compile_bundle(files).bundle_id, actor="bench")
        run_controller(log, once=True)
        now = time.time()
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        started = time.perf_counter()
        i = 0
        while i < actions:
            # One client's batch: one agent, a few intents, as `Client.decide` calls
            # arrive together.
            size = min(rng.randint(1, 10), actions - i)
            agent = AGENTS[rng.randrange(len(AGENTS))]
            batch = []
            for n in range(i, i + size):
                request = _request(n)
                request["agent"] = agent
                datum = request_to_wire(
                    request, request_id=f"b{n}", event_time=at, client_id="bench"
                )
                value = serde.encode("ActionRequest", datum)
                batch.append(Record(agent["id"].encode(), value, (), int(now * 1000)))
            log.produce(topic, batch)
            i += size
        return time.perf_counter() - started


def _decided(url: str) -> int:
    """Actions the enforcer group has committed past: decided and durable."""
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_ACTIONS].name
        with log.consumer(GROUP) as reader:
            tps = [TopicPartition(topic, p) for p in log.partitions(topic)]
            return sum(off or 0 for off in reader.committed(tps).values())


def _decisions(url: str) -> Counter[str]:
    serde = Serde()
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_DECISIONS].name
        return Counter(
            decoded.value["request_id"]
            for record in log.read_to_end(topic)
            if isinstance(decoded := serde.decode_record(record), Decoded)
            and decoded.name == "Decision"
        )


def _start(url: str, setting: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", url, "--setting", setting],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Drain:
    """One enforcer process's part of a drain, from its start."""

    decided_before: int  # what earlier processes had decided
    decided: int = 0  # by the end of this part, in all
    first_s: float | None = None  # until its first decision
    done_s: float | None = None  # until everything was decided
    last_s: float = 0.0  # until its last progress
    stalled: bool = False

    def rate(self) -> float | None:
        """Decisions/s from its first decision to its last."""
        if self.first_s is None or self.last_s <= self.first_s:
            return None
        return (self.decided - self.decided_before) / (self.last_s - self.first_s)


def _watch(
    url: str,
    actions: int,
    decided_before: int,
    *,
    until: int,
    stall_s: float,
    give_up_s: float,
) -> Drain:
    """Follow the committed progress until ``until`` actions are decided, or nothing moved
    for ``stall_s`` (after the first decision; before it, ``give_up_s`` in all)."""
    part = Drain(decided_before, decided_before)
    started = last_move = time.monotonic()
    while True:
        time.sleep(0.25)
        now = time.monotonic()
        decided = _decided(url)
        if decided > part.decided:
            if part.first_s is None:
                part.first_s = now - started
            part.decided, part.last_s, last_move = decided, now - started, now
        if part.decided >= until:
            if part.decided >= actions:
                part.done_s = now - started
            return part
        waited = now - last_move
        if (part.first_s is not None and waited > stall_s) or now - started > give_up_s:
            part.stalled = True
            return part


@dataclass
class Result:
    write_s: float = 0.0
    parts: list[Drain] = field(default_factory=list)
    undecided: int = 0
    duplicates: int = 0


def _scenario(url: str, setting: str, args: argparse.Namespace, *, crash: bool) -> Result:
    result = Result(write_s=_prepare(url, args.actions))
    kill_at = int(args.actions * args.crash_at) if crash else args.actions
    process = _start(url, setting)
    try:
        first = _watch(
            url,
            args.actions,
            0,
            until=kill_at,
            stall_s=args.crash_after if crash else args.stall_timeout,
            give_up_s=args.crash_after if crash else args.stall_timeout + 30,
        )
        result.parts.append(first)
        if crash:
            process.send_signal(signal.SIGKILL)
            process.wait()
            decided = _decided(url)
            process = _start(url, setting)
            # The dead member keeps its partitions until its session expires: give the
            # first decision that long and more before calling the drain stalled.
            result.parts.append(
                _watch(
                    url,
                    args.actions,
                    decided,
                    until=args.actions,
                    stall_s=args.stall_timeout,
                    give_up_s=args.stall_timeout + 30,
                )
            )
    finally:
        _stop(process)
    counts = _decisions(url)
    result.undecided = args.actions - len(counts)
    result.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    return result


@contextmanager
def _fresh_log(backend: str, tmp: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'{name}.db'}"
        return
    from ordinance.streams.kafka_broker import start_broker

    with start_broker() as broker:
        yield broker.url


def _cells(result: Result, actions: int, *, crash: bool) -> list[str]:
    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    def rate(value: float | None) -> str:
        return "—" if value is None else f"{value:,.0f}"

    last = result.parts[-1]
    outcome = (
        "drained"
        if last.done_s is not None
        else f"**stalled**: {actions - last.decided:,} of {actions:,} undecided"
    )
    rows = [outcome]
    if not crash:
        rows += [seconds(last.done_s), seconds(last.first_s), rate(last.rate())]
    else:
        before = result.parts[0]
        rows += [
            f"{before.decided:,}",
            seconds(last.first_s),
            seconds(last.done_s),
            rate(last.rate()),
        ]
    rows += [f"{result.undecided:,}", f"{result.duplicates:,}"]
    return rows


ROWS_CLEAN = [
    "clean start: outcome",
    "time to drain all, s (from the enforcer's start)",
    "first decision after, s",
    "decisions/s (first to last decision)",
    "undecided at the end (counted in agent.decisions)",
    "decided twice",
]
ROWS_CRASH = [
    "crash mid-drain: outcome",
    "decided when the first enforcer was killed",
    "restart: first decision after, s (incl. the dead member's session)",
    "restart: all decided after, s",
    "restart: decisions/s",
    "undecided at the end (counted in agent.decisions)",
    "decided twice",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "kafka"], default="kafka")
    parser.add_argument("--actions", type=int, default=100_000)
    parser.add_argument("--crash-at", type=float, default=0.3, help="fraction decided at the kill")
    parser.add_argument("--crash-after", type=float, default=30.0, help="or after this many s")
    parser.add_argument("--stall-timeout", type=float, default=60.0)
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--setting", default="catch-up", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.setting)
    settings = SETTINGS if args.backend == "kafka" else {"embedded (sqlite)": "catch-up"}
    results: dict[str, tuple[Result, Result]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for column, setting in settings.items():
            runs = []
            for crash in (False, True):
                name = f"{setting}-{'crash' if crash else 'clean'}"
                with _fresh_log(args.backend, Path(tmp), name) as url:
                    runs.append(_scenario(url, setting, args, crash=crash))
                print(f"done: {column}, {name}", file=sys.stderr, flush=True)
            results[column] = (runs[0], runs[1])
    write_s = max(r.write_s for pair in results.values() for r in pair)
    print(
        f"\nbacklog bench — {args.backend}, {args.actions:,} actions in batches of 1-10 "
        f"(written in ≤ {write_s:.1f} s), {os.cpu_count()} CPUs, "
        f"load {tuple(round(x, 2) for x in os.getloadavg())}; a drain is cut short after "
        f"{args.stall_timeout:g} s without progress or {args.stall_timeout + 30:g} s in all\n"
    )
    print("| | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for crash, labels in ((False, ROWS_CLEAN), (True, ROWS_CRASH)):
        columns = [_cells(pair[int(crash)], args.actions, crash=crash) for pair in results.values()]
        for index, label in enumerate(labels):
            print(f"| {label} | " + " | ".join(column[index] for column in columns) + " |")
    return 0


def _worker(url: str, setting: str) -> int:
    """One enforcer, until SIGTERM (or SIGKILL)."""
    if setting == "tail":
        from ordinance.streams import kafka_log

        kafka_log.CATCH_UP_CONSUMER = None  # the tailing consumer alone, as before the fix
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open_log(url) as log:
        Enforcer(log, enforcer_id=f"backlog-{os.getpid()}").run(stop=stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
