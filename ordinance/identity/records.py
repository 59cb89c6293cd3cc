"""Building and writing signed identity records (``identity.registry``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ordinance.identity.signing import PrincipalSigner
from ordinance.keys import key_id_of
from ordinance.streams.log import Record
from ordinance.streams.serde import Serde

IDENTITY_RECORD = "IdentityRecord"


def key_entry(
    public: Ed25519PublicKey, not_before: dt.datetime, not_after: dt.datetime | None = None
) -> dict[str, Any]:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "key_id": key_id_of(public),
        "public_key": raw,
        "not_before": not_before,
        "not_after": not_after,
    }


def identity_datum(
    principal_id: str,
    *,
    kind: str,
    version: int,
    at: dt.datetime,
    keys: Iterable[Mapping[str, Any]] = (),
    roles: Iterable[str] = (),
    attributes: Mapping[str, Any] | None = None,
    owner: str | None = None,
    status: str = "active",
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "principal_id": principal_id,
        "kind": kind,
        "roles": list(roles),
        "attributes": dict(attributes or {}),
        "owner": owner,
        "status": status,
        "keys": [dict(k) for k in keys],
        "version": version,
        "at": at,
        "reason": reason,
    }


def signed_identity_record(
    serde: Serde, datum: Mapping[str, Any], signer: PrincipalSigner
) -> Record:
    """The record to produce on ``identity.registry``: keyed by principal id, signed."""
    value = serde.encode(IDENTITY_RECORD, datum)
    at: dt.datetime = datum["at"]
    return Record(
        str(datum["principal_id"]).encode(),
        value,
        signer.headers(value),
        int(at.timestamp() * 1000),
    )
