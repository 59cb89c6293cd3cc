"""Serde benchmark: µs per record to encode and decode an ActionRequest and a Decision, on
the fastavro path (``Serde(fast=False)``) and on the generated fast paths (``fastencode``,
``fastdecode``), in one run. The datums are built the way the client and the enforcer
build them (``request_to_wire``, ``decision_to_wire``).

    python bench/serde_bench.py [--repeat 7] [--number 20000]

Each cell is the median of ``--repeat`` timeit runs of ``--number`` calls. Both paths must
give the same bytes and the same decoded value before anything is timed (exit code 1
otherwise). A script that prints a markdown table, not a test: nothing is asserted on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import timeit
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ordinance.policy.decision import Decision
from ordinance.streams.fastencode import shared_encoder
from ordinance.streams.serde import MAGIC, Decoded, Serde
from ordinance.wire import decision_to_wire, request_to_wire

NOW = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)


def action_request() -> dict[str, Any]:
    """What the SDK publishes for a payments call (pipeline_bench's request shape)."""
    request = {
        "agent": {"id": "billing-bot-3", "roles": ["billing"], "team": "finance"},
        "action": {
            "tool": "payments.transfer",
            "args": {"amount": "412", "currency": "EUR", "country": "DE", "iban": "DE00"},
        },
        "context": {"business_hours": True, "session": "s-81f2"},
    }
    return request_to_wire(
        request,
        request_id="c1f6a1e2-5b7d-4e7a-9d0b-3a2f9c1e8b40",
        event_time=NOW,
        client_id="client-1",
        reply_to="decisions.client-1",
    )


def decision() -> dict[str, Any]:
    """What the enforcer writes for that request: an allow with one obligation."""
    answer = Decision(
        effect="allow",
        rule_ids=("payments/eu-transfers",),
        reasons=("EU transfer under the approval threshold",),
        obligations=({"log": {"level": "info", "limit": Decimal("1000.00")}},),
        bundle_id="sha256:9f2c4e0b7a1d",
    )
    return decision_to_wire(
        answer,
        request_id="c1f6a1e2-5b7d-4e7a-9d0b-3a2f9c1e8b40",
        agent_id="billing-bot-3",
        enforcer_id="enforcer-0",
        evaluated_at=NOW,
        action_offset=1_048_576,
        policy_offset=42,
        tool="payments.transfer",
        args={"amount": 412, "currency": "EUR", "country": "DE", "iban": "DE00"},
        event_time=NOW,
    )


def _calls(
    slow: Serde, fast: Serde, name: str, datum: dict[str, Any], raw: bytes
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Operation -> (fastavro path, fast path) for one record."""
    return {
        "encode": (lambda: slow.encode(name, datum), lambda: fast.encode(name, datum)),
        "decode": (lambda: slow.decode(raw), lambda: fast.decode(raw)),
    }


def _median_us(call: Callable[[], object], number: int, repeat: int) -> float:
    return statistics.median(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args(argv)
    slow, fast = Serde(fast=False), Serde()
    rows = []
    for name, datum in (("ActionRequest", action_request()), ("Decision", decision())):
        raw = slow.encode(name, datum)
        schema = slow.registry.current(name)
        encoder = shared_encoder(schema.parsed, MAGIC + schema.fingerprint)
        # The fast path must answer (not fall back) with the same bytes, and decode alike.
        if encoder is None or encoder(datum) != raw or fast.encode(name, datum) != raw:
            print(f"{name}: the fast encoder does not answer with fastavro's bytes")
            return 1
        decoded = slow.decode(raw)
        if not isinstance(decoded, Decoded) or fast.decode(raw) != decoded:
            print(f"{name}: the fast decoder does not answer like fastavro")
            return 1
        for op, (on_slow, on_fast) in _calls(slow, fast, name, datum, raw).items():
            before = _median_us(on_slow, args.number, args.repeat)
            after = _median_us(on_fast, args.number, args.repeat)
            rows.append((name, op, len(raw), before, after))
    print(f"median of {args.repeat} × {args.number} calls, µs per record\n")
    print("| record | op | bytes | fastavro path µs | fast path µs | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for name, op, size, before, after in rows:
        print(f"| {name} | {op} | {size} | {before:.1f} | {after:.1f} | {before / after:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
