#!/usr/bin/env python3
"""Hostile policy files are refused fast, and a catastrophic regex evaluates fast (issue 11).

    python bench/poison_bench.py          # markdown table
    python bench/poison_bench.py --json   # the same results as JSON

Each case of ``tests/policy/poison_corpus.py`` is written to a temp directory with the
example schema and loaded the way ``ordinance check`` loads it (``load_ruleset``); the time
is the best of a few runs, against the 1 s floor the issue sets. Then the nested-quantifier
pattern ``^/(a+)+$`` is matched (through a compiled policy, as the enforcer would) against
the 28-character path that stalls Python's backtracking ``re`` for more than 20 s, and one of
PATH_MAX (4,096) characters, the longest path a request may carry. Not a test: timings
belong here, the tests pin the behaviour.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/poison_bench.py` without an installed package
    sys.path.insert(0, str(ROOT))

from ordinance.policy.errors import PolicyErrors  # noqa: E402
from ordinance.policy.loader import load_ruleset  # noqa: E402
from ordinance.policy.ruleset import Ruleset  # noqa: E402
from tests.policy.poison_corpus import (  # noqa: E402
    CORPUS,
    REDOS_PATH,
    REDOS_PATTERN,
    Poison,
    bundle_files,
)

FLOOR_S = 1.0
REPEATS = 3


def _load(directory: Path) -> tuple[str, Ruleset | None]:
    try:
        return "compiled", load_ruleset(directory)
    except PolicyErrors as exc:
        first = exc.errors[0]
        return f"refused at {Path(first.location.file).name}:{first.location.line}", None


def refuse_case(poison: Poison) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, text in bundle_files(poison).items():
            (directory / name).write_text(text, encoding="utf-8")
        best = float("inf")
        verdict = ""
        for _ in range(REPEATS):
            started = time.perf_counter()
            verdict, _ruleset = _load(directory)
            best = min(best, time.perf_counter() - started)
    expected = "compiled" if poison.refusal is None else "refused"
    return {
        "case": poison.name,
        "seconds": best,
        "verdict": verdict,
        "as_expected": verdict.startswith(expected),
        "under_floor": best < FLOOR_S,
    }


def regex_timings() -> list[dict[str, Any]]:
    [redos] = [p for p in CORPUS if p.refusal is None]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, text in bundle_files(redos).items():
            (directory / name).write_text(text, encoding="utf-8")
        ruleset = load_ruleset(directory)
    rows = []
    for label, path in [
        ("28 chars, near miss", REDOS_PATH),
        ("4,096 chars (PATH_MAX)", "/" + "a" * 4_094 + "!"),
    ]:
        request = {
            "agent": {"id": "a1", "team": "t"},
            "action": {"tool": "fs.read", "args": {"path": path}},
        }
        ruleset.evaluate(request)  # warm-up
        runs = 200
        started = time.perf_counter()
        for _ in range(runs):
            decision = ruleset.evaluate(request)
        per_call = (time.perf_counter() - started) / runs
        rows.append(
            {
                "input": label,
                "pattern": REDOS_PATTERN,
                "seconds": per_call,
                "effect": decision.effect,
                "code": decision.code,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cases = [refuse_case(p) for p in CORPUS]
    regex = regex_timings()
    ok = all(c["as_expected"] and c["under_floor"] for c in cases)
    if args.json:
        print(json.dumps({"floor_seconds": FLOOR_S, "cases": cases, "regex": regex, "ok": ok}))
        return 0 if ok else 1
    print(f"## Hostile policy files (best of {REPEATS}; floor {FLOOR_S:.0f} s)\n")
    print("| case | seconds | verdict | under 1 s |")
    print("|---|---:|---|---|")
    for c in cases:
        mark = "yes" if c["under_floor"] else "**NO**"
        flag = "" if c["as_expected"] else " (**unexpected**)"
        print(f"| {c['case']} | {c['seconds']:.4f} | {c['verdict']}{flag} | {mark} |")
    print(f"\n## `{REDOS_PATTERN}` through a compiled policy (RE2)\n")
    print("| input | per evaluation | decision |")
    print("|---|---:|---|")
    for r in regex:
        print(f"| {r['input']} | {r['seconds'] * 1e6:.1f} µs | {r['effect']} ({r['code']}) |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
