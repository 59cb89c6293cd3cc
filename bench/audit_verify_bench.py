"""``audit verify`` throughput on the embedded log, against its floor and a peer.

Builds a signed decisions log of ``--records`` real-sized Decision records (chain headers
and a signed checkpoint every 1000 records, as the enforcer and checkpointer write them;
the records are generated here rather than decided, to build large logs fast), then
times, median of ``--runs``:

- read:     reading the partitions raw (the floor every verifier pays);
- verify:   ``audit verify`` (chain, self-hashes, Merkle roots, signatures);
- decode:   decoding every record with fastavro, what a verifier that re-encoded records
            into a canonical form would pay before hashing anything.

    python bench/audit_verify_bench.py --records 200000
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ordinance.keys import Keyring, Signer, generate
from ordinance.processors.audit.checkpointer import Checkpointer
from ordinance.processors.audit.verify import verify_log
from ordinance.streams import Log, Record, open_log
from ordinance.streams.serde import Serde
from ordinance.streams.topics import AGENT_DECISIONS, ensure_topics

PARTITIONS = 4


def _decision(i: int) -> dict[str, object]:
    at = dt.datetime(2026, 11, 25, tzinfo=dt.UTC) + dt.timedelta(milliseconds=i)
    return {
        "request_id": f"req-{i:09d}",
        "agent_id": f"agent-{i % 97}",
        "effect": "deny" if i % 7 == 0 else "allow",
        "rule_ids": ["payments-guardrails/small-ok"],
        "reasons": ["within limits"],
        "code": "",
        "detail": "",
        "obligations": [],
        "bundle_id": "sha256:" + "ab" * 32,
        "policy_offset": 3,
        "evaluated_at": at,
        "enforcer_id": "enforcer-1",
        "action_offset": i // PARTITIONS,
        "prev_hash": None,
        "hash": None,
        "tool": "payments.transfer",
        "args": {"amount": str(i % 5000), "currency": "EUR", "country": "DE"},
        "event_time": at,
        "approval_ticket": None,
    }


def build(url: str, records: int, key: Path) -> None:
    from ordinance.processors.audit.chain import GENESIS, chain_headers, record_hash

    serde = Serde()
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_DECISIONS].name
        heads = [GENESIS] * PARTITIONS
        batch: list[Record] = []
        for i in range(records):
            p = i % PARTITIONS
            agent = f"agent-{i % 97}".encode()
            value = serde.encode("Decision", _decision(i))
            own = record_hash(heads[p], agent, value)
            batch.append(Record(agent, value, chain_headers(heads[p], own), None, p))
            heads[p] = own
            if len(batch) == 5000:
                log.produce(topic, batch)
                batch = []
        log.produce(topic, batch)
        Checkpointer(log, Signer.from_file(key), every_records=1000).run(
            until_idle=True, idle_s=0.3
        )


def _median(runs: int, work: Callable[[], int]) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        count = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), count


def measure(url: str, keyring: Keyring, runs: int) -> list[tuple[str, float, int]]:
    with open_log(url) as log:
        topic = ensure_topics(log)[AGENT_DECISIONS].name

        def read(log: Log = log) -> int:
            return sum(1 for _ in log.read_to_end(topic))

        def verify(log: Log = log) -> int:
            report = verify_log(log, keyring)
            if report.findings:
                raise SystemExit(f"the bench log does not verify: {report.findings[:3]}")
            return report.records

        serde = Serde()

        def decode(log: Log = log) -> int:
            return sum(1 for r in log.read_to_end(topic) if serde.decode_record(r) is not None)

        return [
            (name, *_median(runs, fn))
            for name, fn in (("read", read), ("verify", verify), ("decode", decode))
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        key, ring = Path(tmp) / "k.pem", Path(tmp) / "ring.json"
        generate(key, ring)
        url = f"sqlite:///{tmp}/bench.db"
        print(f"building a signed log of {args.records:,} decisions ...", file=sys.stderr)
        build(url, args.records, key)
        rows = measure(url, Keyring.from_file(ring), args.runs)
    verify_s = next(s for name, s, _ in rows if name == "verify")
    print(f"{'what':<8} {'records':>10} {'median s':>9} {'records/s':>11} {'vs verify':>9}")
    for name, seconds, count in rows:
        print(
            f"{name:<8} {count:>10,} {seconds:>9.3f} {count / seconds:>11,.0f} {verify_s / seconds:>8.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
