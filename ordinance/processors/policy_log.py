"""Policy lifecycle on the log: publishing bundles to ``policy.changes`` and the
controller loop that turns them into the ``policy.active`` table.

Only the ``Log`` protocol is used here (no broker client), so the same code runs on the
embedded log and on Kafka.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ordinance.processors.controller import ControllerState, Output, apply_change, rejection
from ordinance.streams import Log, Record, TopicPartition
from ordinance.streams.serde import Decoded, Serde
from ordinance.streams.topics import (
    DEFAULT_PREFIX,
    MONITOR_ALERTS,
    POLICY_ACTIVE,
    POLICY_CHANGES,
    ensure_topics,
)

Clock = Callable[[], float]


def _at(clock: Clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock(), dt.UTC)


@dataclass(frozen=True, slots=True)
class Published:
    bundle_id: str
    published_offset: int
    enforced_offset: int | None


def publish_bundle(
    log: Log,
    files: Mapping[str, str],
    bundle_id: str,
    *,
    actor: str,
    target: str = "default",
    reason: str | None = None,
    git_commit: str | None = None,
    enforce: bool = True,
    prefix: str = DEFAULT_PREFIX,
    clock: Clock = time.time,
    checks: Mapping[str, Any] | None = None,
) -> Published:
    """Append ``published`` (with the files and the ``checks`` the publisher ran or
    bypassed: a ``PublishChecks`` datum) and, unless told not to, ``enforced`` events."""
    serde = Serde()
    topic = ensure_topics(log, prefix)[POLICY_CHANGES].name
    at = _at(clock)
    base = {
        "bundle_id": bundle_id,
        "actor": actor,
        "at": at,
        "reason": reason,
        "git_commit": git_commit,
        "canary_percent": None,
        "previous_bundle_id": None,
        "files": [],
    }
    events = [
        {
            **base,
            "event": "published",
            "target": None,
            "files": [{"path": p, "content": c} for p, c in sorted(files.items())],
            "checks": dict(checks) if checks is not None else None,
        }
    ]
    if enforce:
        events.append({**base, "event": "enforced", "target": target})
    records = [
        Record(bundle_id.encode(), serde.encode("PolicyChange", e), (), int(at.timestamp() * 1000))
        for e in events
    ]
    delivered = log.produce(topic, records)
    return Published(bundle_id, delivered[0].offset, delivered[1].offset if enforce else None)


@dataclass
class ControllerReport:
    applied: int = 0
    rejected: int = 0
    written: int = 0


def run_controller(
    log: Log,
    *,
    prefix: str = DEFAULT_PREFIX,
    group: str = "ordinance.controller",
    once: bool = False,
    stop: threading.Event | None = None,
    clock: Clock = time.time,
    progress: Callable[[str], None] = lambda _message: None,
) -> ControllerReport:
    """Process ``policy.changes`` from the group's committed offset. The state is first
    rebuilt by folding what was already processed (its outputs are in ``policy.active``
    already); each change's outputs are then written together with its offset commit.
    ``once`` stops when the changes present at start are processed."""
    serde = Serde()
    specs = ensure_topics(log, prefix)
    changes, topics = (
        specs[POLICY_CHANGES].name,
        {"active": specs[POLICY_ACTIVE].name, "alerts": specs[MONITOR_ALERTS].name},
    )
    tp = TopicPartition(changes, 0)
    state = ControllerState()
    report = ControllerReport()
    with log.consumer(group, relaxed=True) as consumer:
        committed = consumer.committed([tp]).get(tp) or 0
        last = -1
        for record in log.read_to_end(changes):
            last = record.offset
            if record.offset < committed:
                decoded = serde.decode_record(record, expect={"PolicyChange"})
                if isinstance(decoded, Decoded):
                    apply_change(state, decoded.value, record.offset, _at(clock))
        progress(
            f"controller: state rebuilt from {committed} change(s); {max(0, last + 1 - committed)} pending"
        )
        consumer.subscribe([changes])
        next_offset = committed
        while not (stop is not None and stop.is_set()):
            if once and next_offset > last:
                break
            for record in consumer.poll(max_records=100, timeout=0.5):
                if record.offset < next_offset:
                    continue  # redelivered after a rebalance: already applied
                decoded = serde.decode_record(record, expect={"PolicyChange"})
                now = _at(clock)
                if isinstance(decoded, Decoded):
                    outputs = apply_change(state, decoded.value, record.offset, now)
                else:
                    outputs = [
                        rejection(
                            f"undecodable change: {decoded.problem.value}: {decoded.detail}",
                            None,
                            record.offset,
                            now,
                        )
                    ]
                outputs, encoded = _encode_outputs(serde, topics, outputs, record.offset, now)
                rejected = any(o.topic == "alerts" for o in outputs)
                report.rejected += rejected
                report.applied += not rejected
                log.produce_and_commit(encoded, consumer, {tp: record.offset + 1})
                report.written += len(encoded)
                next_offset = record.offset + 1
                for o in outputs:
                    progress(
                        f"controller: change {record.offset}: {o.schema} {o.key.decode()}"
                        + (f" — {o.datum['message']}" if o.topic == "alerts" else "")
                    )
    return report


def _encode_outputs(
    serde: Serde, topics: Mapping[str, str], outputs: list[Output], offset: int, now: dt.datetime
) -> tuple[list[Output], list[tuple[str, Record]]]:
    """The outputs of one change and their records. If any output cannot be encoded, the
    change is rejected instead (one alert): an exception here would stop the controller
    at this record on every restart."""
    try:
        return outputs, [(topics[o.topic], _record(serde, o, now)) for o in outputs]
    except Exception as exc:
        reason = f"the change's outputs could not be encoded for the log: {type(exc).__name__}"
        alert = rejection(reason, None, offset, now)
        return [alert], [(topics[alert.topic], _record(serde, alert, now))]


def _record(serde: Serde, output: Output, now: dt.datetime) -> Record:
    return Record(
        output.key, serde.encode(output.schema, output.datum), (), int(now.timestamp() * 1000)
    )
