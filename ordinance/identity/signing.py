"""Signed records: who wrote a record, proven over the exact bytes on the log.

A signature travels in three record headers beside the value it signs, the same on the
embedded log and on Kafka:

* ``ordinance-signer``: the principal id of the signer (UTF-8);
* ``ordinance-sig-key``: the key id (16 hex digits, see `key_id_of`);
* ``ordinance-sig``: 64 bytes of Ed25519 over ``SIGNING_CONTEXT + value``.

Signing the value bytes as stored — not a re-encoding of the decoded datum — means a
reader of any schema version checks exactly what was written, and nothing in the value
(request id, event time, content, approver, actor) can change without breaking the
signature. The context prefix keeps a signature over an Ordinance record from being
valid for anything else the same key might sign (audit checkpoints have their own).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_sign_BYTES as SIGNATURE_BYTES
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from ordinance.errors import OrdinanceError
from ordinance.keys import KeyFileError, Signer
from ordinance.streams.log import Headers

SIGNING_CONTEXT = b"ordinance-signed-record-v1\x00"
SIGNER_HEADER = "ordinance-signer"
KEY_HEADER = "ordinance-sig-key"
SIGNATURE_HEADER = "ordinance-sig"
SIGNATURE_HEADERS = frozenset({SIGNER_HEADER, KEY_HEADER, SIGNATURE_HEADER})
#: Environment variable naming a principal's private key file (``Client``, ``@guard``).
KEY_ENV = "ORDINANCE_KEY"
#: Environment variable naming an agent's private key file (``Client``, ``@guard``,
#: ``submit``): apart from ``ORDINANCE_KEY`` so an admin's shell never signs intents.
AGENT_KEY_ENV = "ORDINANCE_AGENT_KEY"


class SignatureError(OrdinanceError):
    """Signature headers that are present but malformed (not merely a bad signature)."""


@dataclass(frozen=True, slots=True)
class Signature:
    signer_id: str
    key_id: str
    signature: bytes


@dataclass(frozen=True)
class PrincipalSigner:
    """A principal's private key: signs what that principal writes."""

    principal_id: str
    signer: Signer

    @property
    def key_id(self) -> str:
        return self.signer.key_id

    def headers(self, value: bytes) -> Headers:
        """The signature headers for one record value."""
        signature = self.signer.sign(SIGNING_CONTEXT + value)
        return (
            (SIGNER_HEADER, self.principal_id.encode()),
            (KEY_HEADER, self.signer.key_id.encode()),
            (SIGNATURE_HEADER, signature),
        )

    @classmethod
    def from_file(cls, principal_id: str, path: Path) -> PrincipalSigner:
        return cls(principal_id, Signer.from_file(path))

    @classmethod
    def from_env(cls, principal_id: str, env: str = KEY_ENV) -> PrincipalSigner | None:
        """The key file ``$ORDINANCE_KEY`` (or ``env``) names, or None when it names none."""
        path = os.environ.get(env)
        if not path:
            return None
        try:
            return cls.from_file(principal_id, Path(path))
        except KeyFileError as exc:
            raise KeyFileError(f"${env}: {exc}") from exc


def signature_of(headers: Headers) -> Signature | None:
    """The signature a record carries; None when it carries none. Raises SignatureError
    for headers that are there but cannot be a signature (a reader denies, with reason)."""
    found: dict[str, bytes] = {}
    for name, value in headers:
        if name in SIGNATURE_HEADERS:
            if name in found:
                raise SignatureError(f"header {name} appears twice")
            found[name] = value
    if not found:
        return None
    missing = sorted(SIGNATURE_HEADERS - found.keys())
    if missing:
        raise SignatureError(f"signature headers incomplete: {', '.join(missing)} missing")
    try:
        signer_id = found[SIGNER_HEADER].decode()
        key_id = found[KEY_HEADER].decode("ascii")
    except UnicodeDecodeError as exc:
        raise SignatureError("signer or key id is not text") from exc
    if len(found[SIGNATURE_HEADER]) != 64:
        raise SignatureError("an Ed25519 signature is 64 bytes")
    return Signature(signer_id, key_id, found[SIGNATURE_HEADER])


def signature_valid(public: Ed25519PublicKey, value: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public``'s Ed25519 signature over ``SIGNING_CONTEXT +
    value``. Checked by libsodium (PyNaCl) rather than OpenSSL: one verify per intent is
    the cost of identity, and libsodium's took 51 µs here against OpenSSL's 134–149 µs in
    the same run (README, "Performance"); the `PreVerifier` runs it in a second process
    beside the deciding thread. Same algorithm (RFC 8032); libsodium is the stricter
    of the two (it also refuses small-order keys and points), so nothing it accepts
    OpenSSL would refuse."""
    return _valid_raw(public.public_bytes_raw(), value, signature)


def raw_signatures_valid(jobs: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """`signature_valid` for (raw 32-byte public key, value, signature) triples: what a
    verifying worker process is sent (key objects do not cross a process boundary)."""
    return [_valid_raw(public, value, signature) for public, value, signature in jobs]


def _valid_raw(public: bytes, value: bytes, signature: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        crypto_sign_open(signature + SIGNING_CONTEXT + value, public)
    except BadSignatureError:
        return False
    return True


def without_signature(headers: Headers) -> Headers:
    return tuple((name, value) for name, value in headers if name not in SIGNATURE_HEADERS)
