"""Authoring commands: ``check``, ``test``, ``eval``, ``fmt``, and the formal analysis
``analyze`` and ``diff`` (and ``check --analyze``). Registered like every command group
(`ordinance.cli`); the work is in `policy_cmds` and `analysis_cmds`, imported when run."""

from __future__ import annotations

import argparse
from typing import Any


def register(command: Any) -> None:
    p = command("check", "parse and type-check a policy directory against its schema")
    p.add_argument("directory", help="directory with schema.yaml and policy files")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a rule that can fail to evaluate (a silent deny) is an error, not a warning",
    )
    _analysis_check_options(p)
    p.add_argument(
        "--log",
        metavar="URL",
        default=None,
        help="also compare the schema with the bundle in force on --target there: a change "
        "that breaks live traffic exits 5 unless acknowledged (docs/lifecycle.md)",
    )
    p.add_argument("--target", default="default", help="deployment target (with --log)")
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix (with --log)")

    p = command(
        "test", "run every policy's tests against the combined set (exit 3: compile, 4: tests)"
    )
    p.add_argument("directory")
    p.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")

    p = command("eval", "decide one request and explain why")
    p.add_argument("directory")
    p.add_argument("--request", required=True, help="request JSON file, or - for stdin")

    p = command("fmt", "rewrite policy files in canonical form (comments kept)")
    p.add_argument("paths", nargs="+", help="policy files or directories")
    p.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if any file would change"
    )
    _analysis_commands(command)


def run(args: argparse.Namespace) -> int | None:
    if args.command in ("analyze", "diff") or (args.command == "check" and args.analyze):
        return _analysis_run(args)
    if args.command in ("check", "test", "eval", "fmt"):
        from ordinance.commands import policy_cmds

        if args.command == "check":
            return policy_cmds.cmd_check(
                args.directory, args.json, args.strict, args.log, args.target, args.prefix
            )
        if args.command == "test":
            return policy_cmds.cmd_test(args.directory, args.json, args.verbose)
        if args.command == "eval":
            return policy_cmds.cmd_eval(args.directory, args.request, args.json)
        return policy_cmds.cmd_fmt(args.paths, args.check, args.json)
    return None


def _analysis_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--analyze", action="store_true", help="also run the Z3 analysis gate (exit 5 if refused)"
    )
    analysis_gate_options(p)


def analysis_gate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fail-on-conflicts",
        choices=["none", "cross-owner", "all"],
        default="cross-owner",
        help="which unacknowledged conflicts refuse the bundle (default: cross-owner)",
    )
    _analysis_budget_options(p)
    p.add_argument(
        "--undecided",
        choices=["refuse", "assertions", "allow"],
        default="refuse",
        help="which undecided checks refuse the bundle (default: refuse on every one)",
    )
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes")


def _analysis_budget_options(p: argparse.ArgumentParser) -> None:
    from ordinance.policy.analysis.bucket import DEFAULT_RLIMIT

    p.add_argument(
        "--rlimit",
        type=int,
        default=DEFAULT_RLIMIT,
        help=f"per-check Z3 resource budget, the same on every machine (default {DEFAULT_RLIMIT})",
    )
    p.add_argument(
        "--timeout", type=int, default=None, help="accepted for compatibility; ignored (--rlimit)"
    )


def _analysis_commands(command: Any) -> None:
    p = command("analyze", "formal analysis: conflicts, dead rules, assertions, gaps (Z3)")
    p.add_argument("directory")
    _analysis_budget_options(p)
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    p.add_argument(
        "--policy",
        action="append",
        default=None,
        metavar="ID",
        help="analyse only the tool buckets this policy touches (repeatable; after an edit)",
    )
    p = command("diff", "requests whose decision changes between two bundles (dirs or ids)")
    p.add_argument("old", help="policy directory, or bundle id (prefix) on --log")
    p.add_argument("new", help="policy directory, or bundle id (prefix) on --log")
    p.add_argument("--fail-on", choices=["new-allow", "new-access", "any"], default=None)
    _analysis_budget_options(p)
    p.add_argument("--log", metavar="URL", default=None, help="the log holding bundle ids")
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix")


def _analysis_run(args: argparse.Namespace) -> int | None:
    from ordinance.commands import analysis_cmds as ac

    if args.command == "check" and args.analyze:
        return ac.cmd_check_analyze(
            args.directory,
            args.json,
            args.fail_on_conflicts,
            args.timeout,
            args.jobs,
            args.rlimit,
            args.undecided,
            args.log,
            args.target,
            args.prefix,
        )
    if args.command == "analyze":
        return ac.cmd_analyze(
            args.directory, args.json, args.timeout, args.jobs, args.rlimit, args.policy
        )
    if args.command == "diff":
        return ac.cmd_diff(
            args.old,
            args.new,
            args.json,
            args.fail_on,
            args.timeout,
            args.log,
            args.prefix,
            args.rlimit,
        )
    return None
