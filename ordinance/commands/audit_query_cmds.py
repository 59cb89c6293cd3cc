"""``ordinance audit index`` and ``ordinance audit query``: the decision log folded into a
SQLite index, and questions answered from it (ordinance.processors.audit.indexer/query).

The ``audit`` command is shared with verify/prove: ordinance.commands.audit_cmds owns it
and calls `add_query_commands` and `run_query_command`.
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ordinance.commands.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, console, emit_json
from ordinance.errors import OrdinanceError
from ordinance.streams.topics import DEFAULT_PREFIX

if TYPE_CHECKING:
    # The log and the index are imported inside the commands: building the parser
    # should not load SQLite, Avro or Kafka clients.
    from ordinance.processors.audit.indexer import IndexReport
DEFAULT_LIMIT = 1000


def add_query_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "index",
        help="fold agent.decisions into a SQLite index that `audit query` answers from",
        description=(
            "Index every decision of agent.decisions from where the index left off (the "
            "offsets indexed are stored with the rows; a different log at the same URL is "
            "refused). --rebuild starts again from the beginning of the log."
        ),
    )
    p.add_argument("--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://…")
    p.add_argument("--index", required=True, metavar="PATH", help="the index file (created)")
    p.add_argument(
        "--follow", action="store_true", help="keep indexing new decisions until SIGTERM/SIGINT"
    )
    p.add_argument(
        "--rebuild", action="store_true", help="delete the index first and index the whole log"
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic name prefix")
    _json_option(p)

    q = sub.add_parser(
        "query",
        help="decisions by agent, time, policy, rule, effect and tool, from the index",
        description=(
            "All filters hold together. Times are ISO-8601 (naive = UTC) or relative "
            "(15m, 2h ago, 7d); --since is inclusive, --until exclusive, both on the "
            "enforcer's decision time. Results in decision-time order."
        ),
    )
    q.add_argument("--index", required=True, metavar="PATH", help="index built by `audit index`")
    q.add_argument("--log", default=None, metavar="URL", help="bring the index up to date first")
    q.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic name prefix (with --log)")
    q.add_argument("--agent", default=None, metavar="ID")
    q.add_argument("--since", default=None, metavar="T1")
    q.add_argument("--until", default=None, metavar="T2")
    q.add_argument("--policy", default=None, metavar="P", help="a rule of policy P decided")
    q.add_argument(
        "--rule", default=None, metavar="R", help="policy/rule, or a rule id (of --policy)"
    )
    q.add_argument("--effect", default=None, choices=["allow", "deny", "require_approval"])
    q.add_argument("--tool", default=None, metavar="GLOB", help="e.g. 'payments.*'")
    q.add_argument(
        "--request",
        default=None,
        metavar="ID",
        help="one request's decisions (not indexed: add --agent or a time range on big logs)",
    )
    q.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the decision's argument NAME is VALUE (repeatable; not indexed: narrows the rest)",
    )
    q.add_argument(
        "--arm",
        default=None,
        choices=["canary", "control"],
        help="decided by the canary's candidate bundle, or by the stable one during a canary",
    )
    q.add_argument(
        "--shadow-disagrees",
        action="store_true",
        help="the shadow bundle's verdict differs from the enforced effect",
    )
    q.add_argument(
        "--shadow-bundle",
        default=None,
        metavar="ID-PREFIX",
        help="a shadow verdict by this bundle (sha256:8d38… or 8d38…)",
    )
    q.add_argument(
        "--fenced",
        default="exclude",
        choices=["include", "only"],
        help=(
            "also (include) or only (only) a zombie enforcer's fenced writes: decisions "
            "after another's takeover, never acted on and left out by default"
        ),
    )
    q.add_argument(
        "--mask-config",
        default=None,
        metavar="FILE",
        help="with --arg: also match the masked form of each value (see docs/audit.md)",
    )
    q.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N decisions (default {DEFAULT_LIMIT}; 0: all)",
    )
    q.add_argument("--csv", action="store_true", help="CSV with a header line")
    q.add_argument("--explain", action="store_true", help="print SQLite's plan, not results")
    _json_option(q)


def _json_option(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: if the shared `audit` parser has --json too, `audit --json query` keeps
    # working (a False default here would overwrite the parent's True).
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )


def run_query_command(args: argparse.Namespace) -> int | None:
    if getattr(args, "command", None) != "audit":
        return None
    as_json = bool(getattr(args, "json", False))
    if args.audit_command == "index":
        return cmd_index(
            args.log,
            args.index,
            follow=args.follow,
            prefix=args.prefix,
            as_json=as_json,
            rebuild=args.rebuild,
        )
    if args.audit_command == "query":
        if as_json and args.csv:
            _stderr().print("--json and --csv exclude each other", markup=False)
            return EXIT_USAGE
        return cmd_query(args, as_json=as_json)
    return None


def _stderr() -> Console:
    # soft_wrap: a message (a path, an error) stays one line in logs and for grep.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _progress_printer(err: Console, label: str) -> Callable[[IndexReport], None]:
    previous = [0, 0.0]  # records and seconds at the last line: the rate is the recent one

    def show(report: IndexReport) -> None:
        records = report.indexed + report.control + report.other
        rate = (records - previous[0]) / max(report.seconds - previous[1], 1e-9)
        previous[:] = [records, report.seconds]
        err.print(
            f"{label}: {report.indexed:,} decisions, {report.control:,} control, "
            f"{report.other:,} other records in {report.seconds:.1f}s ({rate:,.0f} records/s)",
            style="dim",
        )

    return show


def cmd_index(
    log_url: str, index: str, *, follow: bool, prefix: str, as_json: bool, rebuild: bool = False
) -> int:
    from ordinance.commands.lifecycle_cmds import _stop_on_signals
    from ordinance.processors.audit.index_follow import index_log
    from ordinance.processors.audit.indexer import remove_index
    from ordinance.streams import open_existing_log

    err = _stderr()
    try:
        # A reader: a mistyped path is an error, never a new empty database.
        with _stop_on_signals() as stop, open_existing_log(log_url) as log:
            if rebuild and remove_index(index):
                err.print(f"deleted {index}; rebuilding it from {log_url}", markup=False)
            if follow:
                err.print(f"indexing {log_url} into {index}; SIGTERM stops", markup=False)
            report = index_log(
                log,
                index,
                prefix=prefix,
                follow=follow,
                stop=stop,
                progress=_progress_printer(err, "indexed"),
            )
    except (OrdinanceError, sqlite3.Error, OSError) as exc:
        err.print(f"audit index failed: {exc}", style="red", markup=False)
        return EXIT_FAILED
    summary = {
        "indexed": report.indexed,
        "fenced": report.fenced,  # of them, a zombie enforcer's writes (`audit query --fenced`)
        "control_records": report.control,
        "other_records": report.other,
        "seconds": round(report.seconds, 3),
        "records_per_s": round(report.per_second),
        "total": report.total,
        "positions": {str(p): o for p, o in sorted((report.positions or {}).items())},
    }
    if as_json:
        emit_json(summary)
    else:
        where = ", ".join(f"{p}:{o}" for p, o in sorted((report.positions or {}).items()))
        console().print(
            f"indexed {report.indexed:,} decision(s)"
            + (f", {report.fenced:,} of them fenced writes" if report.fenced else "")
            + f" ({report.control:,} control, "
            f"{report.other:,} other records skipped) in {report.seconds:.1f}s, "
            f"{report.per_second:,.0f} records/s; the index holds {report.total:,}; "
            f"next offsets {where}"
        )
    return EXIT_OK


def _arg_filters(
    specs: list[str], mask_config: str | None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    from ordinance.processors.audit.query import QueryError

    masking = None
    if mask_config is not None:
        from ordinance.processors.masking import Masking, MaskingError

        try:
            masking = Masking.from_file(Path(mask_config))
        except MaskingError as exc:
            raise QueryError(str(exc)) from exc
    filters = []
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise QueryError(f"--arg {spec!r}: write NAME=VALUE")
        values = (value, masking.mask(value)) if masking is not None else (value,)
        filters.append((name, values))
    return tuple(filters)


def cmd_query(args: argparse.Namespace, *, as_json: bool) -> int:
    from ordinance.processors.audit import query as aq

    err = _stderr()
    try:
        limit = None if args.limit == 0 else args.limit
        f = aq.QueryFilter(
            agent=args.agent,
            since=None if args.since is None else aq.parse_time(args.since),
            until=None if args.until is None else aq.parse_time(args.until),
            policy=args.policy,
            rule=args.rule,
            effect=args.effect,
            tool=args.tool,
            request=args.request,
            args=_arg_filters(args.arg, args.mask_config),
            arm=args.arm,
            shadow_disagrees=args.shadow_disagrees,
            shadow_bundle=args.shadow_bundle,
            fenced=args.fenced,
            # One more than asked: whether the answer was cut short is then known.
            limit=None if limit is None else limit + 1,
        )
    except aq.QueryError as exc:
        err.print(str(exc), style="red", markup=False)
        return EXIT_USAGE
    if args.log is not None:
        code = _refresh(args.log, args.index, args.prefix, err)
        if code != EXIT_OK:
            return code
    try:
        conn = aq.connect(args.index)
    except aq.QueryError as exc:
        err.print(str(exc), style="red", markup=False)
        return EXIT_FAILED
    try:
        if args.explain:
            for line in aq.explain(conn, f):
                print(line)
            return EXIT_OK
        found = aq.query(conn, f)
        wanted = found if limit is None else itertools.islice(found, limit)
        # The query asks for one row more than shown: if it is there, the answer was cut.
        if args.csv:
            # Streamed: an export of every decision need not fit in memory.
            aq.write_csv(wanted, sys.stdout)
            truncated = limit is not None and next(found, None) is not None
        else:
            rows = list(wanted)
            truncated = limit is not None and next(found, None) is not None
            if as_json:
                emit_json({"count": len(rows), "truncated": truncated, "decisions": rows})
            else:
                _table(rows)
    finally:
        conn.close()
    if truncated:
        err.print(f"[yellow]first {limit} decision(s) shown; --limit 0 for all[/]")
    return EXIT_OK


def _refresh(log_url: str, index: str, prefix: str, err: Console) -> int:
    from ordinance.processors.audit.index_follow import index_log
    from ordinance.streams import open_existing_log

    try:
        with open_existing_log(log_url) as log:
            report = index_log(
                log, index, prefix=prefix, progress=_progress_printer(err, "refreshing")
            )
    except (OrdinanceError, sqlite3.Error, OSError) as exc:
        err.print(f"could not bring the index up to date: {exc}", style="red", markup=False)
        return EXIT_FAILED
    if report.indexed:
        err.print(f"{report.indexed:,} new decision(s) indexed", style="dim")
    return EXIT_OK


def _table(rows: list[dict[str, Any]]) -> None:
    out = console()
    if not rows:
        out.print("no decisions match")
        return
    table = Table(box=None, pad_edge=False)
    # The rollout columns only when a row has something in them: most logs have none.
    arms = any(r["arm"] is not None for r in rows)
    shadows = any(r["shadow_effect"] is not None for r in rows)
    fenced = any(r["fenced_owner"] is not None for r in rows)  # only asked for with --fenced
    columns = ["decided at (UTC)", "agent", "tool", "effect", "code", "request", "at"]
    columns += ["arm"] * arms + ["shadow"] * shadows + ["fenced"] * fenced + ["rules"]
    # Rule ids and the shadow verdict last and allowed to wrap: an auditor reads them in full.
    for column in columns:
        table.add_column(column, no_wrap=column not in ("rules", "shadow"), overflow="fold")
    for r in rows:
        # Text, not markup: agent and request ids come from agents, and "[...]" in one
        # must print as itself.
        cells = [
            r["evaluated_at"],
            r["agent_id"],
            r["tool"],
            r["effect"],
            r["code"],
            r["request_id"],
            f"{r['partition']}:{r['offset']}",
        ]
        cells += [r["arm"] or ""] * arms + [_shadow_cell(r)] * shadows
        cells += [_fenced_cell(r)] * fenced
        cells.append(" ".join(r["rule_ids"]))
        # A fenced write was never acted on: dimmed, whatever its effect.
        style = "dim" if r["fenced_owner"] is not None else "red" if r["effect"] == "deny" else None
        table.add_row(*map(Text, cells), style=style)
    out.print(table)
    out.print(f"{len(rows)} decision(s)")


def _fenced_cell(row: dict[str, Any]) -> str:
    """``by e-1, owner e-2`` for a fenced write (its writer had lost the partition)."""
    if row["fenced_owner"] is None:
        return ""
    return f"by {row['enforcer_id']}, owner {row['fenced_owner']}"


def _shadow_cell(row: dict[str, Any]) -> str:
    """``deny by sha256:1a2b3c4d5e6f… (p/r)``, with ``≠`` ahead when it is not what was
    enforced; empty without a shadow verdict."""
    if row["shadow_effect"] is None:
        return ""
    differs = "≠ " if row["shadow_effect"] != row["effect"] else ""
    rules = f" ({' '.join(row['shadow_rule_ids'])})" if row["shadow_rule_ids"] else ""
    return f"{differs}{row['shadow_effect']} by {row['shadow_bundle_id'][:19]}…{rules}"
