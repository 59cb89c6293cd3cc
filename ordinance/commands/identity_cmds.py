"""``ordinance identity trust-init|add|update|suspend|reinstate|revoke|rotate-key|list|show``.

Every write reads ``identity.registry`` to its end first (`load_registry`), builds the next
version of the principal's record, signs it as ``--as`` with ``--key`` and judges it with
the very fold every reader runs (`fold_registry_record`) on a copy of the registry before
producing it: what the registry would refuse (a signer who is not an admin, a revoked
principal, a stale version) is refused here, at once, with its code, instead of becoming a
refused record the user never hears about. Readers still judge every record themselves;
this check only spares the log. Times come from `clock` (tests replace it).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from ordinance.commands.output import EXIT_FAILED, EXIT_OK, console, emit_json, report_failure
from ordinance.errors import OrdinanceError
from ordinance.streams.topics import DEFAULT_PREFIX

Command = Callable[[str, str], argparse.ArgumentParser]

#: Environment variable naming the trust file when ``--trust`` is not given.
TRUST_ENV = "ORDINANCE_TRUST"
KINDS = ("agent", "person", "service")

#: Seconds since the epoch; the time every write is signed at. Tests replace it.
clock: Callable[[], float] = time.time


class IdentityCommandError(OrdinanceError):
    """A command that cannot be carried out as asked (bad argument, unknown principal)."""


class LocalRefusal(OrdinanceError):
    """The registry would refuse the record this command was about to write."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"refused ({code}): {detail}")
        self.code = code
        self.detail = detail


# -- parser -------------------------------------------------------------------------------


def _json_option(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: `identity --json list` and `identity list --json` both work.
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )


def _read_options(p: argparse.ArgumentParser) -> None:
    _json_option(p)
    p.add_argument(
        "--log", required=True, metavar="URL", help="sqlite:///path.db or kafka://host:port"
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic name prefix")
    p.add_argument(
        "--trust",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"trust file of admin public keys (default: ${TRUST_ENV})",
    )


def _write_options(p: argparse.ArgumentParser) -> None:
    _read_options(p)
    p.add_argument(
        "--as", dest="signer", required=True, metavar="SIGNER", help="principal id of the signer"
    )
    p.add_argument(
        "--key",
        type=Path,
        default=None,
        metavar="PEM",
        help="the signer's Ed25519 private key (default: $ORDINANCE_KEY)",
    )
    p.add_argument("--reason", default=None, help="why, recorded with the change")


def _attribute_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--roles", default=None, metavar="A,B", help="roles, comma-separated")
    p.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="K=V",
        help="an attribute (repeatable); V is read as JSON when it parses (42, true, "
        '["a"], "007"), else as text',
    )
    p.add_argument("--owner", default=None, help="who answers for this principal")


def register(command: Command) -> None:
    p = command("identity", "the identity registry: principals, their roles and keys")
    sub = p.add_subparsers(dest="identity_command", required=True, metavar="SUBCOMMAND")

    t = sub.add_parser("trust-init", help="add an admin's public key to a trust file")
    _json_option(t)
    t.add_argument("--trust", required=True, type=Path, metavar="FILE", help="created if absent")
    t.add_argument("--principal", required=True, help="the admin's principal id")
    t.add_argument("--key", required=True, type=Path, metavar="PEM", help="the admin's key")

    a = sub.add_parser("add", help="register a new principal")
    a.add_argument("principal_id", metavar="ID")
    a.add_argument("--kind", choices=KINDS, required=True)
    _attribute_options(a)
    a.add_argument(
        "--public-key",
        required=True,
        type=Path,
        metavar="FILE",
        help="its key: a private or public PEM, an OpenSSH public key, or base64 raw bytes",
    )
    _write_options(a)

    u = sub.add_parser("update", help="change a principal's roles, attributes or owner")
    u.add_argument("principal_id", metavar="ID")
    _attribute_options(u)
    u.add_argument("--unset-attr", action="append", default=[], metavar="K")
    _write_options(u)

    for name, help_text in (
        ("suspend", "suspend a principal: its keys speak for nobody until reinstated"),
        ("reinstate", "make a suspended principal active again"),
        ("revoke", "revoke a principal, for good"),
    ):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("principal_id", metavar="ID")
        _write_options(s)

    r = sub.add_parser(
        "rotate-key", help="give a principal a new key; old keys end after --overlap"
    )
    r.add_argument("principal_id", metavar="ID")
    r.add_argument("--public-key", required=True, type=Path, metavar="FILE")
    r.add_argument(
        "--overlap",
        default="1h",
        metavar="DURATION",
        help="how long the old keys stay valid (30s, 10m, 1h, 2d, or 0; default 1h)",
    )
    _write_options(r)

    ls = sub.add_parser("list", help="every principal, and every refused registry record")
    _read_options(ls)
    sh = sub.add_parser("show", help="one principal: keys, history, refused records")
    sh.add_argument("principal_id", metavar="ID")
    _read_options(sh)


# -- dispatch -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int | None:
    if args.command != "identity":
        return None
    from ordinance.streams.errors import LogError

    args.json = getattr(args, "json", False)
    try:
        if args.identity_command == "trust-init":
            return _trust_init(args)
        if args.identity_command in ("list", "show"):
            from ordinance.commands.identity_report import read_registry

            return read_registry(args, _trust(args.trust))
        return _write(args)
    except LocalRefusal as exc:
        if args.json:
            emit_json({"ok": False, "refused": True, "code": exc.code, "error": exc.detail})
            return EXIT_FAILED
        return report_failure(str(exc), False, EXIT_FAILED)
    except (OrdinanceError, LogError, OSError) as exc:
        return report_failure(str(exc), args.json)


def _now() -> dt.datetime:
    return dt.datetime.fromtimestamp(clock(), dt.UTC)


def _trust(path: Path | None) -> Any:
    from ordinance.identity.trust import TrustRoot

    if path is None:
        named = os.environ.get(TRUST_ENV)
        if not named:
            raise IdentityCommandError(
                f"name the trust file (--trust FILE or ${TRUST_ENV}): without it no registry "
                "record can be believed"
            )
        path = Path(named)
    return TrustRoot.from_file(path)


def _trust_init(args: argparse.Namespace) -> int:
    from ordinance.identity.trust import add_admin

    key_id = add_admin(args.trust, args.principal, args.key)
    if args.json:
        emit_json(
            {"ok": True, "trust": str(args.trust), "principal_id": args.principal, "key_id": key_id}
        )
    else:
        console().print(f"admin {args.principal} (key {key_id}) trusted in {args.trust}")
    return EXIT_OK


# -- arguments ----------------------------------------------------------------------------


def _signer(args: argparse.Namespace) -> Any:
    from ordinance.identity.signing import KEY_ENV, PrincipalSigner

    if args.key is not None:
        return PrincipalSigner.from_file(args.signer, args.key)
    signer = PrincipalSigner.from_env(args.signer)
    if signer is None:
        raise IdentityCommandError(f"name the signer's key (--key PEM or ${KEY_ENV})")
    return signer


def public_key_from_file(path: Path) -> Any:
    """An Ed25519 public key from a private PEM, a public PEM, an OpenSSH public key line,
    or the base64 of the raw 32 bytes (as trust files and keyrings hold it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityCommandError(f"{path}: cannot read ({exc})") from exc
    key: Any = None
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            key = private.public_key() if isinstance(private, Ed25519PrivateKey) else private
        elif b"PUBLIC KEY" in data:
            key = serialization.load_pem_public_key(data)
        elif data.lstrip().startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data.strip())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise IdentityCommandError(f"{path}: not a readable Ed25519 key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise IdentityCommandError(f"{path}: not an Ed25519 key")
    return key


def _roles(text: str) -> list[str]:
    return [role.strip() for role in text.split(",") if role.strip()]


def _attribute(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise IdentityCommandError(f"--attr wants K=V, not {text!r}")
    try:
        # Decimals, not floats: attribute numbers are exact on the wire.
        value: Any = json.loads(raw, parse_float=Decimal)
    except ValueError:
        value = raw
    return name.strip(), value


def _overlap(text: str) -> dt.timedelta:
    from ordinance.policy.typecheck import parse_duration

    if text.strip() in ("0", "0s"):
        return dt.timedelta(0)
    seconds = parse_duration(text.strip())
    if seconds is None:
        raise IdentityCommandError(f"--overlap wants a duration such as 30s, 10m, 1h, 2d: {text!r}")
    return dt.timedelta(seconds=seconds)


# -- writes -------------------------------------------------------------------------------


def _wire_keys(principal: Any) -> list[dict[str, Any]]:
    from ordinance.identity.records import key_entry

    return [key_entry(k.public, k.not_before, k.not_after) for k in principal.keys]


def _next_datum(args: argparse.Namespace, view: Any, now: dt.datetime) -> dict[str, Any]:
    """The next version of the principal's record, as this command changes it."""
    from ordinance.identity.records import identity_datum, key_entry
    from ordinance.identity.registry import UNKNOWN_PRINCIPAL
    from ordinance.identity.registry_log import next_version

    pid = args.principal_id
    current = view.get(pid)
    version = next_version(view, pid)
    if args.identity_command == "add":
        if current is not None:
            raise IdentityCommandError(
                f"{pid} is already registered (version {current.version}, {current.status}); "
                "use identity update"
            )
        return identity_datum(
            pid,
            kind=args.kind,
            version=version,
            at=now,
            keys=[key_entry(public_key_from_file(args.public_key), now)],
            roles=_roles(args.roles or ""),
            attributes=dict(_attribute(a) for a in args.attr),
            owner=args.owner,
            reason=args.reason,
        )
    if current is None:
        raise LocalRefusal(UNKNOWN_PRINCIPAL, f"{pid!r} is not in the identity registry")
    fields: dict[str, Any] = {
        "kind": current.kind,
        "version": version,
        "at": now,
        "keys": _wire_keys(current),
        "roles": list(current.roles),
        "attributes": dict(current.attributes),
        "owner": current.owner,
        "status": current.status,
        "reason": args.reason,
    }
    command = args.identity_command
    if command == "update":
        if args.roles is not None:
            fields["roles"] = _roles(args.roles)
        fields["attributes"].update(dict(_attribute(a) for a in args.attr))
        for name in args.unset_attr:
            fields["attributes"].pop(name, None)
        if args.owner is not None:
            fields["owner"] = args.owner
    elif command in ("suspend", "reinstate", "revoke"):
        fields["status"] = {"suspend": "suspended", "reinstate": "active", "revoke": "revoked"}[
            command
        ]
    elif command == "rotate-key":
        fields["keys"] = _rotated(current, public_key_from_file(args.public_key), now, args)
    return identity_datum(pid, **fields)


def _rotated(current: Any, new: Any, now: dt.datetime, args: argparse.Namespace) -> list[Any]:
    """The old keys end at now + overlap (or earlier, if they already did); keys already
    expired are dropped; the new key is valid from now."""
    from ordinance.identity.records import key_entry
    from ordinance.keys import key_id_of

    if current.key(key_id_of(new)) is not None:
        raise IdentityCommandError(f"key {key_id_of(new)} is already a key of {current.id}")
    end = now + _overlap(args.overlap)
    keys = []
    for k in current.keys:
        not_after = end if k.not_after is None else min(k.not_after, end)
        if not_after > now:
            keys.append(key_entry(k.public, k.not_before, not_after))
    keys.append(key_entry(new, now))
    return keys


def _judge(view: Any, record: Any, topic: str) -> Any:
    """What a reader will make of ``record``: the fold's own step, on a copy of the
    registry so nothing is installed before the log has the record."""
    from ordinance.identity.registry import Refusal, Registry
    from ordinance.identity.registry_log import fold_registry_record
    from ordinance.streams.log import ConsumedRecord
    from ordinance.streams.serde import Serde

    trial = Registry(view.registry.trust, dict(view.registry.principals))
    consumed = ConsumedRecord(
        topic, 0, view.end_offset, record.key, record.value, record.headers, record.event_time_ms
    )
    result = fold_registry_record(trial, Serde(), consumed)
    if isinstance(result, Refusal):
        raise LocalRefusal(result.code, result.detail)
    return result


def _write(args: argparse.Namespace) -> int:
    from ordinance.identity.records import signed_identity_record
    from ordinance.identity.registry_log import load_registry
    from ordinance.streams import open_log
    from ordinance.streams.serde import Serde
    from ordinance.streams.topics import IDENTITY_REGISTRY, ensure_topics

    trust = _trust(args.trust)
    signer = _signer(args)
    now = _now()
    with open_log(args.log) as log:
        topic = ensure_topics(log, args.prefix)[IDENTITY_REGISTRY].name
        view = load_registry(log, trust, args.prefix)
        record = signed_identity_record(Serde(), _next_datum(args, view, now), signer)
        principal = _judge(view, record, topic)
        delivered = log.produce(topic, [record])[0]
    data = {
        "ok": True,
        "principal": principal.to_json(),
        "offset": delivered.offset,
        "signer": signer.principal_id,
        "key_id": signer.key_id,
    }
    if args.json:
        emit_json(data)
    else:
        console().print(
            f"{args.identity_command}: {principal.id} version {principal.version} "
            f"({principal.status}) at offset {delivered.offset}, signed by "
            f"{signer.principal_id} with key {signer.key_id}",
            markup=False,
        )
    return EXIT_OK
