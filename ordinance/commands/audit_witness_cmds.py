"""``ordinance audit anchor`` and the witness options of ``audit verify`` (``--witness``,
``--max-unsigned-tail``): checkpoints copied outside the log, and the log held to them
(ordinance.processors.audit.witness).

The ``audit`` command is owned by ordinance.commands.audit_cmds, which calls
`add_anchor_command`, `add_verify_options` and `cmd_anchor`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ordinance.commands.output import EXIT_FAILED, EXIT_OK, console, emit_json

if TYPE_CHECKING:
    from ordinance.processors.audit.verify import Finding
    from ordinance.processors.audit.witness import TailLimit

WITNESS_HELP = (
    "git:DIR (a Git repository, created when new), file:PATH (a JSON-lines file); a bare "
    "path is a Git witness if it is a directory, a file otherwise"
)


def _tail_limit(text: str) -> TailLimit:
    from ordinance.processors.audit.witness import TailLimit, TailLimitError

    try:
        return TailLimit.parse(text)
    except TailLimitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_verify_options(v: argparse.ArgumentParser) -> None:
    v.add_argument(
        "--witness",
        metavar="W",
        help="also require the log to reproduce every checkpoint `audit anchor` copied to "
        "this witness, and the keyring to be the one it pinned. " + WITNESS_HELP,
    )
    v.add_argument(
        "--max-unsigned-tail",
        metavar="N|DURATION",
        type=_tail_limit,
        help="fail when more than N records, or a record older than DURATION (30s, 10m, 1h, "
        "1d), are covered by no signed checkpoint",
    )


def add_anchor_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    log_options: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    a = sub.add_parser(
        "anchor",
        help="copy each verified signed checkpoint to a witness outside the log",
        description=(
            "Verify the log (under the keyring the witness pinned, against everything it "
            "witnessed before) and copy every signed checkpoint newer than it holds to the "
            "witness; on first use the keyring's fingerprint is pinned there. Nothing is "
            "written when anything fails to verify: a rollback, a rewrite, a deleted "
            "checkpoint or another keyring is reported instead (exit 1)."
        ),
    )
    log_options(a)
    a.add_argument("--witness", required=True, metavar="W", help=WITNESS_HELP)
    a.add_argument("--keyring", required=True, type=Path, help="trusted keyring JSON")
    a.add_argument(
        "--repin-keyring",
        action="store_true",
        help="pin this keyring instead of the pinned one (after a key rotation; it must "
        "still hold the keys the witnessed checkpoints were signed with)",
    )
    return a


def cmd_anchor(args: argparse.Namespace, progress: Callable[[str], None]) -> int:
    from ordinance.keys import Keyring
    from ordinance.processors.audit.witness import anchor
    from ordinance.processors.audit.witness_store import open_witness
    from ordinance.streams import open_existing_log

    keyring = Keyring.from_file(args.keyring)
    witness = open_witness(args.witness)
    with open_existing_log(args.log) as log:
        report = anchor(
            log,
            keyring,
            witness,
            prefix=args.prefix,
            repin=args.repin_keyring,
            log_name=args.log,
            progress=progress,
        )
    if args.json:
        emit_json(report.to_json())
        return EXIT_OK if report.ok else EXIT_FAILED
    out = console()
    if not report.ok:
        print_findings(report.verify.findings)
        out.print(
            f"refused: {len(report.verify.findings)} findings; nothing anchored to "
            f"{report.witness}",
            markup=False,
            soft_wrap=True,
        )
        return EXIT_FAILED
    if report.pinned:
        out.print(
            f"keyring {report.fingerprint} pinned in {report.witness}", markup=False, soft_wrap=True
        )
    if not report.anchored:
        out.print(
            f"nothing new to anchor: {report.witness} holds the newest checkpoint of every "
            f"partition ({report.witnessed_before} witnessed)",
            markup=False,
            soft_wrap=True,
        )
        return EXIT_OK
    newest: dict[int, dict[str, Any]] = {}
    for item in report.anchored:
        newest[item["partition"]] = item  # ascending by size within a partition
    for partition, item in sorted(newest.items()):
        out.print(
            f"partition {partition}: witnessed through {item['record_count']:,} records "
            f"(offset {item['last_offset']}, signed {item['signed_at']})",
            markup=False,
            soft_wrap=True,
        )
    out.print(
        f"anchored {len(report.anchored)} checkpoints to {report.witness} "
        f"({report.verify.records:,} records verified in {report.verify.seconds:.2f}s)",
        markup=False,
    )
    return EXIT_OK


def print_findings(findings: list[Finding]) -> None:
    out = console()
    for f in findings:
        if f.partition is None:
            where = "log"
        else:
            at = f"offset {f.offset}" if f.offset is not None else "checkpoint"
            where = f"partition {f.partition} {at}"
        extra = (
            f" (audit.checkpoints offset {f.checkpoint_offset})"
            if f.checkpoint_offset is not None
            else ""
        )
        out.print(f"FINDING {f.kind}: {where}{extra}: {f.detail}", markup=False, soft_wrap=True)
