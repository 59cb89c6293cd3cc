"""Audit query benchmark: questions to an index of 1M decisions, index searches against a
full scan of the same table in the same run.

    python bench/audit_query_bench.py [--decisions 1000000] [--runs 7] [--json]

The index is built from synthetic decision rows written through the indexer's own batch
path (`AuditIndex.write_batch`: the rows, their rule rows and offsets in one transaction
per batch, exactly what `audit index` writes — without decoding a million Avro records).
The Avro decode path is measured separately: ``--e2e`` Decision records are written to an
embedded log and indexed by `index_log`, as ``ordinance audit index`` does.

Rows: 10k agents with Zipf-like activity (the busiest does ~10% of all decisions), 30 days
of decision times in log order, 4 partitions, allow/deny/require_approval ~85/10/5, rule
ids from 40 policies. Rollouts, as on a live system: a canary (20 % of agents) on days
10-13 and a shadow of another candidate on days 20-23, whose verdict differs from the
enforced one on ~5 % of its decisions; ``--no-rollouts`` leaves them out (the log the
index had before it knew rollouts, for comparing build rates). Each query runs ``--runs`` times (after one warm-up); the table shows
the median. The baseline is the same SQL with ``NOT INDEXED``: SQLite must read the whole
table. Target (issue 5): agent + time over 1M indexed decisions well under a second.
A script that prints a table, not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ordinance.policy.decision import Decision
from ordinance.processors.audit.index_follow import index_log
from ordinance.processors.audit.indexer import AuditIndex, DecisionRow
from ordinance.processors.audit.query import QueryFilter, build_sql, explain, iso, micros
from ordinance.streams import Record, open_log
from ordinance.streams.serde import Serde
from ordinance.streams.topics import AGENT_DECISIONS, ensure_topics
from ordinance.wire import decision_to_wire

T0 = micros(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
DAY = 86_400_000_000
HOUR = 3_600_000_000
SPAN_DAYS = 30
PARTITIONS = 4
TOOLS = [
    f"{group}.{verb}" for group in ("payments", "fs", "db", "http", "email") for verb in "abcd"
]
POLICIES = [f"policy-{i:02d}" for i in range(40)]
BUNDLE = "sha256:" + "ab" * 32
CANARY = "sha256:" + "cd" * 32
SHADOW = "sha256:" + "ef" * 32
CANARY_DAYS = (10, 13)
SHADOW_DAYS = (20, 23)


def agents(count: int) -> tuple[list[str], list[float]]:
    names = [f"agent-{i:05d}" for i in range(count)]
    cumulative, total = [], 0.0
    for rank in range(1, count + 1):
        total += 1.0 / rank  # Zipf, s = 1: a few very busy agents, a long quiet tail
        cumulative.append(total)
    return names, cumulative


def synthetic_rows(
    count: int, agent_count: int, seed: int = 7, rollouts: bool = True
) -> list[DecisionRow]:
    rng = random.Random(seed)
    canary = (T0 + CANARY_DAYS[0] * DAY, T0 + CANARY_DAYS[1] * DAY)
    shadow = (T0 + SHADOW_DAYS[0] * DAY, T0 + SHADOW_DAYS[1] * DAY)
    names, cumulative = agents(agent_count)
    who = rng.choices(names, cum_weights=cumulative, k=count)
    effects = rng.choices(["allow", "deny", "require_approval"], weights=[85, 10, 5], k=count)
    step = SPAN_DAYS * DAY // max(count, 1)
    offsets = [0] * PARTITIONS
    rows = []
    for i in range(count):
        agent, effect = who[i], effects[i]
        partition = zlib.crc32(agent.encode()) % PARTITIONS
        offset = offsets[partition]
        offsets[partition] += 1
        at = T0 + i * step + rng.randrange(step or 1)
        policy = POLICIES[rng.randrange(len(POLICIES))]
        if effect == "allow":
            rules: tuple[str, ...] = (f"{policy}/allow-{rng.randrange(4)}",)
            if rng.random() < 0.3:
                rules = ()  # default allows name no rule
        elif effect == "deny":
            rules = (f"{policy}/deny-{rng.randrange(8)}",)
            if rng.random() < 0.2:
                rules += (f"{POLICIES[rng.randrange(len(POLICIES))]}/deny-0",)
        else:
            rules = (f"{policy}/approve-{rng.randrange(2)}",)
        code = "matched" if rules else "default"
        tool = TOOLS[rng.randrange(len(TOOLS))]
        row = DecisionRow(
            partition, offset, f"req-{i:09d}", agent, tool, effect, code, rules,
            BUNDLE, 3, at - rng.randrange(50_000), at, f"enforcer-{partition}",
        )  # fmt: skip
        if rollouts and canary[0] <= at < canary[1]:
            arm = "canary" if zlib.crc32(agent.encode()) % 5 == 0 else "control"
            row = row._replace(arm=arm, bundle_id=CANARY if arm == "canary" else BUNDLE)
        elif rollouts and shadow[0] <= at < shadow[1]:
            differs = rng.random() < 0.05
            row = row._replace(
                shadow_bundle_id=SHADOW,
                shadow_effect=("allow" if effect == "deny" else "deny") if differs else effect,
                shadow_code="matched" if rules or differs else "default",
                shadow_rule_ids=(f"{policy}/candidate",) if differs else rules,
            )
        rows.append(row)
    return rows


def build_index(path: Path, rows: list[DecisionRow], batch: int = 20_000) -> float:
    """Write ``rows`` through the indexer's batch path; returns seconds."""
    began = time.perf_counter()
    with AuditIndex(path, topic="bench.agent.decisions") as index:
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            ends: dict[int, int] = {}
            for r in chunk:
                ends[r.partition] = r.offset + 1
            index.write_batch(chunk, ends)
    return time.perf_counter() - began


def e2e_rate(records: int, rollouts: bool = True) -> dict[str, float]:
    """Decision records (Avro) on an embedded log, indexed by `index_log`."""
    serde = Serde()
    rows = synthetic_rows(records, 1000, seed=11, rollouts=rollouts)
    with tempfile.TemporaryDirectory(prefix="audit-query-e2e-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'log.db'}"
        with open_log(url) as log:
            topic = ensure_topics(log)[AGENT_DECISIONS].name
            batch = []
            for r in rows:
                decision = Decision(r.effect, r.rule_ids, (), (), BUNDLE, r.code)
                datum = decision_to_wire(
                    decision,
                    request_id=r.request_id,
                    agent_id=r.agent_id,
                    enforcer_id=r.enforcer_id,
                    evaluated_at=dt.datetime.fromtimestamp(r.evaluated_at / 1e6, dt.UTC),
                    policy_offset=r.policy_offset,
                    tool=r.tool,
                )
                datum["arm"] = r.arm
                if r.shadow_bundle_id is not None:
                    datum["shadow"] = {
                        "bundle_id": r.shadow_bundle_id,
                        "effect": r.shadow_effect,
                        "rule_ids": list(r.shadow_rule_ids or ()),
                        "code": r.shadow_code,
                        "detail": "",
                    }
                batch.append(Record(r.agent_id.encode(), serde.encode("Decision", datum)))
                if len(batch) == 5000:
                    log.produce(topic, batch)
                    batch = []
            log.produce(topic, batch)
            report = index_log(log, Path(tmp) / "index.db")
    return {"records": report.indexed, "seconds": report.seconds, "per_s": report.per_second}


@dataclass
class Row:
    query: str
    rows: int
    indexed_ms: float
    scan_ms: float
    plan: str
    agree: bool

    @property
    def speedup(self) -> float:
        return self.scan_ms / max(self.indexed_ms, 1e-6)


def _timed(conn: sqlite3.Connection, sql: str, params: list[Any], runs: int) -> tuple[float, Any]:
    result = conn.execute(sql, params).fetchall()  # warm-up; the answer compared below
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000, result


def queries(agent_count: int) -> list[tuple[str, QueryFilter]]:
    names, _ = agents(agent_count)
    busiest, typical = names[0], names[min(50, agent_count - 1)]
    mid = T0 + SPAN_DAYS * DAY // 2
    return [
        ("agent (busiest) + 1 day", QueryFilter(agent=busiest, since=mid, until=mid + DAY)),
        ("agent (busiest) + 7 days", QueryFilter(agent=busiest, since=mid, until=mid + 7 * DAY)),
        ("agent (typical) + 7 days", QueryFilter(agent=typical, since=mid, until=mid + 7 * DAY)),
        ("agent (typical), all time", QueryFilter(agent=typical)),
        ("time range 1 hour", QueryFilter(since=mid, until=mid + HOUR)),
        ("time range 1 hour + deny", QueryFilter(since=mid, until=mid + HOUR, effect="deny")),
        ("time range 1 day + deny", QueryFilter(since=mid, until=mid + DAY, effect="deny")),
        ("policy + 1 day", QueryFilter(policy=POLICIES[3], since=mid, until=mid + DAY)),
        ("arm canary, all time", QueryFilter(arm="canary")),
        (
            "arm control + 1 day",
            QueryFilter(arm="control", since=T0 + 11 * DAY, until=T0 + 12 * DAY),
        ),
        ("shadow disagrees, all time", QueryFilter(shadow_disagrees=True)),
        ("shadow disagrees + deny", QueryFilter(shadow_disagrees=True, effect="deny")),
        (
            "shadow bundle prefix + 1 day",
            QueryFilter(shadow_bundle=SHADOW[7:15], since=T0 + 21 * DAY, until=T0 + 22 * DAY),
        ),
    ]


def full_scan_sql(f: QueryFilter) -> tuple[str, list[Any]]:
    """The same question with every index forbidden: what reading the table costs. A
    policy filter becomes a test on the decision's own rule ids (the lookup table is an
    index in all but name)."""
    sql, params = build_sql(replace(f, policy=None))
    sql = sql.replace("FROM decisions ", "FROM decisions NOT INDEXED ", 1)
    if f.policy is not None:
        assert f.limit is None and f.rule is None and " WHERE " in sql
        sql = sql.replace(
            " ORDER BY", " AND instr(char(10) || rule_ids, char(10) || ? || '/') > 0 ORDER BY"
        )
        params.append(f.policy)
    return sql, params


def measure(path: Path, agent_count: int, runs: int) -> list[Row]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    out = []
    for label, f in queries(agent_count):
        sql, params = build_sql(f)
        indexed_ms, answer = _timed(conn, sql, params, runs)
        scan_sql, scan_params = full_scan_sql(f)
        scan_ms, scan_answer = _timed(conn, scan_sql, scan_params, runs)
        plan = " / ".join(explain(conn, f))
        out.append(Row(label, len(answer), indexed_ms, scan_ms, plan, answer == scan_answer))
    conn.close()
    return out


def cli_round_trip(path: Path, agent_count: int, runs: int) -> dict[str, Any]:
    """What an auditor waits for: ``ordinance audit query`` as a process (interpreter and
    imports included), agent + 7 days, all rows as JSON."""
    label, f = queries(agent_count)[2]
    assert f.agent is not None and f.since is not None and f.until is not None
    argv = [sys.executable, "-m", "ordinance.cli", "audit", "query", "--index", str(path)]
    argv += ["--agent", f.agent, "--since", iso(f.since) or "", "--until", iso(f.until) or ""]
    argv += ["--limit", "0", "--json"]
    times, count = [], 0
    for _ in range(max(runs, 1)):
        began = time.perf_counter()
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
        times.append(time.perf_counter() - began)
        count = json.loads(done.stdout)["count"]
    startup = []
    for _ in range(max(runs, 1)):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ordinance.cli", "--version"], check=True, capture_output=True
        )
        startup.append(time.perf_counter() - began)
    return {
        "query": label,
        "rows": count,
        "ms": statistics.median(times) * 1000,
        "startup_ms": statistics.median(startup) * 1000,
    }


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['decisions']:,} decisions ({result['rule_rows']:,} rule rows, "
        f"{result['rollout_rows']:,} of a canary or shadow), index "
        f"{result['index_mb']:.0f} MB, built in {result['build_s']:.1f}s "
        f"({result['build_per_s']:,.0f} rows/s through AuditIndex.write_batch); "
        f"`index_log` end to end (Avro decode + insert) {result['e2e']['per_s']:,.0f} "
        f"records/s over {result['e2e']['records']:,}; median of {result['runs']} runs; "
        f"{result['environment']}",
        "",
        "| query | rows | indexed ms | full scan ms | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    cli = result.get("cli")
    for r in result["rows"]:
        speedup = r["scan_ms"] / max(r["indexed_ms"], 1e-6)
        lines.append(
            f"| {r['query']} | {r['rows']:,} | {r['indexed_ms']:,.2f} | {r['scan_ms']:,.1f}"
            f" | {speedup:,.0f}x |"
        )
    if cli:
        lines.append(
            f"\n`ordinance audit query` as a process, {cli['query']} ({cli['rows']:,} rows as "
            f"JSON): {cli['ms']:,.0f} ms, of which interpreter and imports "
            f"(`ordinance --version`) {cli['startup_ms']:,.0f} ms"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--e2e", type=int, default=50_000, help="records through index_log")
    parser.add_argument("--index", default=None, help="keep the index at this path")
    parser.add_argument(
        "--no-rollouts", action="store_true", help="no canary or shadow decisions in the rows"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    env = environment()
    with tempfile.TemporaryDirectory(prefix="audit-query-bench-") as tmp:
        path = Path(args.index) if args.index else Path(tmp) / "index.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        print(f"generating {args.decisions:,} decisions…", file=sys.stderr)
        rows = synthetic_rows(args.decisions, args.agents, rollouts=not args.no_rollouts)
        print("building the index…", file=sys.stderr)
        build_s = build_index(path, rows)
        print("timing queries…", file=sys.stderr)
        measured = measure(path, args.agents, args.runs)
        print("timing `ordinance audit query` as a process…", file=sys.stderr)
        cli = cli_round_trip(path, args.agents, min(args.runs, 5))
        print(f"indexing {args.e2e:,} Avro records through index_log…", file=sys.stderr)
        result = {
            "decisions": len(rows),
            "rule_rows": sum(len(r.rule_ids) for r in rows),
            "index_mb": sum(
                Path(f"{path}{s}").stat().st_size
                for s in ("", "-wal")
                if Path(f"{path}{s}").exists()
            )
            / 1e6,
            "build_s": build_s,
            "build_per_s": len(rows) / build_s,
            "e2e": e2e_rate(args.e2e, rollouts=not args.no_rollouts),
            "rollout_rows": sum(r.arm is not None or r.shadow_effect is not None for r in rows),
            "runs": args.runs,
            "cli": cli,
            "environment": env,
            "rows": [{**asdict(r), "speedup": r.speedup} for r in measured],
        }
    if args.json:
        print(json.dumps(result))
    else:
        print(markdown(result))
        agent = [r for r in measured if r.query.startswith("agent")]
        worst = max(r.indexed_ms for r in agent)
        print(
            f"\nTarget: agent + time over {len(rows):,} decisions well under 1 s — "
            f"slowest agent query {worst:,.1f} ms: {'met' if worst < 1000 else 'MISSED'}"
        )
        if not all(r.agree for r in measured):
            print("indexed and full-scan answers DIFFER", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
