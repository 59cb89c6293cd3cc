"""Semantic diff: which requests change decision between two bundles, with a witness each.

Both bundles are encoded over one request space per tool (the same variables), so
"old decides e1 and new decides e2" is a single formula; each satisfiable (e1, e2) pair
with e1 != e2 is a class of changed requests. Like IAM Access Analyzer's
check-no-new-access, ``--fail-on new-allow`` turns any class ending in allow into a
failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import z3

from ordinance.policy.analysis.bucket import NICE_SHARE, budgeted
from ordinance.policy.analysis.checks import DEFAULT_RLIMIT, UNKNOWN, decision_json
from ordinance.policy.analysis.combine import EFFECTS, build_tool_model
from ordinance.policy.analysis.fuse import Fuser
from ordinance.policy.analysis.space import ToolSpace, Unrealisable, Witness
from ordinance.policy.ruleset import Ruleset

UNKNOWN_TOOL = -1  # requests to a tool the bundle does not know are denied


@dataclass
class Change:
    tool: str
    before: str
    after: str
    witness: Witness | None
    old_decision: dict[str, Any] | None = None
    new_decision: dict[str, Any] | None = None
    status: str = "found"  # or "unknown" (out of budget, or no witness the evaluators confirm)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tool": self.tool,
            "from": self.before,
            "to": self.after,
            "status": self.status,
        }
        if self.witness is not None:
            out["witness"] = self.witness.to_json()
            out["old_decision"] = self.old_decision
            out["new_decision"] = self.new_decision
        return out


@dataclass
class DiffReport:
    old_bundle: str
    new_bundle: str
    changes: list[Change] = field(default_factory=list)
    not_compared: dict[str, str] = field(default_factory=dict)  # tool -> why
    rlimit: int = DEFAULT_RLIMIT  # resource units per solver check

    def new_allow(self) -> list[Change]:
        return [c for c in self.changes if c.after == "allow"]

    def new_access(self) -> list[Change]:
        rank = {"deny": 0, "require_approval": 1, "allow": 2}
        return [c for c in self.changes if rank[c.after] > rank[c.before]]

    def to_json(self) -> dict[str, Any]:
        return {
            "old_bundle": self.old_bundle,
            "new_bundle": self.new_bundle,
            "identical": not self.changes and not self.not_compared,
            "changes": [c.to_json() for c in self.changes],
            "not_compared": self.not_compared,
            "budget": {"rlimit": self.rlimit},
        }


def _same_shape(old: Ruleset, new: Ruleset, tool: str) -> bool:
    a, b = old.schema.canonical(), new.schema.canonical()
    return all(a[k] == b[k] for k in ("agent", "resource", "context")) and (
        a["tools"][tool]["args"] == b["tools"][tool]["args"]
    )


def semantic_diff(old: Ruleset, new: Ruleset, rlimit: int = DEFAULT_RLIMIT) -> DiffReport:
    """``rlimit``: resource units per solver check (deterministic, unlike a time limit)."""
    report = DiffReport(old.bundle_id, new.bundle_id, rlimit=rlimit)
    tools = sorted(set(old.schema.tools) | set(new.schema.tools))
    for tool in tools:
        in_old, in_new = tool in old.schema.tools, tool in new.schema.tools
        if in_old and in_new and not _same_shape(old, new, tool):
            report.not_compared[tool] = "the request shape (schema fields) changed"
            continue
        schema = new.schema if in_new else old.schema
        space = ToolSpace(schema, schema.tools[tool])
        effects: list[z3.ArithRef] = []
        for ruleset, present in ((old, in_old), (new, in_new)):
            if present:
                effects.append(build_tool_model(ruleset, tool, space).effect())
            else:
                effects.append(z3.IntVal(UNKNOWN_TOOL))
        report.changes += _tool_changes(old, new, space, effects[0], effects[1], rlimit)
    return report


def _label(tier: int) -> str:
    return "deny" if tier == UNKNOWN_TOOL else EFFECTS[tier]


def _tool_changes(
    old: Ruleset,
    new: Ruleset,
    space: ToolSpace,
    before: z3.ArithRef,
    after: z3.ArithRef,
    rlimit: int,
) -> list[Change]:
    fuse = Fuser()
    solver = budgeted(rlimit)
    solver.add(*[fuse(f) for f in [*space.base, *space.window_constraints()]])
    tool = space.tool.name
    out: list[Change] = []
    tiers = [UNKNOWN_TOOL, 0, 1, 2]
    for t1 in tiers:
        for t2 in tiers:
            if _label(t1) == _label(t2):
                continue
            solver.push()
            solver.add(fuse(before == t1), fuse(after == t2))
            status = str(solver.check())
            models: list[z3.ModelRef] = []
            if status == "sat":
                models.append(solver.model())
                solver.push()
                solver.set("rlimit", max(1, rlimit // NICE_SHARE))
                solver.add(*[fuse(f) for f in space.nice])
                if solver.check() == z3.sat:
                    models.insert(0, solver.model())
                solver.set("rlimit", rlimit)
                solver.pop()
            solver.pop()
            if status == "unsat":
                continue
            change = Change(tool, _label(t1), _label(t2), None, status=UNKNOWN)
            for m in models:
                try:
                    w = space.witness(m)
                except Unrealisable:
                    continue
                d_old = old.evaluate(w.request, w.windows())
                d_new = new.evaluate(w.request, w.windows())
                if d_old.effect == change.before and d_new.effect == change.after:
                    change = Change(
                        tool, change.before, change.after, w, decision_json(d_old),
                        decision_json(d_new),
                    )  # fmt: skip
                    break
            out.append(change)
    return out
