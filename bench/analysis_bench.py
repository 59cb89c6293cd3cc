#!/usr/bin/env python3
"""Formal analysis speed: wall time per check family on the example set and on generated
sets of 100 and 1000 rules.

    python bench/analysis_bench.py              # 3 runs per set, markdown table
    python bench/analysis_bench.py --quick      # the 100-rule set once (CI smoke)
    python bench/analysis_bench.py --runs 5 --jobs 2 --timeout 5000

Each run is the full analysis (``ordinance analyze DIR --jobs N``: conflicts, dead and
redundant rules, assertions, gaps) of a freshly loaded bundle; the table shows the median
run. Per-family seconds are summed over tools, so with ``--jobs 2`` they add up to about
twice the wall time; "wall" is the whole analysis as a user waits for it.

The generated sets (:func:`generate`) are 10 tools with ``amount: int`` and
``region: string`` arguments, policies of 10 rules each (one tool per policy, round
robin, 7 owners): every rule is an ``amount`` range, half of them also a ``region``
equality, with mixed effects; every policy asserts ``never: allow`` above a cap.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/analysis_bench.py` without an installed package
    sys.path.insert(0, str(ROOT))

from ordinance.policy.analysis import Options, analyze  # noqa: E402
from ordinance.policy.loader import load_ruleset  # noqa: E402

EXAMPLES = ROOT / "examples" / "policies"
FAMILIES = ("encode", "conflicts", "rules", "assertions", "gaps")
TOOLS = 10
RULES_PER_POLICY = 10
REGIONS = ("eu", "us", "ap", "sa", "af")


def generate(directory: Path, rules: int, seed: int = 7) -> None:
    """Write a schema and ``rules // 10`` policies into ``directory``."""
    rng = random.Random(seed)
    tools = [f"svc{n}.call" for n in range(TOOLS)]
    schema = ["agent:", "  team: string", "tools:"]
    for tool in tools:
        schema += [
            f"  {tool}:",
            "    description: generated",
            "    args: {amount: int, region: string}",
        ]
    schema += ["settings:", "  default_effect: deny", "  combining: deny-overrides"]
    (directory / "schema.yaml").write_text("\n".join(schema) + "\n", encoding="utf-8")
    for p in range(max(1, rules // RULES_PER_POLICY)):
        lines = [
            f"policy: gen-{p:04d}",
            f"owner: team-{p % 7}",
            "description: generated",
            f"target: {{actions: [{tools[p % TOOLS]}]}}",
            "rules:",
        ]
        for r in range(min(rules, RULES_PER_POLICY)):
            lo = rng.randrange(0, 100_000, 100)
            hi = lo + rng.randrange(100, 2_000, 100)
            when = f"action.args.amount > {lo} && action.args.amount <= {hi}"
            if rng.random() < 0.5:
                when += f' && action.args.region == "{rng.choice(REGIONS)}"'
            effect = rng.choice(("allow", "allow", "deny", "require_approval"))
            lines += [f"  - id: r{r}", f"    effect: {effect}", f"    when: '{when}'"]
        lines += [
            "assertions:",
            "  - {name: cap, never: allow, when: 'action.args.amount > 150000'}",
        ]
        (directory / f"gen-{p:04d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class Row:
    name: str
    rules: int
    tools: int
    checks: int
    families: dict[str, float]
    wall: float
    counts: dict[str, int] = field(default_factory=dict)


def measure(name: str, directory: Path, runs: int, jobs: int, timeout_ms: int) -> Row:
    rows: list[Row] = []
    for _ in range(runs):
        ruleset = load_ruleset(directory)
        report = analyze(ruleset, Options(timeout_ms=timeout_ms), jobs=jobs, directory=directory)
        counts: dict[str, int] = {}
        for f in report.findings:
            counts[f.kind] = counts.get(f.kind, 0) + 1
        rows.append(
            Row(
                name,
                report.rules,
                report.tools,
                report.checks,
                report.family_seconds,
                report.seconds,
                counts,
            )
        )
    rows.sort(key=lambda r: r.wall)
    median = rows[len(rows) // 2]
    median.families = {f: statistics.median(r.families.get(f, 0.0) for r in rows) for f in FAMILIES}
    return median


def markdown(
    rows: Sequence[Row], runs: int, jobs: int, timeout_ms: int, load: Sequence[float]
) -> str:
    head = (
        f"Median of {runs} run(s); `--jobs {jobs}`, `--timeout {timeout_ms}`; "
        f"{os.cpu_count()} CPUs, load at start {[round(x, 2) for x in load]}.\n\n"
        "| set | rules | tools | checks | "
        + " | ".join(f"{f} s" for f in FAMILIES)
        + " | wall s | findings |\n|---|---:|---:|---:|"
        + "---:|" * len(FAMILIES)
        + "---:|---|"
    )
    lines = [head]
    for r in rows:
        found = ", ".join(f"{n} {k}" for k, n in sorted(r.counts.items()))
        fam = " | ".join(f"{r.families.get(f, 0.0):.1f}" for f in FAMILIES)
        lines.append(
            f"| {r.name} | {r.rules} | {r.tools} | {r.checks} | {fam} | {r.wall:.1f} | {found} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the 100-rule set once")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=5000, help="per-check limit in ms")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    load = os.getloadavg()  # the machine is shared: say how busy it was
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ordinance-analysis-bench-") as tmp:
        sets: list[tuple[str, Path]] = [] if args.quick else [("examples", EXAMPLES)]
        for size in (100,) if args.quick else (100, 1000):
            d = Path(tmp) / f"generated-{size}"
            d.mkdir()
            generate(d, size)
            sets.append((f"generated-{size}", d))
        for name, directory in sets:
            print(f"analysing {name} ...", file=sys.stderr, flush=True)
            rows.append(measure(name, directory, runs, args.jobs, args.timeout))
    print(markdown(rows, runs, args.jobs, args.timeout, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
