"""The signed checkpoint: what its signature covers, and checking it (docs/audit.md).

The signature is Ed25519 over this UTF-8 text, every line ending in LF::

    ordinance checkpoint v1
    partition <p>
    first_offset <offset of the partition's first record>
    last_offset <offset of the last record covered>
    record_count <n: leaves of the Merkle tree>
    merkle_root <hex>
    chain_head <hex: chain hash of the record at last_offset>
    prev_checkpoint <hex SHA-256 of the previous checkpoint's text, or ->
    at <microseconds since the epoch, UTC>

A text form (like Certificate Transparency's signed tree heads and Go's checksum-database
notes) so an auditor can check a checkpoint with any Ed25519 tool and no Avro.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from ordinance.keys import ALGORITHM, Keyring, Signer

HEADER = "ordinance checkpoint v1"


def _micros(at: dt.datetime) -> int:
    delta = at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def message(checkpoint: dict[str, Any]) -> bytes:
    prev = checkpoint.get("prev_checkpoint_hash")
    lines = [
        HEADER,
        f"partition {checkpoint['partition']}",
        f"first_offset {checkpoint['first_offset']}",
        f"last_offset {checkpoint['last_offset']}",
        f"record_count {checkpoint['record_count']}",
        f"merkle_root {checkpoint['merkle_root'].hex()}",
        f"chain_head {checkpoint['chain_head'].hex()}",
        f"prev_checkpoint {prev.hex() if prev else '-'}",
        f"at {_micros(checkpoint['at'])}",
    ]
    return ("\n".join(lines) + "\n").encode()


def parse_message(text: str) -> dict[str, Any]:
    """The checkpoint fields a signed text states (the inverse of `message`: parsing and
    re-rendering gives the same bytes, or ValueError). A witness keeps only the text and
    its signature, so what it holds can never disagree with what was signed."""
    lines = text.split("\n")
    if lines[0] != HEADER or lines[-1] != "" or len(lines) != 10:
        raise ValueError("not an ordinance checkpoint v1 text")
    fields = dict(line.split(" ", 1) for line in lines[1:-1])
    prev = fields["prev_checkpoint"]
    at = fields["at"]
    datum: dict[str, Any] = {
        "partition": int(fields["partition"]),
        "first_offset": int(fields["first_offset"]),
        "last_offset": int(fields["last_offset"]),
        "record_count": int(fields["record_count"]),
        "merkle_root": bytes.fromhex(fields["merkle_root"]),
        "chain_head": bytes.fromhex(fields["chain_head"]),
        "prev_checkpoint_hash": None if prev == "-" else bytes.fromhex(prev),
        "at": dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(at)),
    }
    if message(datum).decode() != text:
        raise ValueError("the checkpoint text is not in canonical form")
    return datum


def checkpoint_hash(checkpoint: dict[str, Any]) -> bytes:
    return hashlib.sha256(message(checkpoint)).digest()


def signed(unsigned: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """The AuditCheckpoint datum for ``unsigned`` (all fields but the signature's)."""
    datum = dict(unsigned, algorithm=ALGORITHM, key_id=signer.key_id)
    datum["signature"] = signer.sign(message(datum))
    return datum


def signature_valid(checkpoint: dict[str, Any], keyring: Keyring) -> bool:
    return checkpoint.get("algorithm") == ALGORITHM and keyring.verify(
        checkpoint["key_id"], message(checkpoint), checkpoint["signature"]
    )
