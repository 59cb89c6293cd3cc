"""Pipeline commands: ``demo``, ``publish``, ``serve``, ``controller``, ``approvals`` and
``submit``. Registered like every command group (`ordinance.cli`); the work is in
`lifecycle_cmds`, `demo` and `submit_cmd`, imported when run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ordinance import service_config
from ordinance.commands.authoring_cli import analysis_gate_options
from ordinance.commands.output import EXIT_USAGE, ExitCode


def register(command: Any) -> None:
    p = command(
        "demo",
        "publish the example policies and run the pipeline for a fleet of simulated agents, with a hot swap half-way",
    )
    p.add_argument(
        "--policies", default=None, help="policy directory (default: the bundled examples)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--log",
        default=None,
        metavar="URL",
        help="run on this log and leave it there (sqlite:///path.db, kafka://host:port); default: a temporary embedded log",
    )
    where.add_argument(
        "--kafka",
        action="store_true",
        help="start a local Kafka-protocol broker and run the session through it",
    )
    p = command(
        "publish",
        "compile and test a policy directory, then publish it to policy.changes and request enforcement",
    )
    p.add_argument("directory")
    p.add_argument(
        "--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://host:port"
    )
    p.add_argument("--target", default="default", help="deployment target to enforce on")
    p.add_argument("--actor", default=None, help="who publishes (default: the OS user)")
    p.add_argument("--reason", default=None, help="why, recorded with the change")
    p.add_argument("--no-enforce", action="store_true", help="publish only; enforce later")
    p.add_argument(
        "--key",
        metavar="PEM",
        help="sign the changes as --actor with this private key (default $ORDINANCE_KEY)",
    )
    p.add_argument(
        "--skip-analysis",
        action="store_true",
        help="publish without the Z3 analysis gate (it runs by default; exit 5 if it refuses)",
    )
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="publish from a Git tree with uncommitted changes or untracked policy files "
        "(refused by default, exit 5); recorded on the published event as a bypass",
    )
    p.add_argument(
        "--whatif-since",
        default="24h",
        metavar="T",
        help="replay the log's decisions since T (default 24h ago) under the bundle and record "
        "how many would change on the published event (docs/lifecycle.md)",
    )
    p.add_argument(
        "--skip-whatif",
        action="store_true",
        help="publish without that replay (recorded on the published event as a bypass)",
    )
    analysis_gate_options(p)  # publish runs the analysis gate

    p = command("serve", "run the controller and the enforcer on a log until SIGTERM")
    p.add_argument("--log", required=True, metavar="URL")
    p.add_argument(
        "--trust",
        metavar="FILE",
        help="trust file: the controller accepts only signed, authorised policy changes "
        "(default $ORDINANCE_TRUST)",
    )
    p.add_argument("--target", default="default", help="deployment target whose bundle to enforce")
    p.add_argument(
        "--prefix",
        default="ordinance.",
        help="topic name prefix: one per environment isolates it (docs/lifecycle.md)",
    )
    p.add_argument(
        "--enforcer-id", default=None, help="stable name of this enforcer (default: random)"
    )
    p.add_argument(
        "--mask-config",
        default=None,
        metavar="FILE",
        help="masking file: tool arguments the decision log stores only as keyed hashes",
    )
    p.add_argument(
        "--signing-key",
        default=None,
        metavar="FILE",
        help="also run the audit checkpointer, signing with this Ed25519 key",
    )
    _controller_key_options(p)
    p.add_argument(
        "--state-dir",
        default=None,
        help="RocksDB state cache: a restart folds only the tail of the decisions log",
    )
    p.add_argument(
        "--max-clock-skew",
        type=_skew_seconds,
        default=300.0,  # enforcer.DEFAULT_MAX_CLOCK_SKEW_S (the CLI imports processors lazily)
        metavar="SECONDS",
        help="deny (clock_skew) an action whose event time is further than this from the "
        "enforcer's clock; 'off' for no bound (default: 300)",
    )
    p.add_argument(
        "--http",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus /metrics, /healthz and /readyz for this enforcer here",
    )
    p.add_argument(
        "--dedupe-horizon",
        type=_horizon_seconds,
        default=7 * 86400.0,  # state_horizon.DEFAULT_DEDUPE_HORIZON_S
        metavar="DURATION",
        help="how long request ids and window history are remembered (e.g. 7d, 12h; 'off':"
        " forever); an intent dated further back is denied stale_request (default: 7d)",
    )
    service_config.prepare_parser(p, "serve")

    p = command(
        "approvals", "list require_approval decisions waiting for a human, approve or reject them"
    )
    p.add_argument("action", choices=["list", "approve", "reject"])
    p.add_argument("request_id", nargs="?", help="the request to answer (approve / reject)")
    p.add_argument("--log", required=True, metavar="URL")
    p.add_argument("--approver", default=None, help="who answers (default: the OS user)")
    p.add_argument(
        "--key",
        metavar="PEM",
        help="sign the answer as --approver with this private key (default $ORDINANCE_KEY);"
        " an enforcer that enforces identity counts only signed answers",
    )
    p.add_argument("--reason", default=None)
    p.add_argument(
        "--expires-in",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the approval lapses after this",
    )

    p = command("controller", "validate policy.changes into the policy.active table")
    p.add_argument("--log", required=True, metavar="URL")
    p.add_argument("--once", action="store_true", help="process pending changes, then exit")
    p.add_argument(
        "--trust",
        metavar="FILE",
        help="trust file: accept only changes signed by registry principals allowed to "
        "make them (default $ORDINANCE_TRUST; neither: changes are not authenticated)",
    )
    _controller_key_options(p)

    p = command(
        "submit",
        "publish one intent and print its decision (exit "
        f"{ExitCode.OK:d} allow, {ExitCode.DENIED:d} deny, {ExitCode.APPROVAL:d} "
        f"require_approval, {ExitCode.NO_DECISION:d} no decision, {ExitCode.USAGE:d} usage)",
    )
    p.add_argument("request", help="request JSON file (agent, action, resource, context), or -")
    p.add_argument(
        "--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://host:port"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="bound on the whole command, opening and closing the log included (default 5)",
    )
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix")
    p.add_argument(
        "--key",
        metavar="PEM",
        help="the agent's private key: sign the intent (default $ORDINANCE_AGENT_KEY)",
    )


def run(args: argparse.Namespace) -> int | None:
    if args.command == "serve":
        from ordinance.commands import lifecycle_cmds
        from ordinance.commands.output import report_failure

        try:
            service_config.resolve("serve", args)
        except service_config.ServiceConfigError as exc:
            return report_failure(str(exc), args.json)
        return lifecycle_cmds.cmd_serve(
            args.log,
            target=args.target,
            enforcer_id=args.enforcer_id,
            as_json=args.json,
            state_dir=args.state_dir,
            mask_config=args.mask_config,
            signing_key=args.signing_key,
            max_clock_skew_s=args.max_clock_skew,
            trust=args.trust,
            dedupe_horizon_s=args.dedupe_horizon,
            http=args.http,
            prefix=args.prefix,
            controller_key=args.controller_key,
            controller_id=args.controller_id,
        )
    if args.command == "approvals":
        from ordinance.commands import lifecycle_cmds

        if args.action != "list" and not args.request_id:
            print(f"ordinance approvals: error: {args.action} needs a REQUEST_ID", file=sys.stderr)
            return EXIT_USAGE
        return lifecycle_cmds.cmd_approvals(
            args.action,
            args.log,
            request_id=args.request_id,
            approver=args.approver,
            reason=args.reason,
            expires_in_s=args.expires_in,
            as_json=args.json,
            key=args.key,
        )
    if args.command in ("publish", "controller"):
        from ordinance.commands import lifecycle_cmds

        if args.command == "publish":
            return lifecycle_cmds.cmd_publish(
                args.directory,
                args.log,
                target=args.target,
                actor=args.actor,
                reason=args.reason,
                enforce=not args.no_enforce,
                as_json=args.json,
                analysis=None
                if args.skip_analysis
                else (
                    args.fail_on_conflicts,
                    args.timeout,
                    args.jobs,
                    args.rlimit,
                    args.undecided,
                ),
                key=args.key,
                allow_dirty=args.allow_dirty,
                whatif_since=None if args.skip_whatif else args.whatif_since,
            )
        return lifecycle_cmds.cmd_controller(
            args.log,
            once=args.once,
            as_json=args.json,
            trust=args.trust,
            controller_key=args.controller_key,
            controller_id=args.controller_id,
        )
    if args.command == "demo":
        from ordinance.commands.demo import cmd_demo

        return cmd_demo(args.policies, args.json, args.log, args.kafka)
    if args.command == "submit":
        from ordinance.commands.submit_cmd import cmd_submit

        return cmd_submit(args.request, args.log, args.timeout, args.json, args.prefix, args.key)
    return None


def _skew_seconds(text: str) -> float | None:
    """``serve --max-clock-skew``: seconds >= 0, or ``off``."""
    try:
        return service_config.skew_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _horizon_seconds(text: str) -> float | None:
    """``serve --dedupe-horizon``: a duration such as ``7d`` or ``90m``, or ``off``."""
    try:
        return service_config.horizon_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _controller_key_options(p: argparse.ArgumentParser) -> None:
    """``serve`` and ``controller``: the key that signs policy.active (`active_auth`)."""
    p.add_argument(
        "--controller-key",
        default=None,
        metavar="PEM",
        help="the controller's private key: with --trust it signs every policy.active record, "
        "and enforcers with a trust root believe no other (docs/identity.md)",
    )
    p.add_argument(
        "--controller-id",
        default="policy-controller",
        metavar="NAME",
        help="the registry principal (role policy-controller) whose key --controller-key is "
        "(default: policy-controller)",
    )
