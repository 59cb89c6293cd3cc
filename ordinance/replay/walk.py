"""Walking one ``agent.decisions`` partition the way the enforcer folds it.

The enforcer's state when it decided the record at decisions offset k is the fold of
offsets < k: it folds each decision it makes before making the next, control records
(swaps, takeovers) sit between batches, and a takeover rebuilds exactly that fold. So the
walk yields every record with the state *before* it, then folds it with the enforcer's own
``PartitionState.fold`` (which leaves fenced writes out; each step says whether its record
is one). The actions a decision names are looked up by offset with a
cursor over ``agent.actions[p]`` that moves forward with them (decisions are written in
action order), keeping what it passes over for the "every action has a decision" check.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ordinance.policy.window import InMemoryWindows, Number
from ordinance.processors.enforcer_state import PartitionState
from ordinance.replay.source import Source
from ordinance.streams import ConsumedRecord
from ordinance.streams.serde import Decoded, Serde, UndecodableRecord


class ObservedWindows(InMemoryWindows):
    """The enforcer's window state, noting what an evaluation read (for findings:
    a decision does not carry the window values it saw, so replay shows them)."""

    def __init__(self, state: PartitionState) -> None:
        super().__init__(clock=state.event_time)
        self.reads: list[dict[str, Any]] | None = None

    def count(self, agent_id: str, tool: str, seconds: int) -> int:
        value = super().count(agent_id, tool, seconds)
        if self.reads is not None:
            self.reads.append(
                {"fn": "count", "agent": agent_id, "tool": tool, "seconds": seconds, "value": value}
            )
        return value

    def sum(self, agent_id: str, tool: str, arg: str, seconds: int) -> Number:
        value = super().sum(agent_id, tool, arg, seconds)
        if self.reads is not None:
            self.reads.append(
                {
                    "fn": "sum",
                    "agent": agent_id,
                    "tool": tool,
                    "arg": arg,
                    "seconds": seconds,
                    "value": value,
                }
            )
        return value


def new_state(partition: int) -> PartitionState:
    state = PartitionState(partition)
    state.windows = ObservedWindows(state)
    return state


@dataclass(slots=True)
class Step:
    record: ConsumedRecord
    decoded: Decoded | UndecodableRecord
    name: str | None  # the schema's short name; None when the record did not decode
    # Written by an enforcer that had lost the partition: the fold leaves it out, and so
    # does every check of what the enforcer decided (`enforcer_state`, "Fencing").
    fenced: bool = False

    @property
    def datum(self) -> dict[str, Any]:
        assert isinstance(self.decoded, Decoded)
        return self.decoded.value


def walk(source: Source, partition: int, state: PartitionState, serde: Serde) -> Iterator[Step]:
    """Every record of decisions[partition]; folded into ``state`` after the caller has
    seen it (a generator resumes only when the caller asks for the next)."""
    fold = state.fold
    for record in source.read("agent.decisions", partition, headers=False):
        decoded = serde.decode_record(record)
        if isinstance(decoded, Decoded):
            yield Step(record, decoded, decoded.name, state.fences(decoded.name, decoded.value))
            fold(decoded.name, decoded.value, record.offset)
        else:
            yield Step(record, decoded, None)
            state.offset = record.offset


class ActionCursor:
    """Actions of one partition by offset, read forward once."""

    def __init__(self, records: Iterator[ConsumedRecord]) -> None:
        self._records = records
        self.passed: dict[int, ConsumedRecord] = {}  # read but not (yet) named by a decision
        self.last_taken = -1
        self.taken: set[int] = set()  # offsets a decision already named

    def take(self, offset: int) -> ConsumedRecord | None:
        found = self.passed.pop(offset, None)
        if found is None:
            for record in self._records:
                if record.offset == offset:
                    found = record
                    break
                self.passed[record.offset] = record
                if record.offset > offset:
                    break
        if found is not None:
            self.last_taken = max(self.last_taken, offset)
            self.taken.add(offset)
        return found

    def unclaimed(self) -> Iterator[ConsumedRecord]:
        """Actions no decision named, in offset order (the rest of the partition too)."""
        yield from sorted(self.passed.values(), key=lambda r: r.offset)
        self.passed = {}
        yield from self._records
