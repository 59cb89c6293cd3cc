"""``ordinance lifecycle enforce|rollback|approve|stage|retire BUNDLE``: one signed
lifecycle event on ``policy.changes`` for a bundle already published.

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

from ordinance.commands.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, console, emit_json
from ordinance.errors import OrdinanceError

Command = Callable[[str, str], argparse.ArgumentParser]

EVENTS = {
    "enforce": "enforced",
    "rollback": "rolled_back",
    "approve": "approved",
    "stage": "staged",
    "retire": "retired",
}
_BUNDLE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def register(command: Command) -> None:
    p = command(
        "lifecycle",
        "append one signed lifecycle event (enforce, rollback, approve, stage, retire) for a "
        "published bundle",
    )
    p.add_argument("action", choices=sorted(EVENTS))
    p.add_argument("bundle", help="the bundle id (sha256:...), as publish printed it")
    p.add_argument(
        "--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://host:port"
    )
    p.add_argument("--target", default="default", help="deployment target (enforce, rollback)")
    p.add_argument("--to", default=None, metavar="BUNDLE", help="rollback: the bundle to restore")
    p.add_argument("--actor", default=None, help="who acts (default: the OS user)")
    p.add_argument(
        "--key",
        metavar="PEM",
        help="sign the event as --actor with this private key (default $ORDINANCE_KEY)",
    )
    p.add_argument("--reason", default=None, help="why, recorded with the change")
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
    rollout = event in ("enforced", "rolled_back")
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
    if args.action == "rollback":
        if args.to is None:
            return "rollback needs --to BUNDLE: the bundle to restore"
        if not _BUNDLE_ID.fullmatch(args.to):
            return f"--to {args.to!r} is not a bundle id"
    elif args.to is not None:
        return "--to is for rollback only"
    return None
