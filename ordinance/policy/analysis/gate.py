"""The publish gate: refuse a bundle with refuted (or unproven) assertions and, as
configured, unresolved conflicts — unless the finding is acknowledged.

Acknowledgements live in ``acknowledgements.ack`` (YAML) in the policy directory. The
name does not end in ``.yaml`` on purpose: the loader reads every ``*.yaml`` below the
directory as a policy. An entry acknowledges one finding by id, or every finding of a
kind between rules matching a pattern — once per policy pair or rule pattern, with one
justification, instead of once per finding and tool. Format::

    acknowledgements:
      - id: conflict:3f2a9c1b0d4e          # a finding id from `ordinance analyze`
        justification: payments' allow is meant to yield to the PII deny
        by: finance-risk                    # optional
        expires: 2026-12-31                 # optional; an expired acknowledgement lapses
      - rules: ["*", pii-access/pii-resource-needs-clearance]   # globs over rule ids
        justification: the clearance deny is meant to win over every allow
      - policies: [payments-guardrails, pii-access]   # every rule of one and of the other
        kind: conflict                      # optional (default conflict; or assertion,
        tool: "payments.*"                  #   unknown); tool: optional glob over tools
        justification: ...
      - id: schema-break:5e1f0c2a9b7d       # a breaking schema change (check/publish --log)
        justification: every caller sends a memo since v2.3
      - fields: ["action.args.memo"]        # schema breaks on fields matching these globs
        tool: "payments.*"                  #   (kind schema-break; docs/lifecycle.md)
        justification: ...

A pattern covers a finding of its kind whose subjects (the two rules of a conflict, in
either order; the one assertion or rule of other kinds) match its globs one to one. A
finding is covered by its id's entry if there is one, else by the first pattern that
matches; the gate reports which acknowledgement covered which finding, and every
acknowledgement that covered nothing in the report (stale).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
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
    id: str  # a finding id; "" for a pattern
    justification: str
    by: str = ""
    expires: dt.date | None = None
    kind: str = ""  # patterns: the kind of finding covered
    rules: tuple[str, ...] = ()  # patterns: globs over the finding's subjects
    tool: str = "*"  # patterns: glob over the finding's tool
    label: str = ""  # how the file states a pattern (policies: [...] or rules: [...])

    def active(self, today: dt.date) -> bool:
        return self.expires is None or today <= self.expires

    @property
    def is_schema(self) -> bool:
        return self.kind == SCHEMA_BREAK or self.id.startswith(SCHEMA_BREAK + ":")

    @property
    def name(self) -> str:
        """The id, or the pattern as written: how reports name the acknowledgement."""
        return self.id or self.label

    def covers(self, f: Finding) -> bool:
        if self.id:
            return f.id == self.id
        if f.kind != self.kind or not fnmatchcase(f.tool, self.tool):
            return False
        subjects = f.subjects
        if self.kind == SCHEMA_BREAK:
            return any(fnmatchcase(s, g) for s in subjects for g in self.rules)
        if len(subjects) != len(self.rules):
            return False
        return any(
            all(fnmatchcase(s, g) for s, g in zip(order, self.rules, strict=True))
            for order in itertools.permutations(subjects)
        )


def load_acks(path: Path) -> list[Ack]:
    if not path.is_file():
        return []
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("acknowledgements", []), list):
        raise AckProblem(f"{path}: expected `acknowledgements:` with a list of entries")
    out: list[Ack] = []
    for n, entry in enumerate(data.get("acknowledgements") or [], 1):
        forms = [k for k in ACK_FORMS if isinstance(entry, dict) and k in entry]
        if len(forms) != 1 or not entry.get("justification"):
            raise AckProblem(
                f"{path}: entry {n} needs one of `id`, `rules`, `policies` or `fields`, and a "
                "`justification`"
            )
        unknown = set(entry) - {*ACK_KEYS}
        if unknown:
            raise AckProblem(f"{path}: entry {n}: unknown key(s) {', '.join(sorted(unknown))}")
        expires = entry.get("expires")
        if expires is not None and not isinstance(expires, dt.date):
            try:
                expires = dt.date.fromisoformat(str(expires))
            except ValueError:
                raise AckProblem(f"{path}: entry {n}: `expires` must be a date") from None
        common = (str(entry["justification"]), str(entry.get("by", "")), expires)
        if forms == ["id"]:
            if "kind" in entry or "tool" in entry:
                raise AckProblem(f"{path}: entry {n}: `kind`/`tool` go with a pattern, not an id")
            out.append(Ack(str(entry["id"]), *common))
            continue
        out.append(_pattern(path, n, entry, forms[0], common))
    return out


ACK_FORMS = ("id", "rules", "policies", "fields")
ACK_KEYS = (*ACK_FORMS, "kind", "tool", "justification", "by", "expires")
SCHEMA_BREAK = "schema-break"  # ordinance.policy.schema_compat: subjects are fields
PATTERN_KINDS = ("conflict", "assertion", "unknown", "dead-rule", "redundant-rule", SCHEMA_BREAK)


def _pattern(
    path: Path, n: int, entry: dict[str, Any], form: str, common: tuple[str, str, Any]
) -> Ack:
    given = entry[form]
    if not isinstance(given, list) or not given or not all(isinstance(g, str) for g in given):
        raise AckProblem(f"{path}: entry {n}: `{form}` must be a list of names or globs")
    kind = str(entry.get("kind", SCHEMA_BREAK if form == "fields" else "conflict"))
    if kind not in PATTERN_KINDS:
        raise AckProblem(f"{path}: entry {n}: `kind` must be one of {', '.join(PATTERN_KINDS)}")
    if (form == "fields") != (kind == SCHEMA_BREAK):
        raise AckProblem(
            f"{path}: entry {n}: `fields` go with kind {SCHEMA_BREAK}, and it with `fields`"
        )
    if kind == SCHEMA_BREAK:
        pass  # each glob is tried against the one field of a break: any of them covers it
    elif kind == "conflict" and len(given) != 2:
        raise AckProblem(f"{path}: entry {n}: a conflict is between two {form}: give two")
    elif kind != "conflict" and len(given) != 1:
        raise AckProblem(f"{path}: entry {n}: a {kind} finding is about one subject: give one")
    globs = tuple(f"{p}/*" for p in given) if form == "policies" else tuple(given)
    tool = str(entry.get("tool", "*"))
    label = f"{form}: [{', '.join(given)}]" + (f" ({kind})" if kind != "conflict" else "")
    label += f" on {tool}" if tool != "*" else ""
    justification, by, expires = common
    return Ack("", justification, by, expires, kind, globs, tool, label)


@dataclass
class GateResult:
    failures: list[Finding] = field(default_factory=list)
    acknowledged: list[tuple[Finding, Ack]] = field(default_factory=list)
    stale_acks: list[Ack] = field(default_factory=list)  # match no current finding

    @property
    def ok(self) -> bool:
        return not self.failures

    def by_acknowledgement(self) -> list[tuple[Ack, list[Finding]]]:
        """Each acknowledgement used, with the findings it covered (in report order)."""
        out: dict[int, tuple[Ack, list[Finding]]] = {}
        for f, a in self.acknowledged:
            out.setdefault(id(a), (a, []))[1].append(f)
        return list(out.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failures": [f.to_json() for f in self.failures],
            "acknowledged": [
                {
                    "id": f.id,
                    "acknowledgement": a.name,
                    "justification": a.justification,
                    "by": a.by,
                }
                for f, a in self.acknowledged
            ],
            "stale_acknowledgements": [a.name for a in self.stale_acks],
        }


def blocking(f: Finding, conflicts: str, undecided: str = "refuse") -> bool:
    """Refuted assertions always block; undecided checks per ``undecided`` (by default
    every one: an unproven assertion is not a proven one, and an undecided conflict check
    may hide a conflict); conflicts block per ``conflicts``."""
    if f.kind in ("assertion", SCHEMA_BREAK):
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
    # Schema-break acknowledgements are the schema gate's (check/publish --log): not stale here.
    result = gate_findings(report.findings, acks, conflicts, today, undecided)
    result.stale_acks = [a for a in result.stale_acks if not a.is_schema]
    return result


def gate_schema(breaks: list[Finding], acks: list[Ack], today: dt.date | None = None) -> GateResult:
    """The schema-compatibility gate: every ``schema-break`` finding refuses unless an
    acknowledgement of ``acknowledgements.ack`` covers it (by id, or a ``fields``
    pattern). Its ``stale_acks`` are the unused schema acknowledgements."""
    result = gate_findings(breaks, acks, today=today)
    result.stale_acks = [a for a in result.stale_acks if a.is_schema]
    return result


def gate_findings(
    findings: list[Finding],
    acks: list[Ack],
    conflicts: str = "cross-owner",
    today: dt.date | None = None,
    undecided: str = "refuse",
) -> GateResult:
    today = today or dt.date.today()
    active = [a for a in acks if a.active(today)]
    by_id = {a.id: a for a in active if a.id}
    patterns = [a for a in active if not a.id]
    result = GateResult()
    used: set[int] = set()  # acknowledgements (by position) that cover some finding
    for f in findings:
        used |= {n for n, a in enumerate(acks) if a.covers(f)}
        if not blocking(f, conflicts, undecided):
            continue
        ack = by_id.get(f.id) or next((a for a in patterns if a.covers(f)), None)
        if ack is not None:
            result.acknowledged.append((f, ack))
        else:
            result.failures.append(f)
    result.stale_acks = [a for n, a in enumerate(acks) if n not in used]
    return result
