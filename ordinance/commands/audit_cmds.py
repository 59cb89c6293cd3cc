"""``ordinance keys generate`` and ``ordinance audit checkpoint|verify|prove|check-proof``
(plus ``audit index|query`` from `audit_query_cmds`, ``audit anchor`` and the witness
options of ``audit verify`` from `audit_witness_cmds`)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from ordinance.commands import audit_query_cmds, audit_witness_cmds
from ordinance.commands.output import EXIT_FAILED, EXIT_OK, console, emit_json, report_failure
from ordinance.errors import OrdinanceError
from ordinance.streams.errors import LogError
from ordinance.streams.topics import DEFAULT_PREFIX

Command = Callable[[str, str], argparse.ArgumentParser]


def register(command: Command) -> None:
    p = command("keys", "Ed25519 keys: audit checkpoints, agents, publishers, approvers, admins")
    keys = p.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    g = keys.add_parser(
        "generate", help="a new Ed25519 signing key (added to a keyring for audit keys)"
    )
    g.add_argument("--key", required=True, type=Path, help="private key file to create (0600)")
    # A principal's public key goes into the identity registry (`identity add`), not a keyring.
    g.add_argument(
        "--keyring", type=Path, default=None, help="keyring JSON to add it to (audit keys)"
    )
    m = keys.add_parser("mask-key", help="a new random key for masking tool arguments")
    m.add_argument("--out", required=True, type=Path, help="key file to create (0600)")

    p = command("audit", "the audit trail: checkpoints, verification, proofs, index and query")
    sub = p.add_subparsers(dest="audit_command", required=True, metavar="AUDIT_COMMAND")
    c = sub.add_parser("checkpoint", help="sign Merkle checkpoints of agent.decisions")
    _log_options(c)
    c.add_argument("--key", required=True, type=Path, help="Ed25519 private key file")
    c.add_argument("--every-records", type=int, default=1000)
    c.add_argument("--every-seconds", type=float, default=10.0)
    c.add_argument("--follow", action="store_true", help="keep following until SIGTERM")
    v = sub.add_parser("verify", help="recompute chains and Merkle roots, check signatures")
    _log_options(v)
    v.add_argument("--keyring", required=True, type=Path)
    v.add_argument("--partition", type=int, action="append", help="only these (repeatable)")
    v.add_argument("--from", dest="from_offset", type=int, help="report findings from this offset")
    v.add_argument("--to", dest="to_offset", type=int, help="report findings up to this offset")
    audit_witness_cmds.add_verify_options(v)
    a = audit_witness_cmds.add_anchor_command(sub, _log_options)
    r = sub.add_parser("prove", help="an inclusion proof of one decision (JSON)")
    r.add_argument("request_id")
    _log_options(r)
    r.add_argument("--out", type=Path, help="write the proof here instead of stdout")
    k = sub.add_parser("check-proof", help="verify an inclusion proof offline")
    k.add_argument("proof", type=Path, help="proof JSON file, or - for stdin")
    k.add_argument("--keyring", required=True, type=Path)
    mv = sub.add_parser(
        "mask-value", help="the masked form of a value, to look for it in masked decisions"
    )
    mv.add_argument("value", help="the clear value as text (numbers in canonical form)")
    mv.add_argument("--mask-config", required=True, type=Path)
    for sub_parser in (g, m, c, v, a, r, k, mv):
        _json_option(sub_parser)
    audit_query_cmds.add_query_commands(sub)


def _json_option(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: `audit --json verify` and `audit verify --json` both work (a False default
    # on the sub-parser would overwrite the parent's True).
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )


def _log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://host:port"
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic name prefix")


def run(args: argparse.Namespace) -> int | None:
    if args.command == "keys":
        if args.keys_command == "mask-key":
            return _guarded(args.json, lambda: cmd_mask_key(args.out, args.json))
        return _guarded(args.json, lambda: cmd_keys_generate(args.key, args.keyring, args.json))
    if args.command != "audit":
        return None
    code = audit_query_cmds.run_query_command(args)
    if code is not None:
        return code
    handlers: dict[str, Callable[[], int]] = {
        "checkpoint": lambda: cmd_checkpoint(args),
        "verify": lambda: cmd_verify(args),
        "anchor": lambda: audit_witness_cmds.cmd_anchor(args, _stderr_progress()),
        "prove": lambda: cmd_prove(args),
        "check-proof": lambda: cmd_check_proof(args.proof, args.keyring, args.json),
        "mask-value": lambda: cmd_mask_value(args.value, args.mask_config, args.json),
    }
    return _guarded(args.json, handlers[args.audit_command])


def _guarded(as_json: bool, work: Callable[[], int]) -> int:
    try:
        return work()
    except (OrdinanceError, LogError, OSError) as exc:
        return report_failure(str(exc), as_json)


def _stderr_progress() -> Callable[[str], None]:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    return lambda message: err.print(f"[dim]{message}[/]")


def cmd_keys_generate(key: Path, keyring: Path | None, as_json: bool) -> int:
    from ordinance.keys import generate

    key_id = generate(key, keyring)
    if as_json:
        emit_json(
            {
                "ok": True,
                "key_id": key_id,
                "key": str(key),
                "keyring": None if keyring is None else str(keyring),
            }
        )
    elif keyring is None:
        console().print(f"key {key_id}: private key {key}")
    else:
        console().print(f"key {key_id}: private key {key}, public key added to {keyring}")
    return EXIT_OK


def cmd_mask_key(out: Path, as_json: bool) -> int:
    from ordinance.processors.masking import generate_key

    generate_key(out)
    if as_json:
        emit_json({"ok": True, "key": str(out)})
    else:
        console().print(f"mask key written to {out}; name it as key_file in a masking file")
    return EXIT_OK


def cmd_mask_value(value: str, config: Path, as_json: bool) -> int:
    from ordinance.processors.masking import Masking

    masked = Masking.from_file(config).mask(value)
    if as_json:
        emit_json({"ok": True, "masked": masked})
    else:
        console().print(masked, markup=False)
    return EXIT_OK


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from ordinance.keys import Signer
    from ordinance.processors.audit.checkpointer import Checkpointer
    from ordinance.streams import open_existing_log

    stop = threading.Event()
    if args.follow:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open_existing_log(args.log) as log:
        checkpointer = Checkpointer(
            log,
            Signer.from_file(args.key),
            prefix=args.prefix,
            every_records=args.every_records,
            every_seconds=args.every_seconds,
            progress=_stderr_progress(),
        )
        try:
            report = checkpointer.run(stop=stop, until_idle=not args.follow)
        except KeyboardInterrupt:
            report = checkpointer.report
    result = {"ok": not report.alerts, **vars(report)}
    if args.json:
        emit_json(result)
    else:
        console().print(
            f"{report.records:,} records hashed, {report.checkpoints} checkpoints signed"
            + "".join(f"\nALERT {a}" for a in report.alerts)
        )
    return EXIT_OK if not report.alerts else EXIT_FAILED


def cmd_verify(args: argparse.Namespace) -> int:
    from ordinance.keys import Keyring
    from ordinance.processors.audit.witness import load, verify_witnessed
    from ordinance.processors.audit.witness_store import WitnessError, open_witness
    from ordinance.streams import open_existing_log

    keyring = Keyring.from_file(args.keyring)
    witness = None
    if args.witness is not None:
        witness = load(open_witness(args.witness))
        if not witness.count:
            # Verifying against nothing would pass silently: a misnamed witness is an error.
            raise WitnessError(f"{witness.source} holds no checkpoints: run audit anchor first")
    with open_existing_log(args.log) as log:
        report = verify_witnessed(
            log,
            keyring,
            witness=witness,
            tail=args.max_unsigned_tail,
            prefix=args.prefix,
            partitions=args.partition,
            offsets=(args.from_offset, args.to_offset),
            progress=_stderr_progress(),
        )
    result = report.to_json()
    if witness is not None:
        result["witness"] = {
            "source": witness.source,
            "checkpoints": witness.count,
            "pinned_fingerprint": witness.fingerprint,
            "keyring_fingerprint": keyring.fingerprint(),
        }
    if args.max_unsigned_tail is not None:
        result["max_unsigned_tail"] = args.max_unsigned_tail.text
    if args.json:
        emit_json(result)
    else:
        out = console()
        for p in report.partitions:
            span = f"offsets {p.first_offset}..{p.last_offset}" if p.records else "empty"
            witnessed = "" if p.witnessed is None else f", {p.witnessed:,} witnessed"
            out.print(
                f"partition {p.partition}: {p.records:,} records ({span}), "
                f"{p.checkpoints} signed checkpoints checked, {p.covered:,} records under "
                f"signature{witnessed}"
            )
        audit_witness_cmds.print_findings(report.findings)
        verdict = "clean" if not report.findings else f"{len(report.findings)} findings"
        out.print(
            f"{report.records:,} records in {report.seconds:.2f}s ({result['records_per_second'] or 0:,}/s): {verdict}"
        )
    return EXIT_OK if not report.findings else EXIT_FAILED


def cmd_prove(args: argparse.Namespace) -> int:
    from ordinance.jsonutil import pretty_json
    from ordinance.processors.audit.proofs import prove_request
    from ordinance.streams import open_existing_log

    with open_existing_log(args.log) as log:
        proof = prove_request(log, args.request_id, prefix=args.prefix)
    text = pretty_json(proof) + "\n"
    if args.out is not None:
        args.out.write_text(text)
        if not args.json:
            console().print(f"proof of {args.request_id} written to {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_check_proof(path: Path, keyring_path: Path, as_json: bool) -> int:
    from ordinance.keys import Keyring
    from ordinance.processors.audit.proofs import ProofError, check_proof, proven_decision

    raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    try:
        proof: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise OrdinanceError(f"{path}: not JSON ({exc})") from exc
    problems = check_proof(proof, Keyring.from_file(keyring_path))
    # What is reported as proven is always the decoding of the proven bytes, never the
    # proof's readable copy (which check_proof has compared with them).
    proven = None
    # Bytes this release cannot decode are still proven; then only "record" is named.
    with contextlib.suppress(ProofError):
        proven = None if problems else proven_decision(proof)
    if as_json:
        emit_json({"ok": not problems, "problems": problems, "proven": proven})
    elif problems:
        for problem in problems:
            console().print(f"INVALID: {problem}", markup=False)
    else:
        what = (
            f"decision {proven['request_id']}: {proven['effect']}"
            if proven is not None and "effect" in proven and "request_id" in proven
            else "record"
        )
        console().print(
            f"valid: {what} at partition {proof['partition']} offset {proof['offset']} is "
            f"leaf {proof['leaf_index']} of a tree of {proof['tree_size']} signed by key "
            f"{proof['checkpoint']['key_id']}",
            markup=False,
        )
    return EXIT_OK if not problems else EXIT_FAILED
