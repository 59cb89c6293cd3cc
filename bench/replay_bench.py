"""Replay benchmark: decisions/s of ``replay verify`` (the enforcer's fold and decide re-run
and compared), ``replay whatif`` and offline verify of an exported slice, on the embedded
log, against the live enforcer's sustained decisions/s measured on the same log in the same
run.

    python bench/replay_bench.py [--decisions 30000] [--jobs 2] [--repeat 3]

The log is built by the real pipeline: the example bundle published and enforced by the
controller, a backlog of mixed agent traffic (the demo's routine work and attacks, spread
over 40 agents and all four partitions) decided by one ``Enforcer``, a hot swap to the
stricter bundle half-way. Each replay row is the median of ``--repeat`` runs (the machine
is shared: one run can land on a busy second). Target (issue 6): >= 50k decisions/s replayed on the embedded
backend. A script that prints a table, not a test: no timing assertions anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from ordinance.commands.demo_pipeline import ATTACKS, routine, stricter
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.policy_log import publish_bundle
from ordinance.replay.bundles import BundleStore
from ordinance.replay.export import export_slice
from ordinance.replay.findings import compare
from ordinance.replay.source import FileSource, LogSource, open_source
from ordinance.replay.times import Window
from ordinance.replay.verify import decide_again, verify
from ordinance.replay.walk import new_state
from ordinance.replay.whatif import whatif
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import AGENT_ACTIONS, ensure_topics
from ordinance.wire import request_to_wire


class _Timed(Protocol):
    seconds: float


R = TypeVar("R", bound=_Timed)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "policies"
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _traffic(count: int, first: int, rng: random.Random) -> list[Record]:
    serde = Serde()
    records = []
    for i in range(first, first + count):
        if i % 25 == 0:
            _label, request = ATTACKS[(i // 25) % len(ATTACKS)]
        else:
            _label, request = routine(rng)
        agent = dict(request["agent"])
        agent["id"] = f"{agent['id']}-{i % 8}"  # 40 agents: every partition busy
        request = {**request, "agent": agent}
        at = T0 + dt.timedelta(milliseconds=250 * i)
        wire = request_to_wire(request, request_id=f"bench-{i}", event_time=at, client_id="bench")
        key = agent["id"].encode()
        records.append(
            Record(key, serde.encode("ActionRequest", wire), (), int(at.timestamp() * 1000))
        )
    return records


def build(url: str, decisions: int) -> dict[str, float]:
    """Publish, enforce half the traffic, hot-swap, enforce the rest; the enforcer's rate."""
    files = read_bundle_dir(EXAMPLES)
    strict = stricter(files)
    rng = random.Random(6)
    seconds = 0.0
    decided = 0
    with open_log(url) as log:
        ensure_topics(log)
        topic = ensure_topics(log)[AGENT_ACTIONS].name
        for phase, bundle in enumerate((files, strict)):
            publish_bundle(log, bundle, compile_bundle(bundle).bundle_id, actor="bench")
            run_controller(log, once=True)
            half = decisions // 2
            log.produce(topic, _traffic(half, phase * half, rng))
            started = time.perf_counter()
            report = Enforcer(log, enforcer_id="bench-enforcer").run(until_idle=True, idle_s=0.5)
            # The idle wait is not deciding time.
            seconds += time.perf_counter() - started - 0.5
            decided += report.decided
    return {"decided": decided, "seconds": seconds}


def _median(run: Callable[[], R], repeat: int) -> R:
    """The run whose ``seconds`` is the median of ``repeat`` runs."""
    reports = sorted((run() for _ in range(repeat)), key=lambda r: r.seconds)
    return reports[len(reports) // 2]


def _row(name: str, decisions: int, seconds: float, live_rate: float) -> str:
    rate = decisions / seconds if seconds > 0 else 0.0
    return f"| {name} | {decisions:,} | {seconds:.2f} | {rate:,.0f} | {rate / live_rate:.1f}x |"


def breakdown(url: str, sample: int = 4000) -> dict[str, float]:
    """Microseconds per decision of each step verify takes, on one partition's first
    ``sample`` decisions: where the time goes."""
    serde = Serde()
    with open_log(url) as log:
        source = LogSource(log)
        bundles = BundleStore.load(source)
        for bundle_id in bundles.bundle_ids:
            bundles.ruleset(bundle_id)
        started = time.perf_counter()
        records = list(source.read("agent.decisions", 0, headers=False))
        actions = {r.offset: r for r in source.read("agent.actions", 0, headers=False)}
        read_s = time.perf_counter() - started
    started = time.perf_counter()
    decoded = [serde.decode_record(r) for r in records]
    decode_decisions_s = time.perf_counter() - started
    pairs = [(r, d) for r, d in zip(records, decoded, strict=True) if isinstance(d, Decoded)]
    wanted = [d.value["action_offset"] for _r, d in pairs if d.name == "Decision"][:sample]
    started = time.perf_counter()
    decoded_actions = {o: serde.decode_record(actions[o], expect={"ActionRequest"}) for o in wanted}
    decode_actions_s = time.perf_counter() - started
    state = new_state(0)
    decide_s = compare_s = fold_s = 0.0
    n = 0
    for record, d in pairs:
        if d.name == "Decision" and n < sample:
            n += 1
            action = decoded_actions[d.value["action_offset"]]
            assert state.bundle_id is not None
            t0 = time.perf_counter()
            again = decide_again(
                state,
                bundles.ruleset(state.bundle_id),
                action,
                action_offset=d.value["action_offset"],
                agent_key=record.key,
                recorded=d.value,
            )
            t1 = time.perf_counter()
            assert again is not None and not compare(d.value, again)
            t2 = time.perf_counter()
            decide_s += t1 - t0
            compare_s += t2 - t1
        t2 = time.perf_counter()
        state.fold(d.name, d.value, record.offset)
        fold_s += time.perf_counter() - t2
    decisions = sum(1 for _r, d in pairs if d.name == "Decision")
    return {
        "read both topics (SQLite)": read_s / decisions * 1e6,
        "decode a decisions record": decode_decisions_s / len(records) * 1e6,
        "decode the action": decode_actions_s / n * 1e6,
        "decide (enforcer_state.decide)": decide_s / n * 1e6,
        "compare": compare_s / n * 1e6,
        "fold (PartitionState.fold)": fold_s / len(records) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=30_000)
    parser.add_argument("--jobs", type=int, default=2, help="workers for the --jobs rows")
    parser.add_argument("--repeat", type=int, default=3, help="runs per replay row (median)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        print(
            f"building a log of {args.decisions:,} decisions with the real enforcer ...",
            file=sys.stderr,
        )
        live = build(url, args.decisions)
        live_rate = live["decided"] / live["seconds"]
        rows = [
            _row(
                "live enforcer (same log, same run)",
                int(live["decided"]),
                live["seconds"],
                live_rate,
            )
        ]
        reopen = functools.partial(open_source, url, None)
        with open_log(url) as log:
            source = LogSource(log)
            bundles = BundleStore.load(source)
            for bundle_id in bundles.bundle_ids:
                bundles.ruleset(bundle_id)  # compiling bundles is not replay throughput
            report = _median(lambda: verify(source, bundles=bundles), args.repeat)
            assert report.ok, f"the bench log must replay clean: {report.findings[:1]}"
            rows.append(_row("replay verify", report.decisions, report.seconds, live_rate))
            forked = _median(
                lambda: verify(source, bundles=bundles, jobs=args.jobs, reopen=reopen), args.repeat
            )
            assert forked.ok
            rows.append(
                _row(
                    f"replay verify --jobs {args.jobs}", forked.decisions, forked.seconds, live_rate
                )
            )
            candidate = compile_bundle(stricter(stricter(read_bundle_dir(EXAMPLES))))
            changes = _median(lambda: whatif(source, candidate), args.repeat)
            rows.append(_row("replay whatif", changes.evaluated, changes.seconds, live_rate))
            changes = _median(
                lambda: whatif(source, candidate, jobs=args.jobs, reopen=reopen), args.repeat
            )
            rows.append(
                _row(
                    f"replay whatif --jobs {args.jobs}",
                    changes.evaluated,
                    changes.seconds,
                    live_rate,
                )
            )
            # Everything before --from is folded, not verified: the state rebuild alone.
            future = Window(dt.datetime(2100, 1, 1, tzinfo=dt.UTC), None)
            rebuild = _median(lambda: verify(source, bundles=bundles, window=future), args.repeat)
            folded = sum(c.records for c in rebuild.partitions.values())
            rows.append(
                _row("state rebuild to --from (fold only)", folded, rebuild.seconds, live_rate)
            )
            slice_path = Path(tmp) / "slice.avro"
            started = time.perf_counter()
            export_slice(source, slice_path, window=Window())
            export_s = time.perf_counter() - started
        offline = _median(lambda: verify(FileSource(slice_path)), args.repeat)
        assert offline.ok
        rows.append(
            _row(
                "replay verify --input (exported slice, incl. compiling bundles)",
                offline.decisions,
                offline.seconds,
                live_rate,
            )
        )
        parts = breakdown(url)
    load = tuple(round(x, 2) for x in os.getloadavg())
    print(
        f"replay bench — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load at end {load}, "
        f"{args.decisions:,} decisions (export took {export_s:.2f} s), "
        f"replay rows the median of {args.repeat} runs\n"
    )
    print("| run | decisions | seconds | decisions/s | vs live enforcer |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(row)
    print("\nwhere verify spends its time, per decision (one process):\n")
    print("| step | µs |")
    print("|---|---:|")
    for name, micros in parts.items():
        print(f"| {name} | {micros:.1f} |")
    print("\ntarget: replay >= 50,000 decisions/s on the embedded backend")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
