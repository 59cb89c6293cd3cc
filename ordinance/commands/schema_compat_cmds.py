"""The schema-compatibility gate of ``check --log`` and ``publish``: the new bundle's
schema against the schema of the bundle(s) in force on the target (``policy.active``),
refusing changes that break live traffic unless ``acknowledgements.ack`` covers them
(``ordinance.policy.schema_compat``; docs/lifecycle.md, "Schema compatibility")."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ordinance.policy.analysis.checks import Finding
from ordinance.policy.analysis.gate import ACK_FILE, GateResult, gate_schema, load_acks
from ordinance.policy.bundle import compile_bundle
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.loader import SCHEMA_FILE
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.schema_compat import schema_breaks
from ordinance.streams.topics import DEFAULT_PREFIX


@dataclass
class SchemaCheck:
    target: str
    against: list[str] = field(default_factory=list)
    breaks: list[Finding] = field(default_factory=list)
    result: GateResult = field(default_factory=GateResult)
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def outcome(self) -> str:
        if not self.against:
            return "not_checked"
        return "acknowledged" if self.breaks else "compatible"

    def datum(self) -> dict[str, Any]:
        """The ``SchemaCompatibility`` datum of a published event's checks."""
        return {
            "outcome": self.outcome,
            "target": self.target,
            "against": list(self.against),
            "breaking": len(self.breaks),
            "detail": self.detail,
        }

    def acknowledgements(self) -> list[dict[str, Any]]:
        """``UsedAcknowledgement`` data, as the analysis gate's."""
        return [
            {
                "finding": f.id,
                "kind": f.kind,
                "justification": a.justification,
                "by": a.by,
                "expires": a.expires.isoformat() if a.expires is not None else None,
            }
            for f, a in self.result.acknowledged
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.datum(),
            "ok": self.ok,
            "refused": [f.to_json() for f in self.result.failures],
            "acknowledged": self.result.to_json()["acknowledged"],
            "stale_acknowledgements": [a.name for a in self.result.stale_acks],
        }


class SchemaCheckError(Exception):
    """The bundle in force could not be read: the check cannot say the change is safe."""


def missing_embedded_log(log_url: str) -> bool:
    parts = urllib.parse.urlsplit(log_url)
    return parts.scheme == "sqlite" and not Path(parts.path[1:]).exists()


def schema_check(
    directory: str,
    files: dict[str, str],
    ruleset: Ruleset,
    log_url: str,
    target: str,
    prefix: str = DEFAULT_PREFIX,
) -> SchemaCheck:
    """Compare ``ruleset``'s schema with every bundle in force on ``target``. Raises
    SchemaCheckError when the log cannot be read, AckProblem for a bad acknowledgements
    file. A log that does not exist yet has nothing in force (``not_checked``)."""
    from ordinance.processors.policy_log import bundles_in_force
    from ordinance.streams.backends import open_existing_log
    from ordinance.streams.errors import LogError

    check = SchemaCheck(target)
    if missing_embedded_log(log_url):
        check.detail = "the log does not exist yet: no bundle is in force"
        return check
    try:
        with open_existing_log(log_url) as log:
            in_force = bundles_in_force(log, target, prefix)
    except LogError as exc:
        raise SchemaCheckError(f"cannot read the bundle in force on {target!r}: {exc}") from exc
    if not in_force:
        check.detail = f"no bundle is in force on target {target!r}"
        return check
    filename = str(Path(directory) / SCHEMA_FILE)
    seen: dict[str, Finding] = {}
    for bundle_id, old_files in in_force:
        try:
            old = compile_bundle(old_files)
        except PolicyErrors as exc:
            raise SchemaCheckError(
                f"the bundle in force {bundle_id} does not compile here: {exc.errors[0]}"
            ) from exc
        check.against.append(bundle_id)
        for b in schema_breaks(old.schema, ruleset.schema, files.get(SCHEMA_FILE, ""), filename):
            finding = b.finding()
            if finding.id in seen:
                seen[finding.id].details["against"].append(bundle_id)
            else:
                finding.details["against"] = [bundle_id]
                seen[finding.id] = finding
    check.breaks = list(seen.values())
    check.result = gate_schema(check.breaks, load_acks(Path(directory) / ACK_FILE))
    return check


def print_schema_check(check: SchemaCheck, err: Console) -> None:
    """Each refused break as file:line:column, then a summary; acknowledged ones named."""
    for f, ack in check.result.acknowledged:
        err.print(
            f"acknowledged {f.id} ({f.details['change']} {f.subjects[0]} on {f.tool}) "
            f"by {ack.name}: {ack.justification}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    for f in check.result.failures:
        err.print(
            f"{f.details['location']}: breaking schema change {f.id}: {f.message}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if check.result.failures:
        against = ", ".join(check.against)
        err.print(
            f"{len(check.result.failures)} breaking schema change(s) against {against} in force "
            f"on {check.target!r}: requests valid today would be refused. Keep them compatible, "
            f"or acknowledge each (`id:` or `fields:`) in {ACK_FILE}",
            style="red",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def checked(
    directory: str, ruleset: Ruleset, log_url: str, target: str, prefix: str, as_json: bool
) -> SchemaCheck | int:
    """``schema_check`` for ``check --log``: the check, or the exit code of a failure to
    run it (reported): 3 a bad acknowledgements file, 1 the log unreadable."""
    from ordinance.commands.output import EXIT_COMPILE, EXIT_FAILED, report_failure
    from ordinance.policy.analysis.gate import AckProblem
    from ordinance.policy.bundle import read_bundle_dir

    try:
        files = read_bundle_dir(Path(directory))
        return schema_check(directory, files, ruleset, log_url, target, prefix)
    except AckProblem as exc:
        return report_failure(f"acknowledgements: {exc}", as_json, EXIT_COMPILE)
    except SchemaCheckError as exc:
        return report_failure(f"could not check schema compatibility: {exc}", as_json, EXIT_FAILED)
