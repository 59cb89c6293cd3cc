"""The monitor's two bounded views for the dashboard, folded with the counts (`fold`):
the rollout timeline and the latest denials. Each keeps the N greatest of its records
under a key fixed by the record itself, so the same records give the same view in
whatever order the partitions are read (docs/monitor.md, "Dashboard")."""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass, field
from typing import Any

#: Entries of the rollout timeline and deny decisions the fold keeps (the latest ones).
TIMELINE_LIMIT = 200
DENIALS_LIMIT = 50
#: Characters of a log string (tool, agent, reason, detail) a denial keeps.
TEXT_LIMIT = 300


def _clip(text: Any) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= TEXT_LIMIT else value[: TEXT_LIMIT - 1] + "…"


TimelineKey = tuple[int, int, str, int, int, int]


@dataclass
class Timeline:
    """The rollout timeline: the ``limit`` greatest entries under a fixed key
    ``(policy offset, rank, identity, time µs, partition, offset)`` — rank 1 a swap
    (identity: what it put in force), 2 a canary alert (rank 0 is left to the rollbacks
    the monitor process adds, `http.report`). Every swap of one change on every partition
    merges into one entry; an entry whose key falls below the ``limit`` greatest seen is
    dropped and never comes back."""

    limit: int = TIMELINE_LIMIT
    entries: dict[TimelineKey, dict[str, Any]] = field(default_factory=dict)
    _heap: list[TimelineKey] = field(default_factory=list)

    def _slot(self, key: TimelineKey) -> bool:
        """Make room for ``key``; False when it is not among the greatest."""
        if key in self.entries or len(self._heap) < self.limit:
            return True
        if key < self._heap[0]:
            return False
        del self.entries[heapq.heappop(self._heap)]
        return True

    def _add(self, key: TimelineKey, entry: dict[str, Any]) -> None:
        heapq.heappush(self._heap, key)
        self.entries[key] = entry

    def swap(self, partition: int, datum: dict[str, Any]) -> None:
        mode = str(datum.get("mode") or "stable")
        candidate = datum.get("candidate_bundle_id") if mode != "stable" else None
        percent = int(datum.get("canary_percent") or 0) if mode == "canary" else 0
        auto = bool(datum.get("auto_rollback")) and mode == "canary"
        bundle, at = str(datum["bundle_id"]), datum["at"]
        identity = f"{bundle}|{mode}|{candidate or ''}|{percent}|{auto}"
        key = (int(datum["policy_offset"]), 1, identity, 0, 0, 0)
        if not self._slot(key):
            return
        entry = self.entries.get(key)
        if entry is None:
            entry = {
                "event": "swap",
                "policy_offset": key[0],
                "at": at,
                "last_at": at,
                "bundle_id": bundle,
                "mode": mode,
                "candidate_bundle_id": candidate,
                "canary_percent": percent,
                "auto_rollback": auto,
                "partitions": [],
                "swaps": 0,
            }
            self._add(key, entry)
        entry["at"], entry["last_at"] = min(entry["at"], at), max(entry["last_at"], at)
        if partition not in entry["partitions"]:
            entry["partitions"] = sorted([*entry["partitions"], partition])
        entry["swaps"] += 1

    def alert(self, policy_offset: int, alert: dict[str, Any]) -> None:
        details = alert["details"]
        at: dt.datetime = alert["at"]
        micros = int(at.timestamp() * 1_000_000)
        key = (policy_offset, 2, "", micros, int(details["partition"]), int(details["offset"]))
        if key not in self.entries and self._slot(key):  # a record folded again adds nothing
            self._add(
                key,
                {
                    "event": alert["kind"],
                    "policy_offset": policy_offset,
                    "at": at,
                    "alert_id": alert["alert_id"],
                    "partition": details["partition"],
                    "candidate_bundle_id": alert["bundle_id"],
                    "message": alert["message"],
                    "opened_by": details.get("opened_by"),
                },
            )

    def items(self) -> list[tuple[TimelineKey, dict[str, Any]]]:
        return sorted(self.entries.items(), key=lambda item: item[0])


@dataclass
class RecentDenials:
    """The ``limit`` deny decisions with the latest (evaluation time, partition, offset):
    a min-heap, so a record older than all kept is dropped — the same denials whatever
    order the partitions were read in. It keeps the decoded records (the fold does not
    change them) and builds what the report shows only when asked."""

    limit: int = DENIALS_LIMIT
    # (evaluation time, partition, offset, arrival: never equal, datum)
    _heap: list[tuple[float, int, int, int, dict[str, Any]]] = field(default_factory=list)
    _seen: int = 0

    def add(self, partition: int, offset: int, datum: dict[str, Any]) -> None:
        at = datum["evaluated_at"].timestamp()
        self._seen += 1
        item = (at, partition, offset, self._seen, datum)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
        elif (at, partition, offset) > self._heap[0][:3]:
            heapq.heapreplace(self._heap, item)

    def latest(self) -> list[dict[str, Any]]:
        """Newest first."""
        return [_denial(p, o, d) for _, p, o, _, d in sorted(self._heap, reverse=True)]


def _denial(partition: int, offset: int, datum: dict[str, Any]) -> dict[str, Any]:
    reasons = datum.get("reasons") or []
    return {
        "at": datum["evaluated_at"],
        "partition": partition,
        "offset": offset,
        "request_id": _clip(datum.get("request_id")),
        "agent_id": _clip(datum.get("agent_id")),
        "tool": _clip(datum.get("tool")),
        "code": _clip(datum.get("code")),
        "rule_ids": [_clip(r) for r in (datum.get("rule_ids") or [])[:10]],
        "reason": _clip(reasons[0]) if reasons else None,
        "reasons": len(reasons),
        "detail": _clip(datum.get("detail")),
        "bundle_id": datum.get("bundle_id"),
        "arm": datum.get("arm"),
    }
