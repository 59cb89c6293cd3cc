"""``replay whatif``: the recorded actions under a candidate ruleset.

Each recorded action decision in the window is evaluated again by the candidate with the
*recorded* stateful context: the window state is the fold of the recorded decisions log
up to that decision (what the enforcer saw), not a re-simulation in which the candidate's
own answers would feed the counters. The report is every decision whose effect would
change: counts per (old effect -> new effect), grouped by tool and by the candidate's
rules that decide it, with example requests, plus how many keep their effect but would
be decided by other rules. Follow-up decisions (approvals) and undecodable actions are
not re-evaluated: the first has no request to evaluate, the second is a deny under any
bundle.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ordinance.identity.registry import Refusal
from ordinance.policy.ruleset import Ruleset
from ordinance.processors.enforcer_state import APPROVAL_ANSWERS
from ordinance.processors.identity_gate import judge_intent
from ordinance.replay.findings import Tick, jsonable
from ordinance.replay.parallel import Opener, map_partitions
from ordinance.replay.source import Source
from ordinance.replay.times import Window, decision_time, iso
from ordinance.replay.walk import ActionCursor, new_state, walk
from ordinance.streams.serde import Decoded, Serde
from ordinance.wire import request_from_wire

EXAMPLES_PER_GROUP = 3


@dataclass(frozen=True, slots=True)
class Changed:
    partition: int
    offset: int  # of the recorded decision on agent.decisions
    request_id: str
    agent_id: str
    tool: str
    event_time: dt.datetime
    old_effect: str
    new_effect: str
    old_rules: tuple[str, ...]
    new_rules: tuple[str, ...]
    new_code: str
    request: dict[str, Any]

    @property
    def rules_key(self) -> str:
        return ", ".join(self.new_rules) or f"({self.new_code})"

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "request_id": self.request_id,
            "agent_id": self.agent_id,
            "tool": self.tool,
            "event_time": iso(self.event_time),
            "old": {"effect": self.old_effect, "rule_ids": list(self.old_rules)},
            "new": {
                "effect": self.new_effect,
                "rule_ids": list(self.new_rules),
                "code": self.new_code,
            },
            "request": jsonable(self.request),
        }


@dataclass
class Group:
    old_effect: str
    new_effect: str
    tool: str
    rules: str
    count: int = 0
    examples: list[Changed] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "old_effect": self.old_effect,
            "new_effect": self.new_effect,
            "tool": self.tool,
            "rules": self.rules,
            "count": self.count,
            "examples": [c.to_json() for c in self.examples],
        }


@dataclass
class WhatIfReport:
    source: str
    candidate: str
    window: Window
    agents: frozenset[str] | None
    evaluated: int = 0
    unchanged: int = 0
    same_effect_other_rules: int = 0
    skipped: int = 0  # follow-ups and undecodable actions
    walked: int = 0  # decisions-log records read (progress)
    changes: list[Changed] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def transitions(self) -> Counter[tuple[str, str]]:
        return Counter((c.old_effect, c.new_effect) for c in self.changes)

    def groups(self) -> list[Group]:
        groups: dict[tuple[str, str, str, str], Group] = {}
        for c in self.changes:
            key = (c.old_effect, c.new_effect, c.tool, c.rules_key)
            group = groups.get(key)
            if group is None:
                group = groups[key] = Group(*key)
            group.count += 1
            if len(group.examples) < EXAMPLES_PER_GROUP:
                group.examples.append(c)
        return sorted(
            groups.values(), key=lambda g: (-g.count, g.old_effect, g.new_effect, g.tool, g.rules)
        )

    def timeline(self, buckets: int = 24) -> dict[str, Any]:
        """Changes per event-time bucket and transition (the HTML chart)."""
        if not self.changes:
            return {"start": None, "bucket_s": 0, "series": {}}
        start = min(c.event_time for c in self.changes)
        end = max(c.event_time for c in self.changes)
        width = max((end - start).total_seconds() / buckets, 1e-6)
        series: dict[str, list[int]] = {}
        for c in self.changes:
            index = min(buckets - 1, int((c.event_time - start).total_seconds() / width))
            series.setdefault(f"{c.old_effect} → {c.new_effect}", [0] * buckets)[index] += 1
        return {"start": iso(start), "bucket_s": width, "series": series}

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "candidate": self.candidate,
            "window": self.window.to_json(),
            "agents": sorted(self.agents) if self.agents is not None else None,
            "evaluated": self.evaluated,
            "unchanged": self.unchanged,
            "changed": len(self.changes),
            "same_effect_other_rules": self.same_effect_other_rules,
            "skipped": self.skipped,
            "transitions": [
                {"old_effect": old, "new_effect": new, "count": n}
                for (old, new), n in sorted(self.transitions.items())
            ],
            "groups": [g.to_json() for g in self.groups()],
            "timeline": self.timeline(),
            "seconds": round(self.seconds, 3),
        }


def whatif(
    source: Source,
    candidate: Ruleset,
    *,
    window: Window | None = None,
    agents: Collection[str] | None = None,
    tick: Tick = lambda _n: None,
    jobs: int = 1,
    reopen: Opener | None = None,
) -> WhatIfReport:
    """With ``jobs`` > 1 and a ``reopen`` for workers, partitions run in forked processes
    (the candidate, compiled here, is inherited)."""
    started = time.perf_counter()
    serde = Serde()
    window = window or Window()
    chosen = frozenset(agents) if agents is not None else None
    report = WhatIfReport(source.label, candidate.bundle_id, window, chosen)
    partitions = source.partitions("agent.decisions")
    forked = jobs > 1 and reopen is not None and len(partitions) > 1

    def one(src: Source, partition: int) -> tuple[int, WhatIfReport]:
        part = WhatIfReport(source.label, candidate.bundle_id, window, chosen)
        _partition(
            src, partition, candidate, window, agents, serde, part, _none if forked else tick
        )
        return partition, part

    if forked:
        assert reopen is not None
        results = []
        for result in map_partitions(
            one, partitions, jobs, reopen, source.sizes("agent.decisions")
        ):
            tick(result[1].walked)  # progress as each partition comes back
            results.append(result)
    else:
        results = [one(source, p) for p in partitions]
    for _partition_number, part in sorted(results, key=lambda r: r[0]):
        report.evaluated += part.evaluated
        report.unchanged += part.unchanged
        report.same_effect_other_rules += part.same_effect_other_rules
        report.skipped += part.skipped
        report.changes.extend(part.changes)
    report.seconds = time.perf_counter() - started
    return report


def _none(_n: int) -> None:
    return None


def _partition(
    source: Source,
    partition: int,
    candidate: Ruleset,
    window: Window,
    agents: Collection[str] | None,
    serde: Serde,
    report: WhatIfReport,
    tick: Tick,
) -> None:
    state = new_state(partition)
    # With headers: where identity is enforced, an intent's signature is in them.
    actions = ActionCursor(iter(source.read("agent.actions", partition)))
    walked = 0
    for step in walk(source, partition, state, serde):
        walked += 1
        if walked % 1000 == 0:
            tick(1000)
        if step.name != "Decision" or step.fenced:
            continue  # a fenced decision was never in force: nothing to compare
        old = step.datum
        offset = old["action_offset"]
        # Every original decision takes its action, in or out of the window, so the
        # cursor never holds actions it has passed.
        action = (
            actions.take(offset)
            if offset is not None and old["code"] not in APPROVAL_ANSWERS
            else None
        )
        if decision_time(old) not in window or (
            agents is not None and old["agent_id"] not in agents
        ):
            continue
        decoded = (
            serde.decode_record(action, expect={"ActionRequest"}) if action is not None else None
        )
        if not isinstance(decoded, Decoded):
            report.skipped += 1
            continue
        datum = decoded.value
        if state.identity is not None:
            # Judged with the registry's roles, as the enforcer did; an intent its agent
            # did not sign is denied whatever the bundle says.
            assert action is not None
            verified = judge_intent(state.identity, datum, action.value, action.headers)
            if isinstance(verified, Refusal):
                report.skipped += 1
                continue
            datum = verified.datum
        request = request_from_wire(datum)
        state.now = decoded.value["event_time"].timestamp()  # as decide() asks the windows
        new = candidate.evaluate(request, state.windows)
        report.evaluated += 1
        if new.effect == old["effect"]:
            report.unchanged += 1
            report.same_effect_other_rules += list(new.rule_ids) != old["rule_ids"]
            continue
        report.changes.append(
            Changed(
                partition,
                step.record.offset,
                old["request_id"],
                old["agent_id"],
                old["tool"] or str(decoded.value["action"]["tool"]),
                decision_time(old),
                old["effect"],
                new.effect,
                tuple(old["rule_ids"]),
                new.rule_ids,
                new.code,
                request,
            )
        )
    tick(walked % 1000)
    report.walked += walked
