"""The root of trust: the admins whose keys no registry record vouches for.

A trust file is small JSON an operator hands to ``serve`` and to verification commands::

    {"admins": [{"principal_id": "root-admin", "key_id": "…16 hex…",
                 "algorithm": "ed25519", "public_key": "<base64 of the raw 32 bytes>"}]}

Only these keys may sign the first registry records; from there the registry's own
``admin`` principals may sign further changes. The enforcer writes the trust root into its
takeover record, so a partition's fold — and its replay — knows which keys it trusted.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ordinance.keys import ALGORITHM, KeyFileError, Signer, key_id_of


@dataclass(frozen=True, slots=True)
class TrustedKey:
    principal_id: str
    key_id: str
    public: Ed25519PublicKey

    @property
    def raw(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class TrustRoot:
    keys: tuple[TrustedKey, ...]

    def key(self, principal_id: str, key_id: str) -> TrustedKey | None:
        for key in self.keys:
            if key.principal_id == principal_id and key.key_id == key_id:
                return key
        return None

    def fingerprint(self) -> str:
        """SHA-256 (hex) over one ``<principal> ed25519 <hex key>`` line per key, sorted:
        what an auditor compares with the trust root a log's enforcers recorded."""
        lines = sorted(f"{k.principal_id} {ALGORITHM} {k.raw.hex()}\n" for k in self.keys)
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def to_wire(self) -> list[dict[str, Any]]:
        """As the takeover record carries it (``TrustedKey`` records)."""
        return [
            {"principal_id": k.principal_id, "key_id": k.key_id, "public_key": k.raw}
            for k in sorted(self.keys, key=lambda k: (k.principal_id, k.key_id))
        ]

    @classmethod
    def from_wire(cls, entries: list[dict[str, Any]]) -> TrustRoot:
        keys = []
        for entry in entries:
            public = Ed25519PublicKey.from_public_bytes(entry["public_key"])
            keys.append(TrustedKey(entry["principal_id"], key_id_of(public), public))
        return cls(tuple(keys))

    @classmethod
    def from_file(cls, path: Path) -> TrustRoot:
        try:
            entries = orjson.loads(path.read_bytes())["admins"]
            keys = []
            for entry in entries:
                if entry.get("algorithm", ALGORITHM) != ALGORITHM:
                    raise ValueError(f"unsupported algorithm {entry['algorithm']!r}")
                public = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key"]))
                if entry.get("key_id", key_id_of(public)) != key_id_of(public):
                    raise ValueError(f"key id {entry['key_id']} does not match its key")
                keys.append(TrustedKey(str(entry["principal_id"]), key_id_of(public), public))
            if not keys:
                raise ValueError("no admin keys")
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise KeyFileError(f"{path}: not a usable trust file ({exc})") from exc
        return cls(tuple(keys))


def add_admin(trust_path: Path, principal_id: str, key_path: Path) -> str:
    """Add the public half of ``key_path`` to the trust file (created if absent) as an
    admin named ``principal_id``; returns the key id."""
    signer = Signer.from_file(key_path)
    public = signer.key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    entries: list[dict[str, Any]] = []
    if trust_path.exists():
        try:
            entries = list(orjson.loads(trust_path.read_bytes())["admins"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise KeyFileError(f"{trust_path}: not a usable trust file ({exc})") from exc
    entries = [e for e in entries if e.get("key_id") != signer.key_id]
    entries.append(
        {
            "principal_id": principal_id,
            "key_id": signer.key_id,
            "algorithm": ALGORITHM,
            "public_key": base64.b64encode(raw).decode(),
        }
    )
    trust_path.write_bytes(orjson.dumps({"admins": entries}, option=orjson.OPT_INDENT_2))
    return signer.key_id
