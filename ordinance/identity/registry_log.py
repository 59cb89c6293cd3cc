"""Reading ``identity.registry`` into a registry: every record folded in offset order.

`fold_registry_record` is the one per-record step (decode, read the signature headers,
`Registry.apply` judged at the record's own signed ``at``): the commands, the enforcer and
replay all fold the topic with it, so they agree on which records were installed and
which were refused and why. Nothing a record holds can raise out of it: a record that is
not a well-formed, signed ``IdentityRecord`` is a `Refusal` like any other, because
anyone with write access to the topic can append anything (docs/identity.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ordinance.identity.records import IDENTITY_RECORD
from ordinance.identity.registry import (
    BAD_SIGNATURE,
    INVALID_RECORD,
    Principal,
    Refusal,
    Registry,
)
from ordinance.identity.signing import SignatureError, signature_of
from ordinance.identity.trust import TrustRoot
from ordinance.streams.log import ConsumedRecord, Log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import DEFAULT_PREFIX, IDENTITY_REGISTRY

#: A record on ``identity.registry`` that is not a decodable ``IdentityRecord``.
UNDECODABLE = "undecodable"


@dataclass(frozen=True, slots=True)
class RegistryRefusal:
    """A record on the topic that the fold did not install, and why."""

    offset: int
    principal_id: str | None  # the record's key (the datum's id when it decodes)
    code: str
    detail: str
    signer: str | None  # who the headers say signed it (not proven: it was refused)

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "principal_id": self.principal_id,
            "code": self.code,
            "detail": self.detail,
            "signer": self.signer,
        }


@dataclass(frozen=True, slots=True)
class RegistryChange:
    """A record the fold installed: which version took effect at which offset, signed by
    whom with which key."""

    offset: int
    principal_id: str
    version: int
    status: str
    at: dt.datetime
    signer: str
    key_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "principal_id": self.principal_id,
            "version": self.version,
            "status": self.status,
            "at": self.at.isoformat(),
            "signer": self.signer,
            "key_id": self.key_id,
        }


@dataclass
class RegistryView:
    """The registry as of the end of the topic, with its installed history and refusals."""

    registry: Registry
    changes: list[RegistryChange] = field(default_factory=list)
    refusals: list[RegistryRefusal] = field(default_factory=list)
    end_offset: int = 0  # one past the last record folded

    @property
    def principals(self) -> dict[str, Principal]:
        return self.registry.principals

    def get(self, principal_id: str) -> Principal | None:
        return self.registry.get(principal_id)


def _key_text(record: ConsumedRecord) -> str | None:
    return None if record.key is None else record.key.decode(errors="replace")


def fold_registry_record(
    registry: Registry, serde: Serde, record: ConsumedRecord, at: dt.datetime | None = None
) -> Principal | Refusal:
    """Install one ``identity.registry`` record into ``registry`` or say why not; never
    raises for anything the record holds. The change is judged at the record's own signed
    ``at`` (so a replay judges it the same) unless the caller passes the time it judges
    at (the enforcer: its own clock, recorded in the ``IdentityUpdate`` it writes), and it
    must be keyed by the principal it describes: on a compacted topic the key decides
    which record survives."""
    if record.value is None:
        return Refusal(UNDECODABLE, "no value (a tombstone)")
    decoded = serde.decode_record(record, expect={IDENTITY_RECORD})
    if not isinstance(decoded, Decoded):
        return Refusal(UNDECODABLE, f"{decoded.problem.value}: {decoded.detail}")
    try:
        signature = signature_of(record.headers)
    except SignatureError as exc:
        return Refusal(BAD_SIGNATURE, str(exc))
    datum = decoded.value
    if _key_text(record) != datum["principal_id"]:
        return Refusal(
            INVALID_RECORD,
            f"record key {_key_text(record)!r} is not its principal {datum['principal_id']!r}",
        )
    return registry.apply(
        bytes(record.value), signature, datum, at=datum["at"] if at is None else at
    )


def _claimed_signer(record: ConsumedRecord) -> str | None:
    try:
        signature = signature_of(record.headers)
    except SignatureError:
        return None
    return None if signature is None else signature.signer_id


def fold_registry_records(trust: TrustRoot, records: Iterable[ConsumedRecord]) -> RegistryView:
    """Fold records (one partition, in offset order) from an empty registry."""
    serde = Serde()
    view = RegistryView(Registry(trust))
    for record in records:
        view.end_offset = record.offset + 1
        result = fold_registry_record(view.registry, serde, record)
        if isinstance(result, Refusal):
            view.refusals.append(
                RegistryRefusal(
                    record.offset,
                    _key_text(record),
                    result.code,
                    result.detail,
                    _claimed_signer(record),
                )
            )
            continue
        signature = signature_of(record.headers)
        assert signature is not None  # installed records are signed
        view.changes.append(
            RegistryChange(
                record.offset,
                result.id,
                result.version,
                result.status,
                result.at,
                signature.signer_id,
                signature.key_id,
            )
        )
    return view


def load_registry(log: Log, trust: TrustRoot, prefix: str = DEFAULT_PREFIX) -> RegistryView:
    """``identity.registry`` read to its end and folded. The topic must exist
    (`ensure_topics`); raises `LogError` only for the log itself, never for a record."""
    return fold_registry_records(trust, log.read_to_end(prefix + IDENTITY_REGISTRY))


def next_version(view: RegistryView, principal_id: str) -> int:
    """The version a new record for ``principal_id`` must carry: one past the installed
    one. Refused records do not count: a forged version 10**9 must not push honest
    admins' versions up (it was never in force)."""
    current = view.get(principal_id)
    return 1 if current is None else current.version + 1
