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
_LENGTH = struct.Struct(">I")


def _frame(data: bytes | None) -> bytes:
    return _ABSENT if data is None else _LENGTH.pack(len(data)) + data


def record_hash(prev: bytes, key: bytes | None, value: bytes | None) -> bytes:
    return hashlib.sha256(DOMAIN + prev + _frame(key) + _frame(value)).digest()


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
