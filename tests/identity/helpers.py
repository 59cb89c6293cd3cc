"""Keys, a trust root and signed registry records for identity tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ordinance.identity.records import identity_datum, key_entry
from ordinance.identity.registry import Registry
from ordinance.identity.signing import PrincipalSigner, signature_of
from ordinance.identity.trust import TrustedKey, TrustRoot
from ordinance.keys import Signer, key_id_of
from ordinance.streams.serde import Serde

T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
SERDE = Serde()


def new_signer(principal_id: str) -> PrincipalSigner:
    key = Ed25519PrivateKey.generate()
    return PrincipalSigner(principal_id, Signer(key, key_id_of(key.public_key())))


@dataclass
class World:
    """A trust root with one admin, and a registry folded from records it signs."""

    root: PrincipalSigner = field(default_factory=lambda: new_signer("root-admin"))
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def trust(self) -> TrustRoot:
        public = self.root.signer.key.public_key()
        return TrustRoot((TrustedKey("root-admin", self.root.key_id, public),))

    def registry(self) -> Registry:
        return Registry(self.trust)

    def record(
        self,
        principal_id: str,
        signers: list[PrincipalSigner],
        *,
        kind: str = "agent",
        at: dt.datetime = T0,
        not_after: dt.datetime | None = None,
        version: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        if version is None:
            version = self.versions.get(principal_id, 0) + 1
        self.versions[principal_id] = version
        keys = [key_entry(s.signer.key.public_key(), at, not_after) for s in signers]
        return identity_datum(principal_id, kind=kind, version=version, at=at, keys=keys, **fields)

    def sign(
        self, datum: dict[str, Any], by: PrincipalSigner | None = None
    ) -> tuple[bytes, Any, dict[str, Any]]:
        """(value, signature, decoded datum) as `Registry.apply` takes them."""
        value = SERDE.encode("IdentityRecord", datum)
        signature = signature_of((by or self.root).headers(value))
        decoded = SERDE.decode(value)
        return value, signature, decoded.value  # type: ignore[union-attr]
