"""``ordinance replay verify | whatif | export``: the historical log through the
processors' own code (ordinance.replay). Reads only; never writes to the live topics.

Exit codes: 0 ok, 1 findings (verify) or changes with --fail-on-change (whatif),
2 usage (bad time, no such log, unknown bundle), 3 a candidate that does not compile.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from ordinance.commands.output import (
    EXIT_FAILED,
    EXIT_GATE,
    EXIT_OK,
    console,
    emit_json,
    report_failure,
    report_policy_errors,
)

Command = Callable[[str, str], argparse.ArgumentParser]
MAX_SHOWN = 50


def _json_flag(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: `replay --json verify` and `replay verify --json` both work.
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )


def _window(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="start",
        default=None,
        metavar="T",
        help="event time from (ISO 8601, epoch s, now, or 2h for 2 hours ago)",
    )
    p.add_argument(
        "--to", dest="end", default=None, metavar="T", help="event time before (exclusive)"
    )
    p.add_argument("--agent", action="append", default=None, help="only this agent (repeatable)")
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument(
        "--jobs", type=int, default=1, help="worker processes, one partition at a time (default 1)"
    )


def _where(p: argparse.ArgumentParser, offline: bool = True) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--log", metavar="URL", help="sqlite:///path.db or kafka://host:port (read only)"
    )
    if offline:
        where.add_argument(
            "--input", metavar="FILE", help="an exported slice (replay export) instead of a log"
        )


def register(command: Command) -> None:
    p = command(
        "replay",
        "re-run recorded decisions: verify the enforcer, what-if a candidate, export a slice",
    )
    sub = p.add_subparsers(dest="replay_command", required=True, metavar="SUBCOMMAND")
    v = sub.add_parser(
        "verify",
        help="recompute every recorded decision in a window and report differences (exit 1 on findings)",
    )
    _json_flag(v)
    _where(v)
    _window(v)
    w = sub.add_parser(
        "whatif", help="the recorded actions under a candidate bundle: which decisions change"
    )
    _json_flag(w)
    _where(w)
    _window(w)
    w.add_argument(
        "--bundle",
        required=True,
        metavar="DIR_OR_ID",
        help="a policy directory, or a bundle id (prefix) on the log",
    )
    w.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    w.add_argument("--fail-on-change", action="store_true", help="exit 1 if any decision changes")
    e = sub.add_parser(
        "export",
        help="write a slice (actions, decisions, bundles) as an Avro container file for offline replay",
    )
    _json_flag(e)
    _where(e, offline=False)
    _window(e)
    e.add_argument("--out", required=True, metavar="FILE.avro")


@contextmanager
def progress(label: str, total: int | None, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A bar with a rate on stderr (when it is a terminal), and a closing line with the rate."""
    err = Console(stderr=True, highlight=False)
    started = time.perf_counter()
    done = 0
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        console=err,
        disable=quiet or not err.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total, rate="")

        def tick(n: int) -> None:
            nonlocal done
            done += n
            elapsed = time.perf_counter() - started
            bar.update(
                task, advance=n, rate=f"{done / elapsed:,.0f} records/s" if elapsed > 0 else ""
            )

        yield tick
    if not quiet:
        elapsed = time.perf_counter() - started
        rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "-"
        err.print(
            f"[dim]{label}: {done:,} decisions-log records in {elapsed:.2f} s ({rate} records/s)[/]"
        )


def run(args: argparse.Namespace) -> int | None:
    if args.command != "replay":
        return None
    from ordinance.replay.source import open_source
    from ordinance.replay.times import TimeArgumentError
    from ordinance.streams.errors import LogError

    args.json = getattr(args, "json", False)
    try:
        source, log = open_source(
            getattr(args, "log", None), getattr(args, "input", None), args.prefix
        )
    except LogError as exc:  # SourceError included: no such log, unreachable broker
        return report_failure(str(exc), args.json)
    try:
        window = _window_of(args, source)
        agents = frozenset(args.agent) if args.agent else None
        if args.replay_command == "verify":
            return _verify(args, source, window, agents)
        if args.replay_command == "whatif":
            return _whatif(args, source, window, agents)
        return _export(args, source, window, agents)
    except (TimeArgumentError, LogError) as exc:
        return report_failure(str(exc), args.json)
    finally:
        if log is not None:
            log.close()


def _window_of(args: argparse.Namespace, source: Any) -> Any:
    from ordinance.replay.source import FileSource
    from ordinance.replay.times import TimeArgumentError, Window, parse_time

    start = parse_time(args.start) if args.start else None
    end = parse_time(args.end) if args.end else None
    if not isinstance(source, FileSource):
        return Window(start, end)
    # A slice replays the window it was cut for, or a part of it: outside it, the
    # actions are not in the file (every decision there would be "action_missing").
    meta = source.meta.get("window") or {}
    cut_start = parse_time(meta["from"]) if meta.get("from") else None
    cut_end = parse_time(meta["to"]) if meta.get("to") else None
    start = start or cut_start
    end = end or cut_end
    if (cut_start is not None and (start is None or start < cut_start)) or (
        cut_end is not None and (end is None or end > cut_end)
    ):
        raise TimeArgumentError(
            f"the slice holds event times {meta.get('from') or 'start'} to {meta.get('to') or 'end'}; "
            "replay it within that window"
        )
    return Window(start, end)


def total_records(source: Any, topic: str) -> int | None:
    from ordinance.replay.source import FileSource, LogSource

    if isinstance(source, FileSource):
        return sum(len(v) for (t, _p), v in source.records.items() if t == topic)
    if isinstance(source, LogSource):
        try:
            return sum(source.log.end_offsets(source.prefix + topic).values())
        except Exception:  # informational only: no total, no bar length
            return None
    return None


def _reopen(args: argparse.Namespace, source: Any) -> Any:
    """How a worker process gets its own source: a slice already in memory is inherited
    by the fork; a live log is opened again (one connection per process)."""
    from ordinance.replay.source import FileSource, open_source

    if isinstance(source, FileSource):
        return lambda: (source, None)
    return functools.partial(open_source, args.log, None, args.prefix)


def _verify(args: argparse.Namespace, source: Any, window: Any, agents: Any) -> int:
    from ordinance.replay.verify import verify

    with progress(
        "replay verify", total_records(source, "agent.decisions"), args.quiet or args.json
    ) as tick:
        report = verify(
            source,
            window=window,
            agents=agents,
            tick=tick,
            jobs=args.jobs,
            reopen=_reopen(args, source),
        )
    data = report.to_json()
    if args.json:
        emit_json(data)
        return EXIT_OK if report.ok else EXIT_FAILED
    out = console()
    out.print(
        f"[bold]replay verify[/] {source.label} — event time {data['window']['from'] or 'start'} to {data['window']['to'] or 'end'}"
        + (f", agents {', '.join(data['agents'])}" if data["agents"] else "")
    )
    table = Table()
    for column in (
        "partition",
        "records folded",
        "decisions verified",
        "agree",
        "follow-ups",
        "duplicates skipped",
        "not yet decided",
    ):
        table.add_column(column, justify="right")
    for partition, c in sorted(report.partitions.items()):
        table.add_row(
            str(partition),
            str(c.records),
            str(c.decisions),
            str(c.agreed),
            str(c.follow_ups),
            str(c.duplicates_skipped),
            str(c.undecided),
        )
    out.print(table)
    for problem in report.bundle_problems:
        out.print(
            f"[red]bundle {problem.bundle_id[:23]}… {problem.kind}[/]: {escape(problem.message)}"
        )
    for finding in data["findings"][:MAX_SHOWN]:
        topic = "actions" if finding["kind"] == "action_without_decision" else "decisions"
        where = f"{topic}[{finding['partition']}]@{finding['offset']}"
        about = " ".join(
            f"{label} {finding[key]}"
            for label, key in (
                ("request", "request_id"),
                ("agent", "agent_id"),
                ("at", "event_time"),
            )
            if finding[key] is not None
        )
        out.print(f"[red]{finding['kind']}[/] " + escape(f"{where} {about}: {finding['message']}"))
        for name, pair in finding["differences"].items():
            out.print(
                f"    {name}: recorded {json.dumps(pair['recorded'])}  recomputed {json.dumps(pair['recomputed'])}",
                markup=False,
            )
        for read in finding["window_reads"]:
            out.print(
                f"    window.{read['fn']}({read.get('arg', '')} {read['seconds']}s) for {read['agent']}/{read['tool']} = {read['value']}",
                markup=False,
            )
    if len(data["findings"]) > MAX_SHOWN:
        out.print(f"… and {len(data['findings']) - MAX_SHOWN} more (--json lists all)")
    if data["finding_kinds"]:
        out.print(
            "findings by kind: "
            + ", ".join(f"{kind} {n}" for kind, n in sorted(data["finding_kinds"].items()))
        )
    verdict = (
        "[green]every decision reproduced[/]"
        if report.ok
        else f"[red]{len(report.findings)} finding(s), {len(report.bundle_problems)} bundle problem(s)[/]"
    )
    out.print(
        f"{data['decisions']} decisions verified, {data['agreed']} agree in {data['seconds']} s ({data['decisions_per_s']} decisions/s after {data['bundle_compile_seconds']} s compiling bundles): {verdict}"
    )
    return EXIT_OK if report.ok else EXIT_FAILED


def _candidate(spec: str, source: Any, as_json: bool) -> Any:
    """A Ruleset from a directory or from a bundle id (prefix) on the log; an int is an exit code."""
    from ordinance.policy.bundle import compile_bundle, read_bundle_dir
    from ordinance.policy.errors import PolicyErrors
    from ordinance.replay.bundles import BundleStore

    if Path(spec).is_dir():
        try:
            return compile_bundle(read_bundle_dir(Path(spec)))
        except PolicyErrors as exc:
            return report_policy_errors(exc, as_json)
    store = BundleStore.load(source)
    bundle_id = store.resolve(spec)
    if bundle_id is None:
        return report_failure(
            f"{spec!r} is neither a directory nor one bundle id on the log", as_json
        )
    ruleset = store.ruleset(bundle_id)
    if ruleset is None:
        problems = "; ".join(p.message for p in store.problems.get(bundle_id, []))
        return report_failure(f"bundle {bundle_id} cannot be used: {problems}", as_json)
    for problem in store.problems.get(bundle_id, []):
        # Usable but not what was published (altered content, differing copies): say so.
        Console(stderr=True, highlight=False).print(
            f"[yellow]warning: bundle {bundle_id[:23]}… {problem.kind}[/]: {escape(problem.message)}"
        )
    return ruleset


def _whatif(args: argparse.Namespace, source: Any, window: Any, agents: Any) -> int:
    from ordinance.replay.html_report import render_html
    from ordinance.replay.whatif import whatif

    candidate = _candidate(args.bundle, source, args.json)
    if isinstance(candidate, int):
        return candidate
    with progress(
        "replay whatif", total_records(source, "agent.decisions"), args.quiet or args.json
    ) as tick:
        report = whatif(
            source,
            candidate,
            window=window,
            agents=agents,
            tick=tick,
            jobs=args.jobs,
            reopen=_reopen(args, source),
        )
    if args.html:
        Path(args.html).write_text(render_html(report), encoding="utf-8")
    data = report.to_json()
    code = EXIT_GATE if args.fail_on_change and report.changes else EXIT_OK
    if args.json:
        emit_json({**data, "html": args.html})
        return code
    out = console()
    out.print(f"[bold]replay whatif[/] {source.label} under {candidate.bundle_id}")
    out.print(
        f"{data['evaluated']} decisions re-evaluated with the recorded window state: "
        f"[bold]{data['changed']}[/] change effect, {data['same_effect_other_rules']} keep it under other rules, {data['skipped']} skipped"
    )
    transitions = Table(title="changes by effect")
    transitions.add_column("old → new")
    transitions.add_column("decisions", justify="right")
    for t in data["transitions"]:
        transitions.add_row(f"{t['old_effect']} → {t['new_effect']}", str(t["count"]))
    out.print(transitions)
    groups = Table(title="by tool and the candidate's deciding rules (one example each)")
    for column in ("old → new", "tool", "rules", "decisions", "example request"):
        groups.add_column(column, justify="right" if column == "decisions" else "left")
    for g in data["groups"][:MAX_SHOWN]:
        example = g["examples"][0]
        groups.add_row(
            f"{g['old_effect']} → {g['new_effect']}",
            escape(g["tool"]),
            escape(g["rules"]),
            str(g["count"]),
            escape(
                f"{example['agent_id']} {json.dumps(example['request']['action'], sort_keys=True)}"
            ),
        )
    out.print(groups)
    if args.html:
        out.print(f"HTML report: {args.html}")
    return code


def _export(args: argparse.Namespace, source: Any, window: Any, agents: Any) -> int:
    from ordinance.replay.export import export_slice

    with progress(
        "replay export", total_records(source, "agent.decisions"), args.quiet or args.json
    ) as tick:
        meta = export_slice(source, Path(args.out), window=window, agents=agents, tick=tick)
    if args.json:
        emit_json(meta)
        return EXIT_OK
    counts = ", ".join(f"{n} {t}" for t, n in meta["counts"].items())
    console().print(
        f"wrote {meta['records']} records to {args.out} ({counts}); replay it with `ordinance replay verify --input {args.out}`"
    )
    return EXIT_OK
