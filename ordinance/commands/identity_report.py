"""``ordinance identity list|show``: the registry as the log holds it, for people and
scripts (rich tables, or ``--json``): principals with roles, attributes and key windows,
which record installed each version and who signed it, and every refused record with its
code, so an attempt to forge or replay a registry change is visible, not silently gone."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from ordinance.commands.output import EXIT_FAILED, EXIT_OK, console, emit_json, report_failure

# -- reads --------------------------------------------------------------------------------


def read_registry(args: argparse.Namespace, trust: Any) -> int:
    from ordinance.identity.registry import Registry
    from ordinance.identity.registry_log import RegistryView, load_registry
    from ordinance.streams import open_existing_log
    from ordinance.streams.errors import TopicConfigError
    from ordinance.streams.topics import IDENTITY_REGISTRY

    with open_existing_log(args.log) as log:
        try:
            log.partitions(args.prefix + IDENTITY_REGISTRY)
        except TopicConfigError:
            view = RegistryView(Registry(trust))  # nothing registered yet: an empty registry
        else:
            view = load_registry(log, trust, args.prefix)
    if args.identity_command == "list":
        return _list(args, view)
    return _show(args, view)


def _short(iso: str) -> str:
    # Tables show seconds, UTC; --json keeps the exact microseconds.
    return iso[:19].replace("T", " ") + "Z" if iso.endswith("+00:00") else iso


def _keys_text(principal: Mapping[str, Any]) -> str:
    parts = []
    for k in principal["keys"]:
        until = _short(k["not_after"]) if k["not_after"] else "…"
        parts.append(f"{k['key_id']} [{_short(k['not_before'])} – {until})")
    return "\n".join(parts) or "-"


def _refusals_table(refusals: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="refused registry records (never in force)")
    for column in ("offset", "principal", "signer (claimed)", "code", "detail"):
        table.add_column(column)
    for r in refusals:
        table.add_row(
            str(r["offset"]), r["principal_id"] or "-", r["signer"] or "-", r["code"], r["detail"]
        )
    return table


def _list(args: argparse.Namespace, view: Any) -> int:
    from rich.table import Table

    principals = [p.to_json() for _, p in sorted(view.principals.items())]
    refused = [r.to_json() for r in view.refusals]
    if args.json:
        emit_json({"principals": principals, "refused": refused, "end_offset": view.end_offset})
        return EXIT_OK
    out = console()
    table = Table(title=f"identity registry ({len(principals)} principal(s))")
    for column in ("principal", "kind", "status", "roles", "attributes", "owner", "keys", "v"):
        table.add_column(column)
    for p in principals:
        table.add_row(
            p["principal_id"],
            p["kind"],
            p["status"],
            ", ".join(p["roles"]) or "-",
            json.dumps(p["attributes"], default=str, sort_keys=True) if p["attributes"] else "-",
            p["owner"] or "-",
            _keys_text(p),
            str(p["version"]),
        )
    out.print(table, markup=False)
    if refused:
        out.print(_refusals_table(refused))
    return EXIT_OK


def _show(args: argparse.Namespace, view: Any) -> int:
    pid = args.principal_id
    principal = view.get(pid)
    history = [c.to_json() for c in view.changes if c.principal_id == pid]
    refused = [r.to_json() for r in view.refusals if r.principal_id == pid]
    if principal is None and not refused:
        return report_failure(f"{pid!r} is not in the identity registry", args.json, EXIT_FAILED)
    data = {
        "principal": None if principal is None else principal.to_json(),
        "history": history,
        "refused": refused,
    }
    if args.json:
        emit_json(data)
        return EXIT_OK
    out = console()
    if principal is None:
        out.print(f"{pid}: not in the registry (only refused records name it)", markup=False)
    else:
        p: dict[str, Any] = principal.to_json()
        out.print(
            f"{pid}: {p['kind']}, {p['status']}, version {p['version']} (signed {p['at']})\n"
            f"  roles: {', '.join(p['roles']) or '-'}\n"
            f"  attributes: {json.dumps(p['attributes'], default=str, sort_keys=True)}\n"
            f"  owner: {p['owner'] or '-'}\n"
            f"  keys:\n    " + _keys_text(p).replace("\n", "\n    "),
            markup=False,
        )
        for c in history:
            out.print(
                f"  offset {c['offset']}: version {c['version']} {c['status']} at {c['at']}, "
                f"signed by {c['signer']} (key {c['key_id']})",
                markup=False,
            )
    if refused:
        out.print(_refusals_table(refused))
    return EXIT_OK
