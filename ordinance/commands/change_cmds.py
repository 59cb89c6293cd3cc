"""``ordinance lifecycle review|approve|stage|enforce|canary|shadow|rollback|retire BUNDLE``:
one signed lifecycle event on ``policy.changes`` for a bundle already published.

``publish`` writes ``published`` (and ``enforced`` unless ``--no-enforce``) as one actor;
these commands let a second principal — an approver, docs/identity.md "Policy changes" —
put in force, roll back or retire what an author published. Each event is signed as
``--actor`` with ``--key`` (or ``$ORDINANCE_KEY``); the controller decides whether it
takes effect, and ``policy history`` shows what it made of it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from ordinance.commands.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, console, emit_json
from ordinance.errors import OrdinanceError

Command = Callable[[str, str], argparse.ArgumentParser]

EVENTS = {
    "enforce": "enforced",
    "canary": "canary",
    "shadow": "shadow",
    "rollback": "rolled_back",
    "review": "reviewed",
    "approve": "approved",
    "stage": "staged",
    "retire": "retired",
}
_BUNDLE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def register(command: Command) -> None:
    p = command(
        "lifecycle",
        "append one signed lifecycle event (review, approve, stage, enforce, canary, shadow, "
        "rollback, retire) for a published bundle",
    )
    p.add_argument("action", choices=sorted(EVENTS))
    _change_arguments(p)


def register_under_policy(sub: Any) -> None:
    """The same events as ``ordinance policy ACTION BUNDLE`` (the spelling docs/lifecycle.md
    uses beside ``lifecycle ACTION``); `ordinance.commands.policy_history_cmds` dispatches
    them to `cmd_lifecycle`."""
    for action, event in sorted(EVENTS.items()):
        text = f"append a signed {event} event for a published bundle (as lifecycle {action})"
        p = sub.add_parser(action, help=text, description=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(action=action)
        _change_arguments(p)


def _change_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="the bundle id (sha256:...), as publish printed it")
    p.add_argument(
        "--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://host:port"
    )
    p.add_argument(
        "--target", default="default", help="deployment target (enforce, canary, shadow, rollback)"
    )
    p.add_argument(
        "--percent",
        type=int,
        default=None,
        metavar="1..99",
        help="canary: the share of the target's agents the bundle decides for",
    )
    p.add_argument(
        "--auto-rollback",
        action="store_true",
        help="canary: let the monitor roll it back on a canary_regression alert",
    )
    p.add_argument(
        "--to",
        default=None,
        metavar="BUNDLE",
        help="rollback: the bundle to restore (without it: end the canary or shadow in force)",
    )
    p.add_argument("--actor", default=None, help="who acts (default: the OS user)")
    p.add_argument(
        "--key",
        metavar="PEM",
        help="sign the event as --actor with this private key (default $ORDINANCE_KEY)",
    )
    p.add_argument(
        "--reason", default=None, help="why (a review's comments), recorded with the change"
    )
    p.add_argument("--prefix", default="ordinance.", help="topic name prefix")


def run(args: argparse.Namespace) -> int | None:
    if args.command != "lifecycle":
        return None
    return cmd_lifecycle(args)


def cmd_lifecycle(args: argparse.Namespace) -> int:
    from ordinance.commands.lifecycle_cmds import change_signer, default_actor
    from ordinance.processors.policy_log import append_change
    from ordinance.streams import open_log

    err = console()
    problem = _usage_problem(args)
    if problem:
        if args.json:
            emit_json({"ok": False, "error": problem})
        else:
            err.print(f"[red]{problem}[/]")
        return EXIT_USAGE
    event = EVENTS[args.action]
    actor = default_actor(args.actor)
    rollout = event in ("enforced", "rolled_back", "canary", "shadow", "staged")
    try:
        signer = change_signer(actor, args.key)
        with open_log(args.log) as log:
            offset = append_change(
                log,
                event,
                args.bundle,
                actor=actor,
                signer=signer,
                target=args.target if rollout else None,
                previous_bundle_id=args.to,
                reason=args.reason,
                prefix=args.prefix,
                canary_percent=args.percent,
                auto_rollback=args.auto_rollback,
            )
    except OrdinanceError as exc:
        if args.json:
            emit_json({"ok": False, "error": str(exc)})
        else:
            err.print(f"[red]could not append the change:[/] {exc}")
        return EXIT_FAILED
    result = {
        "ok": True,
        "event": event,
        "bundle_id": args.bundle,
        "target": args.target if rollout else None,
        "canary_percent": args.percent,
        "auto_rollback": args.auto_rollback,
        "offset": offset,
        "actor": actor,
        "signed": signer is not None,
        "key_id": None if signer is None else signer.key_id,
    }
    if args.json:
        emit_json(result)
        return EXIT_OK
    how = f"signed with key {signer.key_id}" if signer is not None else "unsigned"
    console().print(
        f"{event} {args.bundle} by {actor} ({how}) at policy.changes offset {offset}; "
        "the controller decides whether it takes effect",
        markup=False,
    )
    return EXIT_OK


def _usage_problem(args: argparse.Namespace) -> str | None:
    if not _BUNDLE_ID.fullmatch(args.bundle):
        return f"{args.bundle!r} is not a bundle id (sha256: and 64 hex digits)"
    if args.to is not None:
        if args.action != "rollback":
            return "--to is for rollback only"
        if not _BUNDLE_ID.fullmatch(args.to):
            return f"--to {args.to!r} is not a bundle id"
    if args.action == "canary":
        if args.percent is None or not 1 <= args.percent <= 99:
            return "canary needs --percent 1..99 (for 100, enforce the bundle)"
    elif args.percent is not None or args.auto_rollback:
        return "--percent and --auto-rollback are for canary only"
    return None
