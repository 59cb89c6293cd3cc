"""Witnessed checkpoints and freshness: what the log's own signed checkpoints cannot see
(docs/audit.md, "Witnesses and freshness").

The checkpoints live in the log, so someone who can write to the log can, unseen by
``audit verify`` alone:

- forge records after the last checkpoint (nothing signed covers them yet);
- delete the last checkpoint, turning the records it covered into such a tail;
- roll the whole log back to an older valid prefix (records and checkpoints together);
- rewrite anything and re-sign it under a key of their own, handing out its keyring.

Certificate Transparency answers with witnesses (copies of signed tree heads kept by
parties other than the log) and a maximum merge delay. So here:

- `anchor` copies each checkpoint, once the log verifies against it and against what was
  witnessed before, to a `Witness` the auditor controls, and pins the keyring's
  fingerprint there on first use;
- `witness_check` makes verify require that the log reproduces every witnessed root and
  holds at least the newest witnessed tree and its checkpoint; `keyring_findings` that
  the keyring is the pinned one;
- `tail_check` bounds the records no checkpoint covers, by count or by age.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ordinance.errors import OrdinanceError
from ordinance.keys import Keyring
from ordinance.policy.typecheck import parse_duration
from ordinance.processors.audit.verify import (
    Checkpoint,
    Finding,
    PartitionCheck,
    PartitionFacts,
    PartitionReport,
    VerifyReport,
    verify_log,
)
from ordinance.processors.audit.witness_store import (
    CHECKPOINT,
    KEYRING,
    Witness,
    Witnessed,
    WitnessError,
    keyring_entry,
)
from ordinance.streams import Log
from ordinance.streams.topics import DEFAULT_PREFIX

ROLLBACK = "rollback"
WITNESS_MISMATCH = "witness_mismatch"
WITNESS_CONFLICT = "witness_conflict"
CHECKPOINT_MISSING = "checkpoint_missing"
WITNESS_INVALID = "witness_invalid"
KEYRING_MISMATCH = "keyring_mismatch"
UNSIGNED_TAIL = "unsigned_tail"


@dataclass
class WitnessState:
    """What a witness holds, read once."""

    source: str
    fingerprint: str | None = None  # the keyring pinned last
    checkpoints: dict[int, list[Witnessed]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(held) for held in self.checkpoints.values())

    def newest(self, partition: int) -> int:
        """Records covered by the newest checkpoint witnessed for ``partition`` (0: none)."""
        return max((w.record_count for w in self.checkpoints.get(partition, [])), default=0)


def load(witness: Witness) -> WitnessState:
    state = WitnessState(witness.name)
    for entry in witness.entries():
        kind = entry.get("type")
        if kind == KEYRING:
            fingerprint = entry.get("fingerprint")
            if not isinstance(fingerprint, str):
                raise WitnessError(f"{witness.name}: a keyring entry has no fingerprint")
            state.fingerprint = fingerprint
        elif kind == CHECKPOINT:
            held = Witnessed.from_entry(entry)
            state.checkpoints.setdefault(held.partition, []).append(held)
        else:
            raise WitnessError(f"{witness.name}: an entry of unknown type {kind!r}")
    return state


def _short(fingerprint: str | None) -> str:
    return "none" if fingerprint is None else fingerprint[:16] + "…"


def keyring_findings(state: WitnessState, keyring: Keyring) -> list[Finding]:
    """The keyring against the one the witness pinned: checkpoints that verify under an
    unpinned keyring prove only that whoever made the keyring signed them."""
    fingerprint = keyring.fingerprint()
    if state.fingerprint == fingerprint:
        return []
    return [
        Finding(
            KEYRING_MISMATCH,
            None,
            None,
            f"the keyring's fingerprint {_short(fingerprint)} is not the one {state.source} "
            f"pinned ({_short(state.fingerprint)}): the log may be re-signed under another "
            "keyring (after a genuine key rotation: audit anchor --repin-keyring)",
        )
    ]


def witness_check(
    state: WitnessState, keyring: Keyring, *, trusted: bool, repinning: bool = False
) -> PartitionCheck:
    """The log against what was witnessed for each partition. ``trusted``: the keyring
    is the pinned one (or the one being pinned), so a witnessed checkpoint that does not
    verify under it means the witness was altered, or the new keyring dropped a key the
    witnessed checkpoints were signed with (with an unpinned keyring, `keyring_findings`
    says so once instead)."""
    why = (
        "the keyring being pinned must keep the keys the witnessed checkpoints were signed with"
        if repinning
        else f"{state.source} was altered"
    )

    def check(facts: PartitionFacts, report: PartitionReport) -> None:
        held = []
        for witnessed in state.checkpoints.get(facts.partition, []):
            if trusted and not witnessed.signed_by(keyring):
                report.findings.append(
                    Finding(
                        WITNESS_INVALID,
                        facts.partition,
                        None,
                        f"the witnessed checkpoint of {witnessed.record_count:,} records does "
                        f"not verify under the keyring: {why}",
                    )
                )
            else:
                held.append(witnessed)
        if held:
            _compare(facts, report, held)

    return check


def _compare(facts: PartitionFacts, report: PartitionReport, held: list[Witnessed]) -> None:
    partition, size = facts.partition, len(facts.positions)
    newest = max(held, key=lambda w: w.record_count)
    report.witnessed = newest.record_count
    findings = report.findings
    if size < newest.record_count:
        findings.append(
            Finding(
                ROLLBACK,
                partition,
                facts.offsets[-1] if facts.offsets else None,
                f"a checkpoint of {newest.record_count:,} records through offset "
                f"{newest.last_offset} (signed {newest.signed_at}) was witnessed, but the "
                f"partition holds {size:,}: the log was rolled back or truncated since",
            )
        )
    differing = sorted(
        (
            w
            for w in held
            if w.record_count <= size
            and (
                facts.root(w.record_count) != w.merkle_root
                or facts.positions[w.record_count - 1] != w.chain_head
            )
        ),
        key=lambda w: w.record_count,
    )
    if differing:
        first = differing[0]
        more = len(differing) - 1
        findings.append(
            Finding(
                WITNESS_MISMATCH,
                partition,
                facts.offsets[first.record_count - 1],
                f"the first {first.record_count:,} records do not reproduce the Merkle root "
                f"and head witnessed for offsets ..{first.last_offset} (signed "
                f"{first.signed_at}): the log was rewritten since it was witnessed"
                + (f"; {more} later witnessed checkpoint(s) disagree too" if more else ""),
            )
        )
    by_size = {w.record_count: w for w in held}
    forks: list[Checkpoint] = [
        facts.valid[count]
        for count in sorted(facts.valid)
        if count in by_size and facts.valid[count][1]["merkle_root"] != by_size[count].merkle_root
    ]
    if forks:
        audit_offset, datum = forks[0]
        findings.append(
            Finding(
                WITNESS_CONFLICT,
                partition,
                None,
                f"audit.checkpoints holds a validly signed checkpoint of "
                f"{datum['record_count']:,} records whose root differs from the witnessed one "
                f"of the same size: two signed histories of one log"
                + (f" ({len(forks)} such checkpoints)" if len(forks) > 1 else ""),
                audit_offset,
            )
        )
    on_log = {(count, datum["merkle_root"]) for count, (_o, datum) in facts.valid.items()}
    if (
        size >= newest.record_count
        and newest not in differing
        and (newest.record_count, newest.merkle_root) not in on_log
    ):
        signed = max(facts.valid, default=0)
        findings.append(
            Finding(
                CHECKPOINT_MISSING,
                partition,
                None,
                f"the newest witnessed checkpoint ({newest.record_count:,} records through "
                f"offset {newest.last_offset}, signed {newest.signed_at}) is not on "
                f"audit.checkpoints, whose newest valid one covers {signed:,}: a signed "
                "checkpoint was deleted",
            )
        )


@dataclass(frozen=True)
class TailLimit:
    """``--max-unsigned-tail``: at most ``records`` records, or none older than
    ``seconds``, outside every signed checkpoint."""

    text: str
    records: int | None = None
    seconds: int | None = None

    @classmethod
    def parse(cls, text: str) -> TailLimit:
        value = text.strip()
        if value.isdigit():
            return cls(value, records=int(value))
        seconds = parse_duration(value)
        if seconds is None:
            raise TailLimitError(
                f"{text!r} is neither a number of records (100) nor a duration (30s, 10m, 1h, 1d)"
            )
        return cls(value, seconds=seconds)


class TailLimitError(OrdinanceError):
    """A --max-unsigned-tail that is neither a count nor a duration."""


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def tail_check(limit: TailLimit, now: Callable[[], float] = time.time) -> PartitionCheck:
    """The records past the latest valid checkpoint against ``limit``. Their age is their
    log timestamp, which a writer sets: the count is the firm bound, the age catches a
    checkpointer that stopped and a tail left unsigned for long."""

    def check(facts: PartitionFacts, report: PartitionReport) -> None:
        unsigned = len(facts.offsets) - facts.covered
        if unsigned <= 0:
            return
        first, last = facts.offsets[facts.covered], facts.offsets[-1]
        problems = []
        if limit.records is not None and unsigned > limit.records:
            problems.append(f"more than {limit.records:,}")
        stamp = facts.tail_timestamp_ms
        if limit.seconds is not None and stamp is not None:
            age = now() - stamp / 1000
            if age > limit.seconds:
                problems.append(
                    f"the oldest (offset {first}) written {_age(age)} ago, longer than {limit.text}"
                )
        if problems:
            report.findings.append(
                Finding(
                    UNSIGNED_TAIL,
                    facts.partition,
                    first,
                    f"{unsigned:,} records (offsets {first}..{last}) are covered by no signed "
                    f"checkpoint, {'; '.join(problems)}: the checkpointer is behind or "
                    "stopped, or they were written where it never saw them",
                )
            )

    return check


def verify_witnessed(
    log: Log,
    keyring: Keyring,
    *,
    witness: WitnessState | None = None,
    tail: TailLimit | None = None,
    pin: bool = True,
    prefix: str = DEFAULT_PREFIX,
    partitions: list[int] | None = None,
    offsets: tuple[int | None, int | None] = (None, None),
    progress: Callable[[str], None] = lambda _message: None,
    checks: Sequence[PartitionCheck] = (),
    now: Callable[[], float] = time.time,
) -> VerifyReport:
    """`verify_log` plus the witness (``pin``: also hold the keyring to the pinned one)
    and the unsigned-tail limit."""
    all_checks = list(checks)
    if witness is not None:
        trusted = not pin or witness.fingerprint == keyring.fingerprint()
        all_checks.append(witness_check(witness, keyring, trusted=trusted, repinning=not pin))
    if tail is not None:
        all_checks.append(tail_check(tail, now))
    report = verify_log(
        log,
        keyring,
        prefix=prefix,
        partitions=partitions,
        offsets=offsets,
        progress=progress,
        checks=all_checks,
    )
    if witness is not None:
        # A witness that holds checkpoints but no pin (its keyring entry removed) must not
        # turn the keyring check, and with it the check of its own entries, off.
        if pin and (witness.fingerprint is not None or witness.count):
            report.log_findings.extend(keyring_findings(witness, keyring))
        present = {p.partition for p in report.partitions}
        for partition in sorted(witness.checkpoints):
            if partitions is None and partition not in present:
                report.log_findings.append(
                    Finding(
                        ROLLBACK,
                        partition,
                        None,
                        f"{witness.newest(partition):,} records of partition {partition} were "
                        "witnessed, but the log has no such partition",
                    )
                )
    return report


@dataclass
class AnchorReport:
    witness: str
    fingerprint: str
    pinned: bool  # this run pinned the keyring (first use, or --repin-keyring)
    witnessed_before: int
    anchored: list[dict[str, Any]]
    verify: VerifyReport

    @property
    def ok(self) -> bool:
        return not self.verify.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "witness": self.witness,
            "keyring_fingerprint": self.fingerprint,
            "pinned": self.pinned,
            "witnessed_before": self.witnessed_before,
            "anchored": self.anchored,
            "records": self.verify.records,
            "seconds": round(self.verify.seconds, 3),
            "findings": [asdict(f) for f in self.verify.findings],
        }


def anchor(
    log: Log,
    keyring: Keyring,
    witness: Witness,
    *,
    prefix: str = DEFAULT_PREFIX,
    repin: bool = False,
    log_name: str = "",
    progress: Callable[[str], None] = lambda _message: None,
    now: Callable[[], float] = time.time,
) -> AnchorReport:
    """Copy every checkpoint newer than the witness holds to it. Only when the whole log
    verifies — against its own checkpoints and against everything witnessed before, under
    the pinned keyring (or, with ``repin``, this one) — so a witness never takes a
    rolled-back, rewritten or re-signed history; otherwise nothing is written and the
    report carries the findings."""
    state = load(witness)
    fingerprint = keyring.fingerprint()
    valid: dict[int, dict[int, Checkpoint]] = {}

    def collect(facts: PartitionFacts, _report: PartitionReport) -> None:
        valid[facts.partition] = facts.valid

    report = verify_witnessed(
        log,
        keyring,
        witness=state,
        pin=not repin,
        prefix=prefix,
        progress=progress,
        checks=[collect],
    )
    result = AnchorReport(witness.name, fingerprint, False, state.count, [], report)
    if report.findings:
        return result
    at = dt.datetime.fromtimestamp(now(), dt.UTC)
    entries = []
    if state.fingerprint != fingerprint:
        entries.append(keyring_entry(keyring, at))
        result.pinned = True
    for partition in sorted(valid):
        newest = state.newest(partition)
        for count in sorted(c for c in valid[partition] if c > newest):
            held = Witnessed.of_datum(valid[partition][count][1])
            entries.append(held.to_entry(at, log_name))
            result.anchored.append(
                {
                    "partition": partition,
                    "record_count": count,
                    "last_offset": held.last_offset,
                    "merkle_root": held.merkle_root.hex(),
                    "signed_at": held.signed_at,
                }
            )
    if entries:
        progress(f"anchoring {len(result.anchored)} checkpoints to {witness.name}")
        witness.append(entries, _summary(result))
    return result


def _summary(result: AnchorReport) -> str:
    """The Git commit message of one anchoring."""
    newest: dict[int, int] = {}
    for item in result.anchored:
        newest[item["partition"]] = max(newest.get(item["partition"], 0), item["record_count"])
    lines = [f"anchor {len(result.anchored)} checkpoint(s)"]
    if result.pinned:
        lines.append(f"pin keyring {result.fingerprint}")
    lines += [f"partition {p}: {n} records" for p, n in sorted(newest.items())]
    return lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n"
