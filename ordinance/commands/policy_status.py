"""``ordinance policy status``: where every target and every bundle stands in the lifecycle
now (docs/lifecycle.md) — the controller's own fold of the changes it accepted.

Per target: the stable bundle, a canary or shadow candidate (percentage, auto-rollback)
and the change that put it there. Per bundle: who published it, its impact, its reviews
and approvals (and how many a high-impact bundle still needs where the controller
verifies identities), where it runs, and its last accepted and last refused event.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from ordinance.commands.output import EXIT_OK, console, emit_json


def status_report(store: Any) -> dict[str, Any]:
    """The JSON form: ``targets`` and ``bundles`` (a BundleStore's changes, folded)."""
    import datetime as dt

    from ordinance.processors.controller import HIGH_IMPACT_APPROVALS
    from ordinance.replay.times import iso

    # Every accepted change folded by the controller's code (refused ones change nothing).
    state, _ = store.state_at(dt.datetime.max.replace(tzinfo=dt.UTC))
    reviews: dict[str, list[dict[str, Any]]] = {}
    last: dict[str, dict[str, Any]] = {}
    refused: dict[str, dict[str, Any]] = {}
    for change in store.changes:
        d = change.datum
        event = {"offset": change.offset, "event": d["event"], "actor": d["actor"]}
        event["at"] = iso(d["at"])
        if change.rejected is not None:
            refused[d["bundle_id"]] = {**event, "reason": change.rejected}
            continue
        last[d["bundle_id"]] = event
        if d["event"] == "reviewed":
            reviews.setdefault(d["bundle_id"], []).append({**event, "comment": d.get("reason")})
    targets = []
    for name, rollout in sorted(state.rollouts.items()):
        targets.append(
            {
                "target": name,
                "mode": rollout["mode"],
                "stable_bundle_id": rollout["stable_bundle_id"],
                "candidate_bundle_id": rollout.get("candidate_bundle_id"),
                "canary_percent": rollout.get("canary_percent", 0),
                "auto_rollback": bool(rollout.get("auto_rollback")),
                "change_offset": rollout["change_offset"],
                "since": iso(rollout["updated_at"]),
            }
        )
    bundles = []
    for bundle_id in state.bundles:
        record = state.records.get(bundle_id, {})
        runs = [
            {
                "target": t["target"],
                "as": "stable" if t["stable_bundle_id"] == bundle_id else t["mode"],
            }
            for t in targets
            if bundle_id in (t["stable_bundle_id"], t["candidate_bundle_id"])
        ]
        approvals = list(record.get("approvals") or [])
        high = record.get("impact") == "high"
        bundles.append(
            {
                "bundle_id": bundle_id,
                # The order of publication: a target goes back only by a rollback.
                "revision": record.get("revision"),
                "published_by": record.get("published_by"),
                "impact": record.get("impact"),
                "approvals": approvals,
                # Where the controller verifies identities (docs/lifecycle.md).
                "approvals_missing": max(0, HIGH_IMPACT_APPROVALS - len(approvals)) if high else 0,
                "reviews": reviews.get(bundle_id, []),
                "runs": runs,
                "last_event": last.get(bundle_id),
                "last_refused": refused.get(bundle_id),
            }
        )
    return {"targets": targets, "bundles": bundles}


def print_status(args: argparse.Namespace, store: Any) -> int:
    report = status_report(store)
    if args.json:
        emit_json(report)
        return EXIT_OK
    out = console()
    table = Table("target", "mode", "stable", "candidate", "%", "auto-rollback", "since")
    for t in report["targets"]:
        table.add_row(
            escape(t["target"]),
            t["mode"],
            escape((t["stable_bundle_id"] or "-")[:19]),
            escape((t["candidate_bundle_id"] or "-")[:19]),
            str(t["canary_percent"]) if t["mode"] == "canary" else "-",
            "yes" if t["auto_rollback"] else "-",
            t["since"],
        )
    out.print(table if report["targets"] else "no target has a bundle in force")
    table = Table("bundle", "rev", "published by", "impact", "approvals", "reviews", "runs", "last")
    for b in report["bundles"]:
        approvals = ", ".join(b["approvals"]) or "-"
        if b["approvals_missing"]:
            approvals += f" ({b['approvals_missing']} more needed)"
        last = b["last_event"]
        table.add_row(
            escape(b["bundle_id"][:19]),
            str(b["revision"] or "-"),
            escape(str(b["published_by"] or "-")),
            str(b["impact"] or "-"),
            escape(approvals),
            str(len(b["reviews"])),
            escape(", ".join(f"{r['target']} ({r['as']})" for r in b["runs"]) or "-"),
            escape(f"{last['event']} by {last['actor']}") if last else "-",
        )
    out.print(table)
    return EXIT_OK
