"""``audit verify``: recompute the chain and the Merkle roots of ``agent.decisions`` and
check them against the signed checkpoints (docs/audit.md, "Verifying").

Each record is checked three ways, so a tampering is located, not just detected:

- its own stored hash against its stored ``prev`` and bytes (a *modified* record);
- its stored ``prev`` against the hash the record before it claims. When they differ the
  ``prev`` is looked up among every record's hash: found earlier means the records in
  between are not in the chain (*inserted*), found later means *reordered*, not found
  means the record it follows is gone (*deleted*; on the embedded log an offset gap too);
- the position chain (each hash over the one before it in log order) fed to a Merkle
  tree whose root must equal every validly signed checkpoint's root at its size
  (*checkpoint_mismatch*: the log differs from what was signed), and whose last signed
  head must still be present (*truncated*). A checkpoint whose signature does not verify
  under the keyring is *forged_checkpoint*; one missing between two others is
  *checkpoint_gap*.

A record whose link breaks the chain because its writer had lost the partition (written
after another enforcer's takeover marker, `audit.fence`) is not a finding: it is listed
as *fenced*, left out of the claimed chain, and stays a leaf of the Merkle tree.

Claimed hashes re-synchronise after each finding, so one tampering is one finding, not
a cascade over the rest of the partition.

What the log's own checkpoints cannot see (a forged tail no checkpoint covers, a deleted
last checkpoint, a rollback to an older valid prefix, a log re-signed under another
keyring) needs evidence kept outside the log: ``checks`` run on each partition's
`PartitionFacts` after the checks above (witness.py: witnessed checkpoints, freshness).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ordinance.keys import Keyring
from ordinance.processors.audit.chain import GENESIS, record_hash, stored_links
from ordinance.processors.audit.checkpoint import checkpoint_hash, signature_valid
from ordinance.processors.audit.fence import Ownership
from ordinance.processors.audit.merkle import Levels
from ordinance.streams import ConsumedRecord, Log
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    AGENT_DECISIONS,
    AUDIT_CHECKPOINTS,
    DEFAULT_PREFIX,
    ensure_topics,
    topic_specs,
)

MODIFIED = "modified"
INSERTED = "inserted"
DELETED = "deleted"
REORDERED = "reordered"
TRUNCATED = "truncated"
FORGED_CHECKPOINT = "forged_checkpoint"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
CHECKPOINT_GAP = "checkpoint_gap"


@dataclass(frozen=True)
class Finding:
    kind: str
    partition: int | None  # None: the whole log (e.g. a keyring the witness did not pin)
    offset: int | None  # the decisions offset it is located at (None: the checkpoint itself)
    detail: str
    checkpoint_offset: int | None = None  # the audit.checkpoints record involved


@dataclass(frozen=True)
class FencedWrite:
    """A record its writer wrote after another enforcer's takeover marker (`audit.fence`):
    left out of the chain and of every fold, and not a finding."""

    offset: int
    writer: str  # the enforcer that wrote it
    owner: str  # the enforcer that owned the partition then


@dataclass
class PartitionReport:
    partition: int
    records: int = 0
    first_offset: int | None = None
    last_offset: int | None = None
    checkpoints: int = 0  # validly signed checkpoints the log was checked against
    covered: int = 0  # records covered by the latest valid checkpoint
    witnessed: int | None = None  # records covered by the newest witnessed checkpoint
    findings: list[Finding] = field(default_factory=list)
    fenced: list[FencedWrite] = field(default_factory=list)


@dataclass
class VerifyReport:
    partitions: list[PartitionReport]
    seconds: float
    log_findings: list[Finding] = field(default_factory=list)  # of no one partition

    @property
    def findings(self) -> list[Finding]:
        return [*self.log_findings, *(f for p in self.partitions for f in p.findings)]

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def fenced(self) -> list[tuple[int, FencedWrite]]:
        return [(p.partition, f) for p in self.partitions for f in p.fenced]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": not self.findings,
            "records": self.records,
            # Not findings: writes the fold leaves out (docs/audit.md, "Fenced writes").
            "fenced": len(self.fenced),
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records / self.seconds) if self.seconds else None,
            "partitions": [
                {k: v for k, v in asdict(p).items() if k != "findings"} for p in self.partitions
            ],
            "findings": [asdict(f) for f in self.findings],
        }


Checkpoint = tuple[int, dict[str, Any]]  # (audit.checkpoints offset, AuditCheckpoint datum)


@dataclass
class PartitionFacts:
    """What verifying one partition established, for checks against evidence from
    outside the log (`PartitionCheck`)."""

    partition: int
    offsets: list[int]  # of the records, in log order
    positions: list[bytes]  # the position chain: the Merkle tree's entries
    valid: dict[int, Checkpoint]  # validly signed checkpoints by record count
    covered: int  # records under the latest valid checkpoint (at most len(positions))
    tail_timestamp_ms: int | None  # log time of the first record no valid checkpoint covers
    _tree: Levels | None = None

    def root(self, size: int) -> bytes:
        """The Merkle root of the first ``size`` records."""
        if self._tree is None:
            self._tree = Levels(self.positions)
        return self._tree.root(size)


# Appends what it finds to the report's findings.
PartitionCheck = Callable[[PartitionFacts, PartitionReport], None]


def _valid_checkpoints(
    partition: int, checkpoints: list[Checkpoint], keyring: Keyring, report: PartitionReport
) -> dict[int, Checkpoint]:
    """Valid checkpoints by record count; forged and missing ones become findings."""
    valid: dict[int, Checkpoint] = {}
    for audit_offset, datum in checkpoints:
        if signature_valid(datum, keyring):
            valid[datum["record_count"]] = (audit_offset, datum)
        else:
            report.findings.append(
                Finding(
                    FORGED_CHECKPOINT,
                    partition,
                    None,
                    f"checkpoint of {datum['record_count']} records (key {datum['key_id']}) "
                    "has no valid signature from a trusted key",
                    audit_offset,
                )
            )
    previous: bytes | None = None
    for count in sorted(valid):
        audit_offset, datum = valid[count]
        if datum.get("prev_checkpoint_hash") != previous:
            report.findings.append(
                Finding(
                    CHECKPOINT_GAP,
                    partition,
                    None,
                    f"the checkpoint of {count} records names a previous checkpoint that is "
                    "not among the valid ones: a signed checkpoint is missing",
                    audit_offset,
                )
            )
        previous = checkpoint_hash(datum)
    return valid


def verify_partition(
    partition: int,
    records: Iterable[ConsumedRecord],
    checkpoints: list[Checkpoint],
    keyring: Keyring,
    progress: Callable[[int], None] = lambda _n: None,
    checks: Sequence[PartitionCheck] = (),
) -> PartitionReport:
    report = PartitionReport(partition)
    findings = report.findings
    ownership = Ownership(Serde())
    valid = _valid_checkpoints(partition, checkpoints, keyring, report)
    tail_index = max(valid, default=0)  # the first record no valid checkpoint covers
    tail_timestamp_ms: int | None = None
    offsets: list[int] = []
    claimed: list[bytes] = []  # the hash each record claims (stored, or derived)
    positions: list[bytes] = []  # the position chain: the Merkle tree's entries
    breaks: list[tuple[int, bytes]] = []  # (index, stored prev) where the link fails
    position_head = claimed_head = GENESIS
    for index, record in enumerate(records):
        key, value = record.key, record.value
        prev, own = stored_links(record.headers)
        fenced: str | None = None
        if prev is None:
            ownership.unlinked(value)
        elif prev != claimed_head:
            fenced = ownership.fenced_writer(value)
        link = claimed_head if prev is None else prev  # a marker's hash follows from position
        mine = record_hash(link, key, value)
        # Untampered, the claimed and the position chain agree: hash once. (A fenced
        # write is a leaf of the Merkle tree, like every record, but not in the chain.)
        position_head = mine if link == position_head else record_hash(position_head, key, value)
        if prev is not None:
            if fenced is not None:
                assert ownership.owner is not None
                report.fenced.append(FencedWrite(record.offset, fenced, ownership.owner))
            elif prev != claimed_head:
                breaks.append((index, prev))
            if own is not None and own != mine:
                findings.append(
                    Finding(
                        MODIFIED,
                        partition,
                        record.offset,
                        "the record's bytes do not hash to the hash stored with it",
                    )
                )
                mine = own  # later records link to what was written, not to the edit
        offsets.append(record.offset)
        claimed.append(mine)
        positions.append(position_head)
        if fenced is None:
            claimed_head = mine
        if index == tail_index:
            tail_timestamp_ms = record.timestamp_ms
        if index % 100_000 == 99_999:
            progress(index + 1)
    report.records = len(offsets)
    if offsets:
        report.first_offset, report.last_offset = offsets[0], offsets[-1]
    facts = PartitionFacts(
        partition, offsets, positions, valid, min(tail_index, len(offsets)), tail_timestamp_ms
    )
    _check_checkpoints(facts, report)
    _classify_breaks(partition, offsets, claimed, breaks, findings)
    _check_tail(partition, valid, claimed, positions, offsets, report)
    for check in checks:
        check(facts, report)
    return report


def _check_checkpoints(facts: PartitionFacts, report: PartitionReport) -> None:
    """The log's Merkle root and head at each validly signed size against the signature."""
    partition, valid, positions, offsets = (
        facts.partition,
        facts.valid,
        facts.positions,
        facts.offsets,
    )
    for size in sorted(size for size in valid if size <= len(positions)):
        audit_offset, datum = valid[size]
        report.checkpoints += 1
        if facts.root(size) == datum["merkle_root"] and positions[size - 1] == datum["chain_head"]:
            continue
        report.findings.append(
            Finding(
                CHECKPOINT_MISMATCH,
                partition,
                offsets[size - 1],
                f"the first {size} records (through offset {offsets[size - 1]}) do not have "
                f"the Merkle root or chain head signed for offsets "
                f"{datum['first_offset']}..{datum['last_offset']}",
                audit_offset,
            )
        )


def _classify_breaks(
    partition: int,
    offsets: list[int],
    claimed: list[bytes],
    breaks: list[tuple[int, bytes]],
    findings: list[Finding],
) -> None:
    if not breaks:
        return
    where = {digest: i for i, digest in enumerate(claimed)}
    reordered: set[int] = set()
    for index, prev in breaks:
        offset = offsets[index]
        target = where.get(prev)
        if prev == GENESIS and index > 0:
            target = -1  # it claims to be first: everything before it is not in the chain
        if target is None:
            gap = offset - offsets[index - 1] - 1 if index > 0 else offset
            missing = f"; offsets {offset - gap}..{offset - 1} are absent" if gap > 0 else ""
            findings.append(
                Finding(
                    DELETED,
                    partition,
                    offset,
                    f"the record this one follows is not in the partition{missing}",
                )
            )
        elif target > index:
            reordered.update((index, target))
            findings.append(
                Finding(
                    REORDERED,
                    partition,
                    offset,
                    f"this record follows the record at offset {offsets[target]}, which comes after it",
                )
            )
        else:
            between = set(range(target + 1, index))
            if between <= reordered:
                continue  # the other half of a reordering already reported
            names = ", ".join(str(offsets[i]) for i in sorted(between - reordered)[:10])
            findings.append(
                Finding(
                    INSERTED,
                    partition,
                    offsets[min(between - reordered)],
                    f"record(s) at offset(s) {names} are not in the chain: "
                    f"offset {offset} follows offset {offsets[target] if target >= 0 else 'none (the start)'}",
                )
            )


def _check_tail(
    partition: int,
    valid: dict[int, Checkpoint],
    claimed: list[bytes],
    positions: list[bytes],
    offsets: list[int],
    report: PartitionReport,
) -> None:
    if not valid:
        return
    latest = max(valid)
    audit_offset, datum = valid[latest]
    report.covered = latest
    # A checkpoint signs the position chain; past a fenced write it differs from the
    # claimed chain (which skips the write), so either holding the head will do.
    if datum["chain_head"] in set(claimed) or datum["chain_head"] in set(positions):
        return
    last = offsets[-1] if offsets else None
    report.findings.append(
        Finding(
            TRUNCATED,
            partition,
            last,
            f"the signed checkpoint covers {latest} records through offset {datum['last_offset']}, "
            f"but its last record is not in the partition (which ends at offset {last})",
            audit_offset,
        )
    )


def latest(checkpoints: list[Checkpoint]) -> dict[str, Any]:
    """The checkpoint covering the most records."""
    return max((datum for _offset, datum in checkpoints), key=lambda d: d["record_count"])


def read_checkpoints(log: Log, prefix: str = DEFAULT_PREFIX) -> dict[int, list[Checkpoint]]:
    """Every checkpoint on ``audit.checkpoints`` by decisions partition, in log order."""
    serde = Serde()
    by_partition: dict[int, list[Checkpoint]] = {}
    topic = topic_specs(prefix)[AUDIT_CHECKPOINTS].name
    for record in log.read_to_end(topic):
        decoded = serde.decode_record(record, expect={"AuditCheckpoint"})
        if isinstance(decoded, Decoded):
            by_partition.setdefault(decoded.value["partition"], []).append(
                (record.offset, decoded.value)
            )
    return by_partition


def verify_log(
    log: Log,
    keyring: Keyring,
    *,
    prefix: str = DEFAULT_PREFIX,
    partitions: list[int] | None = None,
    offsets: tuple[int | None, int | None] = (None, None),
    progress: Callable[[str], None] = lambda _message: None,
    checks: Sequence[PartitionCheck] = (),
) -> VerifyReport:
    """Verify every (or the given) decisions partition. The chain and the Merkle tree
    start at the partition's first record, so the whole partition is always hashed;
    ``offsets`` (from, to) only limits which findings are reported; ``checks`` add
    checks against evidence from outside the log (witness.py)."""
    started = time.perf_counter()
    topic = ensure_topics(log, prefix)[AGENT_DECISIONS].name
    checkpoints = read_checkpoints(log, prefix)
    reports = []
    for partition in partitions if partitions is not None else log.partitions(topic):

        def hashed(count: int, partition: int = partition) -> None:
            progress(f"partition {partition}: {count:,} records hashed")

        report = verify_partition(
            partition,
            log.read_to_end(topic, [partition]),
            checkpoints.get(partition, []),
            keyring,
            hashed,
            checks,
        )
        low, high = offsets
        report.findings = [
            f
            for f in report.findings
            if f.offset is None
            or ((low is None or f.offset >= low) and (high is None or f.offset <= high))
        ]
        progress(
            f"partition {partition}: {report.records:,} records, {len(report.findings)} findings"
        )
        reports.append(report)
    return VerifyReport(reports, time.perf_counter() - started)
