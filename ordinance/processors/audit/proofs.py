"""Inclusion proofs: one decision against the latest signed checkpoint, checkable offline
with nothing but the proof file and a keyring (docs/audit.md, "Proofs").

A proof (JSON, format ``ordinance.inclusion-proof.v1``) carries the record's stored
bytes and the chain hash before it, the RFC 9162 audit path from its chain hash to the
Merkle root, and the signed checkpoint text. Checking it:

1. ``h = SHA-256("ordinance.chain.v1\\0" || prev || frame(key) || frame(value))``;
2. the root that ``path`` proves ``h`` at ``leaf_index`` under, for ``tree_size`` leaves;
3. the checkpoint text names that root, that size and the partition;
4. its Ed25519 signature verifies under a trusted key of the keyring;
5. the readable copy of the decision, when the proof carries one, is exactly what the
   proven bytes decode to (canonical JSON of both): the copy is not covered by the
   signature, so an edited copy must fail rather than be believed.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ordinance.errors import OrdinanceError
from ordinance.jsonutil import json_default
from ordinance.keys import Keyring
from ordinance.processors.audit.chain import GENESIS, record_hash
from ordinance.processors.audit.checkpoint import message
from ordinance.processors.audit.merkle import (
    inclusion_path,
    leaf_hash,
    root_from_inclusion,
    root_of,
)
from ordinance.processors.audit.verify import latest, read_checkpoints
from ordinance.streams import ConsumedRecord, Log
from ordinance.streams.serde import Decoded, Serde, UndecodableRecord
from ordinance.streams.topics import AGENT_DECISIONS, DEFAULT_PREFIX, ensure_topics

FORMAT = "ordinance.inclusion-proof.v1"


class ProofError(OrdinanceError):
    """No proof can be made (unknown request, nothing signed yet, log and checkpoint disagree)."""


def _plain(value: Any) -> Any:
    """A decoded record as plain JSON values (bytes as hex)."""

    def default(item: Any) -> Any:
        return item.hex() if isinstance(item, bytes) else json_default(item)

    return orjson.loads(orjson.dumps(value, default=default))


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


@dataclass
class PartitionTree:
    """A decisions partition's records and their position chain hashes."""

    partition: int
    records: list[ConsumedRecord]
    hashes: list[bytes]

    @classmethod
    def of(cls, partition: int, records: Iterable[ConsumedRecord]) -> PartitionTree:
        kept, hashes, head = [], [], GENESIS
        for record in records:
            head = record_hash(head, record.key, record.value)
            kept.append(record)
            hashes.append(head)
        return cls(partition, kept, hashes)

    def prove(self, index: int, checkpoint: dict[str, Any], decision: Any = None) -> dict[str, Any]:
        size = checkpoint["record_count"]
        if not index < size <= len(self.hashes):
            raise ProofError(
                f"record {index} of partition {self.partition} is not covered by a checkpoint "
                f"the log still holds (checkpoint size {size}, {len(self.hashes)} records)"
            )
        covered = self.hashes[:size]
        if root_of([leaf_hash(h) for h in covered]) != checkpoint["merkle_root"]:
            raise ProofError(
                f"partition {self.partition} does not match its signed checkpoint: run audit verify"
            )
        record = self.records[index]
        return {
            "format": FORMAT,
            "partition": self.partition,
            "offset": record.offset,
            "leaf_index": index,
            "tree_size": size,
            "record": {
                "key": _b64(record.key),
                "value": _b64(record.value),
                "prev_hash": (self.hashes[index - 1] if index else GENESIS).hex(),
            },
            "record_hash": self.hashes[index].hex(),
            "path": [h.hex() for h in inclusion_path(covered, index)],
            "checkpoint": {
                "message": message(checkpoint).decode(),
                "algorithm": checkpoint["algorithm"],
                "key_id": checkpoint["key_id"],
                "signature": _b64(checkpoint["signature"]),
            },
            "decision": _plain(decision),
        }


def prove_request(log: Log, request_id: str, *, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """The inclusion proof of the (latest) decision for ``request_id``."""
    topic = ensure_topics(log, prefix)[AGENT_DECISIONS].name
    serde = Serde()
    needle = request_id.encode()
    found: tuple[int, int, Any] | None = None
    for record in log.read_to_end(topic):
        if record.value is None or needle not in record.value:
            continue  # cheap filter: the request id is stored verbatim in the Avro bytes
        decoded = serde.decode_record(record, expect={"Decision"})
        if isinstance(decoded, Decoded) and decoded.value["request_id"] == request_id:
            found = (record.partition, record.offset, decoded.value)
    if found is None:
        raise ProofError(f"no decision for request {request_id!r} on {topic}")
    partition, offset, decision = found
    checkpoints = read_checkpoints(log, prefix).get(partition, [])
    if not checkpoints:
        raise ProofError(f"partition {partition} has no signed checkpoint yet")
    tree = PartitionTree.of(partition, log.read_to_end(topic, [partition]))
    index = next(i for i, r in enumerate(tree.records) if r.offset == offset)
    return tree.prove(index, latest(checkpoints), decision)


@functools.cache
def _serde() -> Serde:
    # Loading the schemas once per process: check_proof runs in loops (tests, batch checks).
    return Serde()


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def proven_decision(proof: dict[str, Any]) -> dict[str, Any]:
    """What the proven record bytes say, as plain JSON values (the same form as the
    proof's readable ``decision``). Raises ProofError when the bytes do not decode."""
    try:
        raw = _unb64(proof["record"]["value"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"malformed proof: {exc!r}") from exc
    decoded = _serde().decode(raw)
    if isinstance(decoded, UndecodableRecord):
        raise ProofError(f"the proven bytes do not decode: {decoded.detail}")
    plain: dict[str, Any] = _plain(decoded.value)
    return plain


def _readable_copy_problems(proof: dict[str, Any]) -> list[str]:
    """The readable decision against the decoding of the proven bytes. A proof without a
    copy (absent or null) asserts nothing beyond its bytes, so it has nothing to contradict."""
    readable = proof.get("decision")
    if readable is None:
        return []
    try:
        proven = proven_decision(proof)
    except ProofError as exc:
        return [f"the readable decision cannot be checked: {exc}"]
    if _canonical(readable) == _canonical(proven):
        return []
    if not isinstance(readable, dict):
        return ["the readable decision is not an object: it is not what the proven bytes say"]
    differing = sorted(
        name
        for name in readable.keys() | proven.keys()
        if name not in readable
        or name not in proven
        or _canonical(readable[name]) != _canonical(proven[name])
    )
    return [
        "the readable decision is not what the proven bytes say (differs in "
        + ", ".join(differing)
        + "): it was edited after the proof was made"
    ]


def _fields(text: str) -> dict[str, str]:
    lines = text.split("\n")
    return dict(line.split(" ", 1) for line in lines[1:] if " " in line)


def check_proof(proof: dict[str, Any], keyring: Keyring) -> list[str]:
    """Everything wrong with ``proof``; empty when it proves its record is in the signed log."""
    try:
        if proof.get("format") != FORMAT:
            return [f"not an {FORMAT} proof"]
        record = proof["record"]
        prev = bytes.fromhex(record["prev_hash"])
        entry = record_hash(prev, _unb64(record["key"]), _unb64(record["value"]))
        problems = []
        if entry.hex() != proof["record_hash"]:
            problems.append("the record's bytes do not hash to its stated record hash")
        path = [bytes.fromhex(h) for h in proof["path"]]
        root = root_from_inclusion(entry, proof["leaf_index"], proof["tree_size"], path)
        checkpoint = proof["checkpoint"]
        text: str = checkpoint["message"]
        fields = _fields(text)
        if root is None or fields.get("merkle_root") != root.hex():
            problems.append("the audit path does not lead to the checkpoint's Merkle root")
        if fields.get("record_count") != str(proof["tree_size"]):
            problems.append("the checkpoint covers a different number of records")
        if fields.get("partition") != str(proof["partition"]):
            problems.append("the checkpoint is for a different partition")
        signature = _unb64(checkpoint["signature"]) or b""
        if checkpoint.get("algorithm") != "ed25519" or not keyring.verify(
            checkpoint["key_id"], text.encode(), signature
        ):
            problems.append("the checkpoint's signature does not verify under the keyring")
        problems.extend(_readable_copy_problems(proof))
        return problems
    except (KeyError, TypeError, ValueError) as exc:
        return [f"malformed proof: {exc!r}"]
