"""The publish gate: refuse a bundle with refuted (or unproven) assertions and, as
configured, unresolved conflicts — unless the finding is acknowledged.

Acknowledgements live in ``acknowledgements.ack`` (YAML) in the policy directory. The
name does not end in ``.yaml`` on purpose: the loader reads every ``*.yaml`` below the
directory as a policy. Format::

    acknowledgements:
      - id: conflict:3f2a9c1b0d4e          # a finding id from `ordinance analyze`
        justification: payments' allow is meant to yield to the PII deny
        by: finance-risk                    # optional
        expires: 2026-12-31                 # optional; an expired acknowledgement lapses
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from ordinance.policy.analysis.checks import Finding
from ordinance.policy.analysis.run import Report

ACK_FILE = "acknowledgements.ack"
CONFLICT_POLICIES = ("none", "cross-owner", "all")
# What an undecided check (a finding of kind `unknown`: out of budget, or no witness the
# evaluator confirms) does to the gate: `refuse` (default: an unchecked question is not a
# passed one), `assertions` (only undecided assertions refuse, the behaviour before
# budgets were deterministic), `allow` (report them, never refuse on them).
UNDECIDED_POLICIES = ("refuse", "assertions", "allow")


class AckProblem(ValueError):
    pass


@dataclass(frozen=True)
class Ack:
    id: str
    justification: str
    by: str = ""
    expires: dt.date | None = None

    def active(self, today: dt.date) -> bool:
        return self.expires is None or today <= self.expires


def load_acks(path: Path) -> list[Ack]:
    if not path.is_file():
        return []
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("acknowledgements", []), list):
        raise AckProblem(f"{path}: expected `acknowledgements:` with a list of entries")
    out: list[Ack] = []
    for n, entry in enumerate(data.get("acknowledgements") or [], 1):
        if not isinstance(entry, dict) or not entry.get("id") or not entry.get("justification"):
            raise AckProblem(f"{path}: entry {n} needs an `id` and a `justification`")
        expires = entry.get("expires")
        if expires is not None and not isinstance(expires, dt.date):
            try:
                expires = dt.date.fromisoformat(str(expires))
            except ValueError:
                raise AckProblem(f"{path}: entry {n}: `expires` must be a date") from None
        out.append(
            Ack(str(entry["id"]), str(entry["justification"]), str(entry.get("by", "")), expires)
        )
    return out


@dataclass
class GateResult:
    failures: list[Finding] = field(default_factory=list)
    acknowledged: list[tuple[Finding, Ack]] = field(default_factory=list)
    stale_acks: list[Ack] = field(default_factory=list)  # match no current finding

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failures": [f.to_json() for f in self.failures],
            "acknowledged": [
                {"id": f.id, "justification": a.justification, "by": a.by}
                for f, a in self.acknowledged
            ],
            "stale_acknowledgements": [a.id for a in self.stale_acks],
        }


def blocking(f: Finding, conflicts: str, undecided: str = "refuse") -> bool:
    """Refuted assertions always block; undecided checks per ``undecided`` (by default
    every one: an unproven assertion is not a proven one, and an undecided conflict check
    may hide a conflict); conflicts block per ``conflicts``."""
    if f.kind == "assertion":
        return True
    if f.kind == "unknown":
        return undecided == "refuse" or (
            undecided == "assertions" and f.details.get("check") == "assertion"
        )
    if f.kind == "conflict":
        return conflicts == "all" or (
            conflicts == "cross-owner" and bool(f.details.get("cross_owner"))
        )
    return False


def gate(
    report: Report,
    acks: list[Ack],
    conflicts: str = "cross-owner",
    today: dt.date | None = None,
    undecided: str = "refuse",
) -> GateResult:
    if conflicts not in CONFLICT_POLICIES:
        raise ValueError(f"conflicts must be one of {', '.join(CONFLICT_POLICIES)}")
    if undecided not in UNDECIDED_POLICIES:
        raise ValueError(f"undecided must be one of {', '.join(UNDECIDED_POLICIES)}")
    today = today or dt.date.today()
    by_id = {a.id: a for a in acks if a.active(today)}
    result = GateResult()
    seen: set[str] = set()
    for f in report.findings:
        seen.add(f.id)
        if not blocking(f, conflicts, undecided):
            continue
        ack = by_id.get(f.id)
        if ack is not None:
            result.acknowledged.append((f, ack))
        else:
            result.failures.append(f)
    result.stale_acks = [a for a in acks if a.id not in seen]
    return result
