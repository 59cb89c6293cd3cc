"""The identity registry as a fold: who each principal is, which keys speak for it, and
whether a signed record really comes from whom it names.

`Registry.apply` takes one signed ``IdentityRecord`` and either installs it or says why
not; it reads no clock (the caller passes the time the change is judged at) and no log,
so an enforcer folding ``IdentityUpdate`` records and a replay of the same records reach
the same registry. `Registry.authenticate` is the one check every signed record goes
through: intents, approvals, policy changes and registry changes alike.

Rules (docs/identity.md):

* a registry change is signed by a trust-root admin or by an active registry principal
  holding the ``admin`` role, with a key valid when the change is judged;
* versions strictly increase per principal, so an old signed record replayed later is
  refused; ``revoked`` is final;
* a key speaks for its principal only while the principal is active and the key's
  validity window (``not_before`` <= t < ``not_after``) holds at the judging time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ordinance.identity.signing import Signature, signature_valid
from ordinance.identity.trust import TrustRoot
from ordinance.keys import key_id_of

ADMIN_ROLE = "admin"

# Why a signed record is not believed: machine-readable codes, also the deny codes.
UNSIGNED = "unsigned"  # no signature at all
BAD_SIGNATURE = "bad_signature"  # malformed, or does not verify with the named key
UNKNOWN_PRINCIPAL = "unknown_principal"  # the signer is not in the registry
PRINCIPAL_SUSPENDED = "principal_suspended"
PRINCIPAL_REVOKED = "principal_revoked"
KEY_NOT_VALID = "key_not_valid"  # the key is not the principal's, or outside its window
IDENTITY_MISMATCH = "identity_mismatch"  # signed by someone other than the record names
NOT_AUTHORISED = "not_authorised"  # the signer's roles do not allow the act
STALE_VERSION = "stale_version"  # a registry record not newer than the one in force
INVALID_RECORD = "invalid_record"  # a registry record that cannot be installed


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class PrincipalKey:
    key_id: str
    public: Ed25519PublicKey
    not_before: dt.datetime
    not_after: dt.datetime | None

    def valid_at(self, at: dt.datetime) -> bool:
        return self.not_before <= at and (self.not_after is None or at < self.not_after)


@dataclass(frozen=True)
class Principal:
    id: str
    kind: str
    roles: tuple[str, ...]
    attributes: Mapping[str, Any]
    owner: str | None
    status: str
    keys: tuple[PrincipalKey, ...]
    version: int
    at: dt.datetime

    def key(self, key_id: str) -> PrincipalKey | None:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def to_json(self) -> dict[str, Any]:
        return {
            "principal_id": self.id,
            "kind": self.kind,
            "roles": list(self.roles),
            "attributes": dict(self.attributes),
            "owner": self.owner,
            "status": self.status,
            "keys": [
                {
                    "key_id": k.key_id,
                    "not_before": k.not_before.isoformat(),
                    "not_after": k.not_after.isoformat() if k.not_after else None,
                }
                for k in self.keys
            ],
            "version": self.version,
            "at": self.at.isoformat(),
        }


def principal_from_datum(datum: Mapping[str, Any]) -> Principal:
    """A decoded ``IdentityRecord`` as a Principal; raises ValueError when a key is not
    an Ed25519 key or its id is not the id of its key."""
    keys = []
    for entry in datum["keys"]:
        public = Ed25519PublicKey.from_public_bytes(entry["public_key"])
        if key_id_of(public) != entry["key_id"]:
            raise ValueError(f"key id {entry['key_id']} is not the id of its key")
        keys.append(PrincipalKey(entry["key_id"], public, entry["not_before"], entry["not_after"]))
    status = datum["status"] if datum["status"] in ("active", "suspended") else "revoked"
    return Principal(
        id=datum["principal_id"],
        kind=datum["kind"],
        roles=tuple(datum["roles"]),
        attributes=dict(datum["attributes"]),
        owner=datum.get("owner"),
        status=status,
        keys=tuple(keys),
        version=datum["version"],
        at=datum["at"],
    )


@dataclass
class Registry:
    trust: TrustRoot
    principals: dict[str, Principal] = field(default_factory=dict)

    def get(self, principal_id: str) -> Principal | None:
        return self.principals.get(principal_id)

    def authenticate(
        self,
        signature: Signature | None,
        value: bytes,
        at: dt.datetime,
        *,
        verify: Callable[[Ed25519PublicKey, bytes, bytes], bool] = signature_valid,
    ) -> Principal | Refusal:
        """The active registry principal whose valid key signed ``value``, or why not.
        ``verify``: how the signature is checked (another context: a signed HTTP body)."""
        if signature is None:
            return Refusal(UNSIGNED, "the record carries no signature")
        principal = self.principals.get(signature.signer_id)
        if principal is None:
            return Refusal(
                UNKNOWN_PRINCIPAL, f"{signature.signer_id!r} is not in the identity registry"
            )
        if principal.status == "suspended":
            return Refusal(PRINCIPAL_SUSPENDED, f"{principal.id} is suspended")
        if principal.status != "active":
            return Refusal(PRINCIPAL_REVOKED, f"{principal.id} is revoked")
        key = principal.key(signature.key_id)
        if key is None:
            return Refusal(KEY_NOT_VALID, f"key {signature.key_id} is not a key of {principal.id}")
        if not key.valid_at(at):
            return Refusal(
                KEY_NOT_VALID,
                f"key {key.key_id} of {principal.id} is not valid at {at.isoformat()}",
            )
        if not verify(key.public, value, signature.signature):
            return Refusal(BAD_SIGNATURE, f"the signature does not verify with key {key.key_id}")
        return principal

    def _admin(self, signature: Signature | None, value: bytes, at: dt.datetime) -> Refusal | None:
        """None when a trust-root admin or a registry admin signed ``value``."""
        if signature is None:
            return Refusal(UNSIGNED, "a registry change must be signed by an admin")
        root = self.trust.key(signature.signer_id, signature.key_id)
        if root is not None:
            if signature_valid(root.public, value, signature.signature):
                return None
            return Refusal(BAD_SIGNATURE, "the signature does not verify with the trust-root key")
        signer = self.authenticate(signature, value, at)
        if isinstance(signer, Refusal):
            return signer
        if not signer.has_role(ADMIN_ROLE):
            return Refusal(NOT_AUTHORISED, f"{signer.id} lacks the {ADMIN_ROLE} role")
        return None

    def apply(
        self,
        value: bytes,
        signature: Signature | None,
        datum: Mapping[str, Any],
        at: dt.datetime,
    ) -> Principal | Refusal:
        """Install one signed IdentityRecord judged at ``at``; the registry is unchanged
        when it is refused."""
        refused = self._admin(signature, value, at)
        if refused is not None:
            return refused
        try:
            principal = principal_from_datum(datum)
        except (ValueError, KeyError, TypeError) as exc:
            return Refusal(INVALID_RECORD, str(exc))
        current = self.principals.get(principal.id)
        if current is not None:
            if principal.version <= current.version:
                return Refusal(
                    STALE_VERSION,
                    f"version {principal.version} of {principal.id} is not newer than "
                    f"{current.version}",
                )
            if current.status == "revoked":
                return Refusal(INVALID_RECORD, f"{principal.id} is revoked; revocation is final")
        self.principals[principal.id] = principal
        return principal
