"""Whole-bundle analysis: every tool bucket, in this process or in parallel workers."""

from __future__ import annotations

import multiprocessing
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ordinance.policy.analysis.checks import Finding, Options, ToolReport, analyze_tool
from ordinance.policy.analysis.combine import rule_tools
from ordinance.policy.ruleset import Ruleset, tools_matching

ORDER = {"assertion": 0, "conflict": 1, "dead-rule": 2, "redundant-rule": 3, "gap": 4,
         "unknown": 5, "inexact": 6}  # fmt: skip


@dataclass
class Report:
    bundle_id: str
    findings: list[Finding] = field(default_factory=list)
    proven: list[str] = field(default_factory=list)
    tools: int = 0
    rules: int = 0
    checks: int = 0
    rlimit: int = 0  # resource units per solver check (the budget)
    max_spent: int = 0  # the most units one check used: the headroom under the budget
    # per tool: the classes of each abstracted string, and the strings left exact (why)
    abstraction: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    # per check family, summed over tools (with --jobs, time spent in all workers)
    family_seconds: dict[str, float] = field(default_factory=dict)

    def by_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.kind] = counts.get(f.kind, 0) + 1
        return {
            "bundle_id": self.bundle_id,
            "tools": self.tools,
            "rules": self.rules,
            "checks": self.checks,
            "budget": {"rlimit": self.rlimit, "max_spent_per_check": self.max_spent},
            "undecided": len(self.by_kind("unknown")),
            "seconds": round(self.seconds, 3),
            "family_seconds": {k: round(v, 3) for k, v in sorted(self.family_seconds.items())},
            "counts": counts,
            "proven_assertions": sorted(self.proven),
            "abstraction": self.abstraction,
            "findings": [f.to_json() for f in self.findings],
        }


def touched_tools(ruleset: Ruleset, policy_ids: set[str]) -> set[str]:
    """The tool buckets the given policies' rules and assertions reach: re-analysing only
    these after an edit gives every finding the edit can change (a bucket's findings
    depend on the rules in it alone)."""
    schema = ruleset.schema
    out: set[str] = set()
    for cr in ruleset.rules:
        if cr.policy.id in policy_ids:
            out |= rule_tools(cr, schema)
    for policy in ruleset.policies:
        if policy.id in policy_ids and policy.assertions:
            out |= tools_matching(policy.target.actions, schema)
    return out


def merge(ruleset: Ruleset, reports: list[ToolReport], only: set[str] | None = None) -> Report:
    """Per-tool results into bundle findings: a rule is dead only if it is dead on every
    tool it targets; an assertion is proven only if it holds on every tool. With
    ``only`` (some tools analysed), a rule is judged dead only when all its tools were."""
    out = Report(ruleset.bundle_id, tools=len(reports), rules=len(ruleset.rules))
    alive: set[str] = set()
    candidates: dict[str, Finding] = {}
    refuted: set[str] = set()
    proven: set[str] = set()
    for rep in reports:
        out.checks += rep.checks
        out.max_spent = max(out.max_spent, rep.max_spent)
        if rep.abstraction:
            out.abstraction[rep.tool] = rep.abstraction
        for family, spent in rep.seconds.items():
            out.family_seconds[family] = out.family_seconds.get(family, 0.0) + spent
        alive |= rep.alive
        for rid, f in rep.dead_candidates.items():
            # keep a candidate with a witness in preference to one without
            if rid not in candidates or (candidates[rid].witness is None and f.witness is not None):
                candidates[rid] = f
        out.findings += rep.findings
        proven |= set(rep.proven)
        refuted |= {
            s for f in rep.findings if f.kind in ("assertion", "unknown") for s in f.subjects
        }
    for cr in ruleset.rules:
        rid = cr.qualified_id
        if not rule_tools(cr, ruleset.schema):
            out.findings.append(
                Finding(
                    "dead-rule", "", (rid,), f"{rid} targets no tool", details={"reason": "no tool"}
                )
            )
        elif (
            rid not in alive
            and rid in candidates
            and (only is None or rule_tools(cr, ruleset.schema) <= only)
        ):
            out.findings.append(candidates[rid])
    out.proven = sorted(proven - refuted)
    out.findings.sort(key=lambda f: (ORDER.get(f.kind, 9), f.tool, f.subjects))
    return out


def _progress(done: int, total: int, tool: str, started: float) -> None:
    sys.stderr.write(f"\ranalysis: {done}/{total} tools ({tool}) {time.monotonic() - started:.1f}s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def analyze(
    ruleset: Ruleset,
    options: Options | None = None,
    *,
    progress: bool = False,
    jobs: int = 1,
    directory: Path | None = None,
    only: set[str] | None = None,
) -> Report:
    """Analyse every tool of the bundle (or the tools in ``only``: incremental analysis
    of a changed policy, see ``touched_tools``). ``jobs > 1`` needs ``directory``
    (workers load the bundle themselves: compiled rulesets and Z3 terms do not cross
    processes)."""
    options = options or Options()
    started = time.monotonic()
    tools = sorted(t for t in ruleset.schema.tools if only is None or t in only)
    reports: list[ToolReport] = []
    if jobs > 1 and directory is not None and len(tools) > 1:
        _LOADED.clear()
        _LOADED[str(directory)] = ruleset
        # Built once here rather than in every forked worker that encodes a lower().
        from ordinance.policy.codegen import lower_table

        lower_table()
        # The largest buckets first (longest-processing-time scheduling): the wall time
        # is not left to whichever big tool comes last. Only the order of work changes;
        # reports are merged in tool order, each tool in its own process as before.
        order = sorted(tools, key=lambda t: (-_weight(ruleset, t), t))
        # One forked process per tool (maxtasksperchild=1): every tool starts from the
        # parent's Z3 state, whichever worker runs it after whichever other tool. Z3's
        # search depends on term ids, which depend on what was built before; with shared
        # workers the schedule (and so the machine's load) could change a check's path.
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes=jobs, maxtasksperchild=1) as pool:
            work = partial(_worker, str(directory), options=options)
            for n, rep in enumerate(pool.imap(work, order, chunksize=1), 1):
                reports.append(rep)
                if progress:
                    _progress(n, len(tools), order[n - 1], started)
        reports.sort(key=lambda r: r.tool)
    else:
        for n, tool in enumerate(tools, 1):
            reports.append(analyze_tool(ruleset, tool, options))
            if progress:
                _progress(n, len(tools), tool, started)
    report = merge(ruleset, reports, None if only is None else set(tools))
    report.rlimit = options.rlimit
    report.seconds = time.monotonic() - started
    return report


def _weight(ruleset: Ruleset, tool: str) -> int:
    """A deterministic guess at a bucket's analysis cost: the length of the conditions
    that reach it (regex-heavy string conditions dominate the string abstraction)."""
    schema = ruleset.schema
    total = 0
    for cr in ruleset.rules:
        if tool in rule_tools(cr, schema):
            total += 10 + len(cr.rule.condition.text)
    for policy in ruleset.policies:
        if tool in tools_matching(policy.target.actions, schema):
            total += sum(10 + len(a.condition.text) for a in policy.assertions)
    return total


# Bundles by directory, so that a worker loads (compiles) a bundle once rather than once
# per tool; on fork the parent's entry is inherited and nothing is loaded at all.
_LOADED: dict[str, Ruleset] = {}


def _worker(directory: str, tool: str, options: Options) -> ToolReport:
    ruleset = _LOADED.get(directory)
    if ruleset is None:
        from ordinance.policy.loader import load_ruleset

        ruleset = _LOADED[directory] = load_ruleset(Path(directory))
    return analyze_tool(ruleset, tool, options)
