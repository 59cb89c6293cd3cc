"""``ordinance policy at | history | show | diff``: the policy lifecycle as the log holds it.

``at T`` folds ``policy.changes`` with the controller's own code up to event time T and
also says which bundle each enforcer had swapped to by then (``RulesetSwap`` records);
``history`` is the timeline of lifecycle events with actors, reasons and what the
controller made of them; ``show`` is one bundle's policies and rules; ``diff`` compares two
bundles (log ids or directories) per policy and per rule. Reads only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ordinance.commands.output import (
    EXIT_OK,
    console,
    emit_json,
    report_failure,
    report_policy_errors,
)

Command = Callable[[str, str], argparse.ArgumentParser]


def _sub(sub: Any, name: str, help_text: str, *, log: str = "required") -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix")
    if log == "none":
        p.add_argument(
            "--log", metavar="URL", default=None, help="the log holding bundle ids (for ids)"
        )
        return p
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--log", metavar="URL", help="sqlite:///path.db or kafka://host:port (read only)"
    )
    where.add_argument("--input", metavar="FILE", help="an exported slice (replay export)")
    return p


def register(command: Command) -> None:
    p = command(
        "policy", "the policy lifecycle on the log: what was in force when, history, bundles, diffs"
    )
    sub = p.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    at = _sub(
        sub,
        "at",
        "the rollout in force at event time T (and the bundle each enforcer had swapped to)",
    )
    at.add_argument("time", metavar="T", help="ISO 8601, epoch seconds, now, or 2h (ago)")
    at.add_argument("--target", default=None, help="only this deployment target")
    at.add_argument(
        "--agent",
        default=None,
        metavar="ID",
        help="also: the roles, attributes, status and keys this agent had at T, as its"
        " partition's enforcer knew them, and which key signed its last intent before T",
    )
    history = _sub(sub, "history", "every lifecycle event with actor, time, reason and outcome")
    history.add_argument("--bundle", default=None, help="only events of this bundle (id prefix)")
    _sub(
        sub,
        "status",
        "where each target and bundle stands: stable, canary, shadow; approvals, reviews",
    )
    show = _sub(sub, "show", "one bundle: its policies and rules, integrity and lifecycle")
    show.add_argument("bundle", help="bundle id or unique prefix")
    show.add_argument("--files", action="store_true", help="print the stored files too")
    diff = _sub(
        sub, "diff", "what changed between two bundles, per policy and per rule", log="none"
    )
    diff.add_argument("old", help="a policy directory or a bundle id (prefix, needs --log)")
    diff.add_argument("new", help="a policy directory or a bundle id (prefix, needs --log)")
    from ordinance.commands.change_cmds import register_under_policy

    register_under_policy(sub)  # policy review|approve|stage|enforce|canary|shadow|...


def run(args: argparse.Namespace) -> int | None:
    if args.command != "policy":
        return None
    from ordinance.replay.bundles import BundleStore
    from ordinance.replay.source import open_source
    from ordinance.replay.times import TimeArgumentError
    from ordinance.streams.errors import LogError

    args.json = getattr(args, "json", False)
    from ordinance.commands.change_cmds import EVENTS, cmd_lifecycle

    if args.policy_command in EVENTS:
        return cmd_lifecycle(args)
    if args.policy_command == "diff" and args.log is None:
        return _diff(args, None)
    try:
        source, log = open_source(args.log, getattr(args, "input", None), args.prefix)
    except LogError as exc:  # SourceError included: no such log, unreachable broker
        return report_failure(str(exc), args.json)
    try:
        store = BundleStore.load(source)
        if args.policy_command == "at":
            return _at(args, source, store)
        if args.policy_command == "history":
            return _history(args, store, Signing.load(source))
        if args.policy_command == "show":
            return _show(args, store, Signing.load(source))
        if args.policy_command == "status":
            from ordinance.commands.policy_status import print_status

            return print_status(args, store)
        return _diff(args, store)
    except (TimeArgumentError, LogError) as exc:
        return report_failure(str(exc), args.json)
    finally:
        if log is not None:
            log.close()


def replaced_bundles(store: Any) -> dict[int, str | None]:
    """For each accepted ``enforced`` change (by offset), the bundle it replaced on its
    target: ``policy.changes`` folded by the controller's own code, so history names what
    was in force before each swap even though the publisher's event does not carry it."""
    from ordinance.processors.controller import DEFAULT_TARGET, ControllerState, apply_change

    state = ControllerState()
    out: dict[int, str | None] = {}
    for change in store.changes:
        if change.rejected is not None:
            continue  # refused by the controller (not authorised, say): it changed nothing
        target = change.datum.get("target") or DEFAULT_TARGET
        before = state.rollouts.get(target)
        apply_change(state, change.datum, change.offset, change.at)
        if change.datum["event"] == "enforced" and change.rejected is None:
            out[change.offset] = before["stable_bundle_id"] if before is not None else None
    return out


def _checks_json(checks: Any) -> dict[str, Any] | None:
    if checks is None:
        return None
    return {
        "tests": checks.get("tests"),
        "analysis": checks.get("analysis"),
        "bypasses": list(checks.get("bypasses") or []),
        "acknowledgements": [dict(a) for a in checks.get("acknowledgements") or []],
        "schema_compatibility": _schema_json(checks.get("schema_compatibility")),
        "whatif": _whatif_json(checks.get("whatif")),
    }


def _whatif_json(summary: Any) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {**summary, "transitions": [dict(t) for t in summary.get("transitions") or []]}


def _schema_json(compat: Any) -> dict[str, Any] | None:
    if compat is None:
        return None
    return {**compat, "against": list(compat.get("against") or [])}


def _git_json(git: Any) -> dict[str, Any] | None:
    """The ``GitSource`` of a published event (``PolicyChange`` v6); null before."""
    if git is None:
        return None
    return {**git, "dirty_paths": list(git.get("dirty_paths") or [])}


@dataclass
class Signing:
    """Who signed each change (its headers), and the code of each the controller refused
    (its alert): with a trust root, a change it accepted was signed by that principal
    with that key, verified by the controller (docs/identity.md, "Policy changes")."""

    signatures: dict[int, Any] = field(default_factory=dict)  # offset -> Signature | None
    codes: dict[int, str] = field(default_factory=dict)  # offset -> refusal code

    @classmethod
    def load(cls, source: Any) -> Signing:
        from ordinance.identity.signing import SignatureError, signature_of
        from ordinance.streams.serde import Decoded, Serde

        out, serde = cls(), Serde()
        for partition in source.partitions("policy.changes"):
            for record in source.read("policy.changes", partition):
                try:
                    out.signatures[record.offset] = signature_of(record.headers)
                except SignatureError:
                    out.signatures[record.offset] = None
        for partition in source.partitions("monitor.alerts"):
            for record in source.read("monitor.alerts", partition):
                alert = serde.decode_record(record, expect={"Alert"})
                if not isinstance(alert, Decoded):
                    continue
                details = alert.value["details"]
                offset, code = details.get("change_offset"), details.get("code")
                rejected = alert.value["kind"] == "policy_change_rejected"
                if rejected and isinstance(offset, int) and isinstance(code, str):
                    out.codes[offset] = code
        return out

    def json(self, offset: int) -> dict[str, Any]:
        signature = self.signatures.get(offset)
        return {
            "signer": None if signature is None else signature.signer_id,
            "key_id": None if signature is None else signature.key_id,
            "rejected_code": self.codes.get(offset),
        }


def _change_json(
    change: Any, replaced: dict[int, str | None] | None = None, signing: Signing | None = None
) -> dict[str, Any]:
    from ordinance.replay.times import iso

    d = change.datum
    previous = d.get("previous_bundle_id")
    if previous is None and replaced is not None:
        previous = replaced.get(change.offset)
    return {
        "offset": change.offset,
        "at": iso(d["at"]),
        "event": d["event"],
        "bundle_id": d["bundle_id"],
        "target": d.get("target"),
        "actor": d["actor"],
        "reason": d.get("reason"),
        "git_commit": d.get("git_commit"),
        "git": _git_json(d.get("git")),
        "bypasses": list((d.get("checks") or {}).get("bypasses") or []),
        "previous_bundle_id": previous,
        "canary_percent": d.get("canary_percent"),
        "checks": _checks_json(d.get("checks")),
        "outcome": "rejected" if change.rejected is not None else "accepted",
        "rejected_because": change.rejected,
        **(signing or Signing()).json(change.offset),
    }


def swaps_until(source: Any, at: Any) -> list[dict[str, Any]]:
    """The last RulesetSwap with ``at`` <= T per decisions partition. Only swap records
    are decoded: the schema fingerprint in each value's header says which they are."""
    from ordinance.replay.times import iso
    from ordinance.streams.serde import HEADER_SIZE, Decoded, Serde

    serde = Serde()
    fingerprint = serde.registry.current("RulesetSwap").fingerprint
    out = []
    for partition in source.partitions("agent.decisions"):
        last: dict[str, Any] | None = None
        for record in source.read("agent.decisions", partition):
            if record.value is None or record.value[2:HEADER_SIZE] != fingerprint:
                continue
            decoded = serde.decode_record(record, expect={"RulesetSwap"})
            if isinstance(decoded, Decoded) and decoded.value["at"] <= at:
                last = {**decoded.value, "offset": record.offset}
        if last is not None:
            out.append(
                {
                    "partition": partition,
                    "bundle_id": last["bundle_id"],
                    "decisions_offset": last["offset"],
                    "policy_offset": last["policy_offset"],
                    "swapped_at": iso(last["at"]),
                    "enforcer_id": last["enforcer_id"],
                }
            )
    return out


def _at(args: argparse.Namespace, source: Any, store: Any) -> int:
    from ordinance.replay.bundles import rollout_json
    from ordinance.replay.times import iso, parse_time

    at = parse_time(args.time)
    state, applied = store.state_at(at)
    rollouts = [
        rollout_json(r)
        for target, r in sorted(state.rollouts.items())
        if args.target is None or target == args.target
    ]
    data: dict[str, Any] = {
        "at": iso(at),
        "rollouts": rollouts,
        "last_change": _change_json(applied[-1]) if applied else None,
        "enforcers": swaps_until(source, at),
    }
    if args.agent is not None:
        from ordinance.commands.agent_at import agent_at

        data["agent"] = agent_at(source, args.agent, at)
    if args.json:
        emit_json(data)
        return EXIT_OK
    out = console()
    out.print(
        f"[bold]policy in effect at {data['at']}[/] ({len(applied)} lifecycle event(s) up to then)"
    )
    if not rollouts:
        out.print("no bundle was enforced: every action is denied (no_ruleset)")
    table = Table(title="rollouts (policy.changes folded by the controller's code)")
    for column in (
        "target",
        "mode",
        "stable bundle",
        "candidate",
        "canary %",
        "since",
        "change offset",
    ):
        table.add_column(column)
    for r in rollouts:
        table.add_row(
            r["target"],
            r["mode"],
            r["stable_bundle_id"] or "-",
            r["candidate_bundle_id"] or "-",
            str(r["canary_percent"]),
            r["since"],
            str(r["change_offset"]),
        )
    out.print(table)
    if data["enforcers"]:
        swaps = Table(title="what the enforcers had swapped to (agent.decisions)")
        for column in ("partition", "bundle", "swap at decisions offset", "swapped at", "enforcer"):
            swaps.add_column(column)
        for s in data["enforcers"]:
            swaps.add_row(
                str(s["partition"]),
                s["bundle_id"],
                str(s["decisions_offset"]),
                s["swapped_at"],
                s["enforcer_id"],
            )
        out.print(swaps)
    if args.agent is not None:
        from ordinance.commands.agent_at import print_agent

        print_agent(data["agent"])
    return EXIT_OK


def _history(args: argparse.Namespace, store: Any, signing: Signing) -> int:
    wanted = store.resolve(args.bundle) if args.bundle else None
    if args.bundle and wanted is None:
        return report_failure(f"no single bundle id starts with {args.bundle!r}", args.json)
    replaced = replaced_bundles(store)
    events = [
        _change_json(c, replaced, signing)
        for c in store.changes
        if wanted is None or c.datum["bundle_id"] == wanted
    ]
    if args.json:
        emit_json({"events": events})
        return EXIT_OK
    table = Table(title="policy.changes")
    for column in (
        "offset",
        "at",
        "event",
        "bundle",
        "target",
        "replaces",
        "actor",
        "signed by",
        "reason",
        "git",
        "checks",
        "outcome",
    ):
        table.add_column(column)
    for e in events:
        outcome = (
            "[green]accepted[/]"
            if e["rejected_because"] is None
            else f"[red]rejected[/]: {escape(e['rejected_because'])}"
        )
        table.add_row(
            str(e["offset"]),
            e["at"],
            e["event"],
            e["bundle_id"][:19] + "…",
            e["target"] or "-",
            (e["previous_bundle_id"] or "-")[:19],
            escape(e["actor"]),
            _signed_text(e),
            escape(e["reason"] or "-"),
            _git_text(e["git"], e["git_commit"]),
            _checks_text(e["checks"]),
            outcome,
        )
    console().print(table)
    return EXIT_OK


def _signed_text(event: dict[str, Any]) -> str:
    if event["signer"] is None:
        return "unsigned"
    return escape(f"{event['signer']} (key {event['key_id']})")


def _git_text(git: dict[str, Any] | None, commit: str | None) -> str:
    if git is None:
        return escape(commit[:12]) if commit else "-"
    if git["state"] == "not_in_git":
        return "not in git"
    if git["state"] == "unknown":
        return "[red]unknown[/]: " + escape(git["detail"] or "")
    author = (git["author"] or "").split(" <", 1)[0]  # the name; --json has the email
    subject = git["subject"] or ""
    subject = subject if len(subject) <= 60 else subject[:59] + "…"
    text = escape(f"{(git['commit'] or 'no commit')[:12]} {author}: {subject}")
    if git["remote"]:
        text += escape(f" ({git['remote']})")
    if git["state"] == "dirty":
        text += " [red]dirty: " + escape(", ".join(git["dirty_paths"][:5]) or "uncommitted") + "[/]"
    return text


def _checks_text(checks: dict[str, Any] | None) -> str:
    if checks is None:
        return "-"
    parts = [f"{checks['tests']} tests" if checks["tests"] is not None else "tests not run"]
    parts.append(f"analysis {checks['analysis']}")
    compat = checks.get("schema_compatibility")
    if compat is not None:
        parts.append(f"schema {compat['outcome'].replace('_', ' ')}")
    if checks["acknowledgements"]:
        parts.append(f"{len(checks['acknowledgements'])} acknowledged")
    if checks.get("whatif") is not None:
        from ordinance.commands.publish_whatif import describe

        parts.append(describe(checks["whatif"]))
    text = escape(", ".join(parts))
    if checks["bypasses"]:
        text += "; [red]bypassed: " + escape(", ".join(checks["bypasses"])) + "[/]"
    return text


def _show(args: argparse.Namespace, store: Any, signing: Signing) -> int:
    bundle_id = store.resolve(args.bundle)
    if bundle_id is None:
        return report_failure(
            f"no single bundle id on the log starts with {args.bundle!r}", args.json
        )
    ruleset = store.ruleset(bundle_id)
    files = store.files(bundle_id) or {}
    replaced = replaced_bundles(store)
    data: dict[str, Any] = {
        "bundle_id": bundle_id,
        "integrity": [p.to_json() for p in store.problems.get(bundle_id, [])],
        "content_matches_id": ruleset is not None and ruleset.bundle_id == bundle_id,
        "files": sorted(files),
        "policies": [
            {
                "policy": p.id,
                "owner": p.owner,
                "impact": p.impact,
                "description": p.description,
                "rules": [r.canonical() for r in p.rules],
            }
            for p in (ruleset.policies if ruleset is not None else ())
        ],
        "lifecycle": [
            _change_json(c, replaced, signing)
            for c in store.changes
            if c.datum["bundle_id"] == bundle_id
        ],
    }
    if args.files:
        data["contents"] = files
    if args.json:
        emit_json(data)
        return EXIT_OK
    out = console()
    ok = (
        "[green]content hashes to its id[/]"
        if data["content_matches_id"]
        else "[red]content does NOT hash to its id[/]"
    )
    out.print(f"[bold]bundle {bundle_id}[/] — {ok}")
    for problem in data["integrity"]:
        out.print(f"[red]{problem['kind']}[/]: {escape(problem['message'])}")
    for policy in data["policies"]:
        out.print(
            f"\n[bold]{escape(policy['policy'])}[/] "
            + escape(
                f"(owner {policy['owner']}, impact {policy['impact']}): {policy['description']}"
            )
        )
        for rule in policy["rules"]:
            out.print(
                f"  {escape(rule['id'])}: [bold]{rule['effect']}[/] when {escape(rule['when'])}",
                highlight=False,
            )
    out.print(
        "\nlifecycle: "
        + ", ".join(
            escape(
                f"{e['event']} by {e['actor']} at {e['at']}"
                + (f", signed by {e['signer']} key {e['key_id']}" if e["signer"] else ", unsigned")
                + f" ({e['outcome']}"
                + (f": {e['rejected_code']}" if e["rejected_code"] else "")
                + ")"
            )
            for e in data["lifecycle"]
        )
    )
    if args.files:
        for path, text in sorted(files.items()):
            out.print(f"\n--- {path}", markup=False)
            out.print(text, markup=False, highlight=False)
    return EXIT_OK


def _load_side(spec: str, store: Any, as_json: bool) -> Any:
    from ordinance.policy.bundle import compile_bundle, read_bundle_dir
    from ordinance.policy.errors import PolicyErrors

    if Path(spec).is_dir():
        try:
            return compile_bundle(read_bundle_dir(Path(spec)))
        except PolicyErrors as exc:
            return report_policy_errors(exc, as_json)
    if store is None:
        return report_failure(f"{spec!r} is not a directory; a bundle id needs --log", as_json)
    bundle_id = store.resolve(spec)
    ruleset = store.ruleset(bundle_id) if bundle_id is not None else None
    if ruleset is None:
        return report_failure(
            f"{spec!r} is neither a directory nor one usable bundle on the log", as_json
        )
    return ruleset


def _diff(args: argparse.Namespace, store: Any) -> int:
    from ordinance.replay.bundle_diff import diff_bundles, render_diff

    old = _load_side(args.old, store, args.json)
    if isinstance(old, int):
        return old
    new = _load_side(args.new, store, args.json)
    if isinstance(new, int):
        return new
    diff = diff_bundles(old, new)
    if args.json:
        emit_json(diff)
        return EXIT_OK
    out = console()
    for line in render_diff(diff):
        style = (
            "red"
            if line.lstrip().startswith("-")
            else "green"
            if line.lstrip().startswith("+")
            else None
        )
        out.print(line, style=style, markup=False, highlight=False)
    return EXIT_OK
