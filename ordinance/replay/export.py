"""``replay export``: a slice of the log an auditor can replay offline.

What replay of a window needs, and nothing it does not:
- ``policy.changes``, ``policy.active``, ``monitor.alerts`` whole (small; bundle contents
  and the lifecycle);
- per decisions partition, every record from the start of the partition up to the last
  decision in the window — the state at the window's start is the fold of that prefix
  (window counters, decided requests, the swaps), so it travels as records, not as a
  snapshot the auditor would have to trust; with ``--agent`` only those agents'
  decisions and the control records;
- the actions with event time in the window (so a skipped action shows), and the
  approvals the window's follow-up decisions answer.
Records keep their bytes, offsets and headers (``source.write_slice``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from ordinance.replay.findings import Tick
from ordinance.replay.source import POLICY_TOPICS, Source, write_slice
from ordinance.replay.times import Window, decision_time
from ordinance.streams import ConsumedRecord
from ordinance.streams.serde import Decoded, Serde


def _short(record: ConsumedRecord, topic: str) -> ConsumedRecord:
    return record._replace(topic=topic)


def _partition_slice(
    source: Source,
    partition: int,
    window: Window,
    agents: Collection[str] | None,
    serde: Serde,
    counts: dict[str, int],
    tick: Tick,
) -> Iterator[ConsumedRecord]:
    # Two passes over the partition rather than holding it: the first finds the last
    # decision in the window (and other agents' decisions to leave out), the second copies.
    last_in_window = -1
    left_out: set[int] = set()
    request_ids: set[str] = set()
    action_offsets: set[int] = set()
    seen = 0
    for record in source.read("agent.decisions", partition):
        seen += 1
        if seen % 1000 == 0:
            tick(1000)
        decoded = serde.decode_record(record)
        if not isinstance(decoded, Decoded) or decoded.name != "Decision":
            continue
        datum = decoded.value
        if agents is not None and datum["agent_id"] not in agents:
            left_out.add(record.offset)
        elif decision_time(datum) in window:
            last_in_window = record.offset
            request_ids.add(datum["request_id"])
            if datum["action_offset"] is not None:
                action_offsets.add(datum["action_offset"])
    tick(seen % 1000)
    for record in source.read("agent.decisions", partition):
        if record.offset > last_in_window:
            break
        if record.offset not in left_out:
            counts["agent.decisions"] += 1
            yield _short(record, "agent.decisions")
    for record in source.read("agent.actions", partition):
        action = serde.decode_record(record, expect={"ActionRequest"})
        in_window = (
            isinstance(action, Decoded)
            and action.value["event_time"] in window
            and (agents is None or action.value["agent"]["id"] in agents)
        )
        if in_window or record.offset in action_offsets:
            counts["agent.actions"] += 1
            yield _short(record, "agent.actions")
    for record in source.read("agent.approvals", partition):
        approval = serde.decode_record(record, expect={"Approval"})
        if isinstance(approval, Decoded) and approval.value["request_id"] in request_ids:
            counts["agent.approvals"] += 1
            yield _short(record, "agent.approvals")


def export_slice(
    source: Source,
    out: Path,
    *,
    window: Window,
    agents: Collection[str] | None = None,
    tick: Tick = lambda _n: None,
) -> dict[str, Any]:
    """Write the slice; returns its metadata (also stored in the file)."""
    serde = Serde()
    counts = dict.fromkeys(("agent.decisions", "agent.actions", "agent.approvals"), 0)
    partitions = source.partitions("agent.decisions")

    def records() -> Iterator[ConsumedRecord]:
        for topic in POLICY_TOPICS:
            for partition in source.partitions(topic):
                for record in source.read(topic, partition):
                    counts[topic] = counts.get(topic, 0) + 1
                    yield _short(record, topic)
        for partition in partitions:
            yield from _partition_slice(source, partition, window, agents, serde, counts, tick)

    meta: dict[str, Any] = {
        "source": source.label,
        "window": window.to_json(),
        "agents": sorted(agents) if agents is not None else None,
        "partitions": partitions,
    }
    total = write_slice(out, records(), meta)
    return {**meta, "records": total, "counts": counts, "out": str(out)}
