"""The hash chain over one ``agent.decisions`` partition (docs/audit.md, "The chain").

Every record's hash covers the hash of the record before it in the partition and the
record's exact stored bytes::

    hash_i = SHA-256( b"ordinance.chain.v1\\x00" || hash_{i-1}
                      || frame(key) || frame(value) )

where ``hash_{-1}`` is 32 zero bytes and ``frame(b)`` is the 4-byte big-endian length of
``b`` followed by ``b`` (``0xFFFFFFFF`` and nothing for an absent key or value). Hashing
the stored bytes, not a re-encoding, means verifying needs no Avro schema and a schema
change cannot make old records fail.

The chain is defined by log order. A writer that owns the partition stores the previous
hash and the record's own hash in the headers ``ordinance-chain-prev`` and
``ordinance-chain-hash``; a takeover marker is written before its writer can know the
head (that is what the marker is for), so it carries none — its hash still follows from
its position, and the new owner's first record names it as ``prev``.
"""

from __future__ import annotations

import hashlib
import struct

from ordinance.streams.log import Headers

CHAIN_PREV = "ordinance-chain-prev"
CHAIN_HASH = "ordinance-chain-hash"
GENESIS = bytes(32)
DOMAIN = b"ordinance.chain.v1\x00"
_ABSENT = b"\xff\xff\xff\xff"
_pack = struct.Struct(">I").pack
_sha256 = hashlib.sha256


def record_hash(prev: bytes, key: bytes | None, value: bytes | None) -> bytes:
    # One join and one hash call: this runs for every record the enforcer writes and
    # every record verify reads.
    return _sha256(
        b"".join(
            (
                DOMAIN,
                prev,
                _ABSENT if key is None else _pack(len(key)),
                key or b"",
                _ABSENT if value is None else _pack(len(value)),
                value or b"",
            )
        )
    ).digest()


def chain_headers(prev: bytes, own: bytes) -> Headers:
    return ((CHAIN_PREV, prev), (CHAIN_HASH, own))


def stored_links(headers: Headers) -> tuple[bytes | None, bytes | None]:
    """The (prev, own) hashes a record's writer stored, None where absent."""
    prev = own = None
    for name, data in headers:
        if name == CHAIN_PREV:
            prev = data
        elif name == CHAIN_HASH:
            own = data
    return prev, own
