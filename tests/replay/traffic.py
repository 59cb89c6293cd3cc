"""Recorded traffic without a broker: actions decided by the enforcer's own ``decide`` and
``fold`` (what `Enforcer.step` does per action; replay verify re-decides with the same
two), held as encoded records in memory — and an oracle that evaluates requests directly
with brute-force window sums."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from ordinance.policy.ruleset import Ruleset
from ordinance.processors.enforcer_state import PartitionState, decide
from ordinance.processors.identity_gate import INTENT_CODES
from ordinance.streams import ConsumedRecord, partition_for
from ordinance.streams.serde import Decoded, Serde
from ordinance.wire import request_from_wire, request_to_wire

PARTITIONS = 2


class MemorySource:
    label = "memory"

    def __init__(self) -> None:
        self.topics: dict[tuple[str, int], list[ConsumedRecord]] = {}

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes) -> int:
        records = self.topics.setdefault((topic, partition), [])
        records.append(ConsumedRecord(topic, partition, len(records), key, value, (), 0))
        return len(records) - 1

    def partitions(self, topic: str) -> list[int]:
        return sorted(p for t, p in self.topics if t == topic)

    def sizes(self, topic: str) -> dict[int, int]:
        return {p: len(records) for (t, p), records in self.topics.items() if t == topic}

    def read(self, topic: str, partition: int, *, headers: bool = True) -> Iterator[ConsumedRecord]:
        yield from self.topics.get((topic, partition), [])


def record_traffic(
    ruleset: Ruleset, requests: Sequence[tuple[dict[str, Any], dt.datetime]]
) -> MemorySource:
    """Decide each request as the enforcer would (one swap to ``ruleset`` first)."""
    serde = Serde()
    source = MemorySource()
    states = {p: PartitionState(p) for p in range(PARTITIONS)}
    for p, state in states.items():
        swap = {
            "enforcer_id": "e",
            "partition": p,
            "bundle_id": ruleset.bundle_id,
            "previous_bundle_id": None,
            "policy_offset": 1,
            "at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            "prev_hash": None,
            "hash": None,
        }
        offset = source.append("agent.decisions", p, None, serde.encode("RulesetSwap", swap))
        state.fold("RulesetSwap", swap, offset)
    for n, (request, at) in enumerate(requests):
        key = request["agent"]["id"].encode()
        p = partition_for(key, PARTITIONS)
        wire = request_to_wire(request, request_id=f"r{n}", event_time=at, client_id="test")
        action_offset = source.append("agent.actions", p, key, serde.encode("ActionRequest", wire))
        decoded = serde.decode(serde.encode("ActionRequest", wire))
        assert isinstance(decoded, Decoded)
        datum = decide(
            states[p],
            ruleset,
            decoded,
            action_offset=action_offset,
            agent_key=key,
            enforcer_id="e",
            evaluated_at=at,
        )
        assert datum is not None
        offset = source.append("agent.decisions", p, key, serde.encode("Decision", datum))
        states[p].fold("Decision", datum, offset)
    return source


class BruteWindows:
    """window.count / window.sum by scanning a list: the meaning in policy/window.py,
    computed the slowest obvious way."""

    def __init__(self, history: list[tuple[str, str, dict[str, Any], float]], now: float) -> None:
        self.history = history
        self.now = now

    def _events(self, agent_id: str, tool: str, seconds: int) -> list[dict[str, Any]]:
        return [
            args
            for agent, t, args, at in self.history
            if agent == agent_id and t == tool and self.now - seconds < at <= self.now
        ]

    def count(self, agent_id: str, tool: str, seconds: int) -> int:
        return len(self._events(agent_id, tool, seconds))

    def sum(self, agent_id: str, tool: str, arg: str, seconds: int) -> int | Decimal:
        total: int | Decimal = 0
        for args in self._events(agent_id, tool, seconds):
            value = args.get(arg)
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                total += value
        return total


def direct_changes(source: Any, candidate: Ruleset) -> tuple[set[str], int]:
    """Request ids whose effect the candidate changes, by evaluating every recorded action
    directly against the recorded allowed decisions before it; and how many were evaluated."""
    serde = Serde()
    changed: set[str] = set()
    evaluated = 0
    for p in source.partitions("agent.decisions"):
        actions = {r.offset: r for r in source.read("agent.actions", p)}
        history: list[tuple[str, str, dict[str, Any], float]] = []
        for record in source.read("agent.decisions", p):
            decoded = serde.decode_record(record)
            if not isinstance(decoded, Decoded) or decoded.name != "Decision":
                continue
            old = decoded.value
            if old["code"] in INTENT_CODES:
                continue  # its agent did not sign it: denied whatever the bundle (whatif skips it)
            action = serde.decode_record(actions[old["action_offset"]])
            assert isinstance(action, Decoded)
            now = action.value["event_time"].timestamp()
            new = candidate.evaluate(request_from_wire(action.value), BruteWindows(history, now))
            evaluated += 1
            if new.effect != old["effect"]:
                changed.add(old["request_id"])
            if old["effect"] == "allow" and old["tool"]:
                history.append(
                    (old["agent_id"], old["tool"], old["args"], old["event_time"].timestamp())
                )
    return changed, evaluated
