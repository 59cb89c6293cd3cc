"""What replay verify reports: findings, counts per partition, the report; and how a
recorded decision is compared with the recomputed one."""

from __future__ import annotations

import datetime as dt
import operator
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ordinance.replay.bundles import BundleProblem
from ordinance.replay.times import Window, iso

COMPARED = (
    "request_id",
    "agent_id",
    "effect",
    "rule_ids",
    "reasons",
    "code",
    "detail",
    "obligations",
    "bundle_id",
    "policy_offset",
    "action_offset",
    "tool",
    "args",
    "event_time",
    "approval_ticket",
    "arm",
    "shadow",
)
Tick = Callable[[int], None]


def jsonable(value: Any) -> Any:
    """Datums as JSON: times in ISO form, decimals as text, bytes as hex."""
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, int | str | bool) or value is None:
        return value
    return str(value)


@dataclass
class Finding:
    kind: str
    message: str
    partition: int | None = None
    offset: int | None = None  # in agent.decisions (agent.actions for action_without_decision)
    request_id: str | None = None
    agent_id: str | None = None
    event_time: dt.datetime | None = None
    differences: dict[str, dict[str, Any]] = field(default_factory=dict)
    recorded: dict[str, Any] | None = None
    recomputed: dict[str, Any] | None = None
    window_reads: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "partition": self.partition,
            "offset": self.offset,
            "request_id": self.request_id,
            "agent_id": self.agent_id,
            "event_time": iso(self.event_time),
            "differences": jsonable(self.differences),
            "recorded": jsonable(self.recorded),
            "recomputed": jsonable(self.recomputed),
            "window_reads": jsonable(self.window_reads),
        }


@dataclass
class PartitionCounts:
    records: int = 0  # decisions records walked (the fold), in the window or not
    decisions: int = 0  # decisions in the window (and of the agents asked about)
    agreed: int = 0
    follow_ups: int = 0
    duplicates_skipped: int = 0  # actions whose request already had a decision
    undecided: int = 0  # actions after the last decided one: not processed yet
    fenced: int = 0  # records written by an enforcer that had lost the partition


@dataclass
class VerifyReport:
    source: str
    window: Window
    agents: frozenset[str] | None
    partitions: dict[int, PartitionCounts] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    bundle_problems: list[BundleProblem] = field(default_factory=list)
    seconds: float = 0.0
    compile_seconds: float = 0.0  # of `seconds`: compiling the stored bundles

    @property
    def decisions(self) -> int:
        return sum(c.decisions for c in self.partitions.values())

    @property
    def ok(self) -> bool:
        return not self.findings and not self.bundle_problems

    def to_json(self) -> dict[str, Any]:
        replaying = self.seconds - self.compile_seconds
        return {
            "ok": self.ok,
            "source": self.source,
            "window": self.window.to_json(),
            "agents": sorted(self.agents) if self.agents is not None else None,
            "decisions": self.decisions,
            "agreed": sum(c.agreed for c in self.partitions.values()),
            "finding_kinds": dict(Counter(f.kind for f in self.findings)),
            "findings": [f.to_json() for f in self.findings],
            "bundle_problems": [p.to_json() for p in self.bundle_problems],
            "partitions": {str(p): vars(c) for p, c in sorted(self.partitions.items())},
            "seconds": round(self.seconds, 3),
            "bundle_compile_seconds": round(self.compile_seconds, 3),
            "decisions_per_s": round(self.decisions / replaying) if replaying > 0 else None,
        }


_PICK = operator.itemgetter(*COMPARED)
_VALUE_FIELDS = ("args", "obligations")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1  # the Value union's long branch


def wire_form(value: Any) -> Any:
    """A field's value as the wire holds it, type-tagged: what the enforcer wrote and what
    replay recomputes are the same decision exactly when they encode the same. A recomputed
    datum holds tuples and ints where the decoded record holds lists and (past 64 bits)
    decimals, while Python calls ``True == 1`` and ``Decimal("1.0") == Decimal("1.00")``
    although each pair encodes differently — so neither Python equality nor the printed
    form is the test. Mirrors `ordinance.streams.values.to_wire` branch by branch."""
    if value is None or isinstance(value, str | bytes):
        return value
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int):
        return ("long", value) if _LONG_MIN <= value <= _LONG_MAX else ("decimal", str(value))
    if isinstance(value, float):
        return ("decimal", repr(value))
    if isinstance(value, Decimal):
        return ("decimal", str(value))
    if isinstance(value, dt.datetime):
        return ("time", value.isoformat())  # compared as the instant with its offset
    if isinstance(value, list | tuple):
        return ("array", [wire_form(item) for item in value])
    if isinstance(value, Mapping):
        return ("map", {key: wire_form(item) for key, item in value.items()})
    return ("other", repr(value))


def compare(recorded: dict[str, Any], recomputed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compared fields whose wire forms differ (empty when the decision is reproduced)."""
    try:
        # The common case in one C-level step; Python equality is looser than the wire
        # only for numbers inside Values (True == 1, Decimal("1.0") == Decimal("1.00")),
        # so the fields that hold Values are checked by their wire form as well.
        if _PICK(recorded) == _PICK(recomputed) and all(
            wire_form(recorded[name]) == wire_form(recomputed[name]) for name in _VALUE_FIELDS
        ):
            return {}
    except KeyError:
        pass
    return {
        name: {"recorded": recorded.get(name), "recomputed": recomputed.get(name)}
        for name in COMPARED
        if wire_form(recorded.get(name)) != wire_form(recomputed.get(name))
    }
