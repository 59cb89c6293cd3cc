"""Ed25519 signing keys and the trusted keyring (docs/audit.md, "Keys").

A private key is a PKCS#8 PEM file (mode 0600). The keyring is a JSON file an auditor
holds: ``{"keys": [{"key_id", "algorithm": "ed25519", "public_key": base64(raw 32 bytes)}]}``.
A key id is the first 16 hex digits of SHA-256 over the raw public key, so anyone can
recompute it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ordinance.errors import OrdinanceError

ALGORITHM = "ed25519"


class KeyFileError(OrdinanceError):
    """A key or keyring file is missing, unreadable or of the wrong kind."""


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    key: Ed25519PrivateKey
    key_id: str

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not a readable private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an Ed25519 key")
        return cls(key, key_id_of(key.public_key()))


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, Ed25519PublicKey]

    def verify(self, key_id: str, message: bytes, signature: bytes) -> bool:
        public = self.keys.get(key_id)
        if public is None:
            return False
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def fingerprint(self) -> str:
        """SHA-256 (hex) over the keyring's canonical public keys: one line
        ``ed25519 <hex of the raw 32 bytes>`` per key, sorted, each ending in LF. Key ids
        and file layout do not enter, so only a change of trusted keys changes it; a
        witness pins it to detect a log re-signed under someone else's keyring."""
        lines = sorted(f"{ALGORITHM} {_raw(public).hex()}\n" for public in self.keys.values())
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        try:
            entries = orjson.loads(path.read_bytes())["keys"]
            keys = {}
            for entry in entries:
                if entry["algorithm"] != ALGORITHM:
                    raise ValueError(f"unsupported algorithm {entry['algorithm']!r}")
                public = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key"]))
                if key_id_of(public) != entry["key_id"]:
                    raise ValueError(f"key id {entry['key_id']} does not match its key")
                keys[entry["key_id"]] = public
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise KeyFileError(f"{path}: not a usable keyring ({exc})") from exc
        return cls(keys)


def generate(private_path: Path, keyring_path: Path | None) -> str:
    """Write a new private key and add its public key to the keyring (None: a principal's
    key, whose public half goes into the identity registry instead); returns its id."""
    if private_path.exists():
        raise KeyFileError(f"{private_path} exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = key.public_key()
    if keyring_path is None:
        return key_id_of(public)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    entries = orjson.loads(keyring_path.read_bytes())["keys"] if keyring_path.exists() else []
    key_id = key_id_of(public)
    entries.append(
        {"key_id": key_id, "algorithm": ALGORITHM, "public_key": base64.b64encode(raw).decode()}
    )
    keyring_path.write_bytes(orjson.dumps({"keys": entries}, option=orjson.OPT_INDENT_2))
    return key_id
