#!/usr/bin/env python3
"""The worst request of a size-limited adversarial set: how long one evaluation takes.

    python bench/adversarial_bench.py            # table
    python bench/adversarial_bench.py --json     # the same as JSON

Each case is a request at (or just past) the input limits of ordinance.policy.canon —
the longest strings, the longest lists, runs of combining marks NFKC must reorder, paths
and URLs full of dot segments, decimals at their longest — evaluated against the example
policies. The floor is a small ordinary request. Target: every case under 1 ms (the
limits are what make it so: NFKC alone is quadratic without them). Timings are medians
and maxima of single timed calls after a warm-up, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/adversarial_bench.py` without an install
    sys.path.insert(0, str(ROOT))

from ordinance.policy import canon  # noqa: E402
from ordinance.policy.loader import load_ruleset  # noqa: E402

TARGET_MS = 1.0
AGENT = {"id": "a1", "roles": ["billing"], "team": "ops"}
# Non-ASCII text weighs NON_ASCII_WEIGHT per character: the most a request can hold.
HALF = canon.MAX_REQUEST_CHARS // canon.NON_ASCII_WEIGHT // 2 - 64


def req(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"agent": AGENT, "action": {"tool": tool, "args": args}}


def combining(n: int) -> str:
    """Text NFKC must reorder: base letters, each followed by 30 marks of two classes."""
    unit = "a" + "\u0316\u0301" * (canon.MAX_NONSTARTER_RUN // 2)
    return (unit * (n // len(unit) + 1))[:n]


def cases() -> dict[str, dict[str, Any]]:
    mail = {"subject": "s", "body": "b"}
    return {
        "floor: small allowed read": req("fs.read", {"path": "/workspace/src/main.py"}),
        "path: 4096 chars of /./ and ..": req(
            "fs.read", {"path": ("/workspace/a/./b/.." * 300)[: canon.MAX_PATH_CHARS]}
        ),
        "path: 4096 chars, regex rules scan it": req(
            "fs.read", {"path": "/workspace/" + "x/" * 2040 + ".ssh"}
        ),
        "url: 8192 chars of dot segments": req(
            "http.fetch",
            {"url": ("https://docs.python.org/3" + "/a/./b/.." * 1000)[:8000], "method": "GET"},
        ),
        "email: 256 recipients": req(
            "email.send",
            {"to": [f"user{i}@acme.example" for i in range(canon.MAX_LIST_ITEMS)], **mail},
        ),
        "strings: 2 x 4k of combining marks (NFKC)": req(
            "email.send",
            {"to": ["a@acme.example"], "subject": combining(HALF), "body": combining(HALF)},
        ),
        "refused: 16k combining marks in one run": req(
            "email.send", {"to": ["a@acme.example"], "subject": "a" + "\u0301" * 16000, "body": "b"}
        ),
        "refused: 2 x 16k non-ASCII (over the request limit)": req(
            "email.send",
            {"to": ["a@acme.example"], "subject": "é" * 16000, "body": "é" * 16000},
        ),
        "refused: a string over the limit": req(
            "email.send",
            {"to": ["a@acme.example"], "subject": "x" * (canon.MAX_STRING_CHARS + 1), "body": "b"},
        ),
        "refused: 60 comma-joined addresses": req(
            "email.send", {"to": [",".join(f"a{i}@acme.example" for i in range(60))], **mail}
        ),
        "decimal: 399 digits": req(
            "payments.transfer",
            {"amount": "9" * 399, "currency": "EUR", "country": "FR", "iban": "X"},
        ),
        "tool: 253 fullwidth letters": req("ｘ" * 253, {}),
        "refused: a 1 MB tool name": req("x" * 1_000_000, {}),
    }


def measure(rs: Any, request: dict[str, Any], runs: int) -> tuple[float, float]:
    for _ in range(5):
        rs.evaluate(request)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        rs.evaluate(request)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(samples), max(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=200)
    opts = parser.parse_args()
    rs = load_ruleset(ROOT / "examples" / "policies")
    rows = []
    for name, request in cases().items():
        decision = rs.evaluate(request)
        median, worst = measure(rs, request, opts.runs)
        rows.append(
            {
                "case": name,
                "decision": f"{decision.effect}/{decision.code}",
                "median_ms": round(median, 4),
                "max_ms": round(worst, 4),
            }
        )
    floor = rows[0]["median_ms"]
    worst_median = max(r["median_ms"] for r in rows)
    if opts.json:
        print(json.dumps({"rows": rows, "floor_ms": floor, "target_ms": TARGET_MS}, indent=2))
    else:
        print("| case | decision | median ms | max ms |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['case']} | {r['decision']} | {r['median_ms']} | {r['max_ms']} |")
        print(
            f"\nfloor (small request): {floor} ms; worst median: {worst_median} ms;"
            f" target: every median under {TARGET_MS} ms -> {'met' if worst_median < TARGET_MS else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
