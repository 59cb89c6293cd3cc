"""The state cache's snapshot of one partition: its keys, and how a state is written to
them (whole, or the changes since the last save) and read back.

Every key of partition p of decisions topic T starts with ``T/p/`` (Kafka topic names
have no ``/``), then:

* ``h`` — the header: format version, the offset and chain heads the snapshot reflects,
  every scalar field of the state (bundle, rollout, takeover checks, owner, fencing
  count), the horizon, the windows' prune boundary, and how many entries of each kind
  follow (a snapshot missing one is refused, not used short);
* ``d`` + seq — a remembered request id and its time, ``decided`` in order: the seq of
  the i-th id is ``ids_first + i``, so forgetting ids from the front is one range delete;
* ``w`` + time + seq — an allowed action in the windows (agent, tool, arguments): key
  order is event-time order, ties in the order recorded, which is each series' order,
  and pruning the windows through a time is one range delete;
* ``p`` + request id — a decision awaiting approval;
* ``t`` — the registry's trust root, ``i`` + n — its n-th installed record.

Values are our own pickles and packed numbers (the directory is the enforcer's own, like
the old whole-state pickle). A save writes these in one RocksDB write batch, header
included: either all of it lands or none does.
"""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rocksdict import WriteBatch

from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.identity_gate import PartitionIdentity
from ordinance.processors.state_changes import SnapshotMark, StateChanges, WindowEvent
from ordinance.processors.state_horizon import Horizon

# Bump when the layout or PartitionState's fields change: older snapshots are refused.
FORMAT = 11
_PICKLE = pickle.HIGHEST_PROTOCOL
# The fields kept as entries of their own (or rebuilt), not in the header.
_NOT_SCALAR = {"partition", "decided", "pending", "windows", "identity", "horizon", "changes"}
_SCALARS = tuple(f.name for f in dataclasses.fields(PartitionState) if f.name not in _NOT_SCALAR)
_TIME = struct.Struct(">d")


class CorruptSnapshot(ValueError):
    """The snapshot does not decode to exactly the state that was saved."""


@dataclass(frozen=True)
class Layout:
    prefix: bytes  # b"T/p/"

    @property
    def header(self) -> bytes:
        return self.prefix + b"h"

    @property
    def trust(self) -> bytes:
        return self.prefix + b"t"

    def _range(self, tag: bytes) -> tuple[bytes, bytes]:
        return self.prefix + tag, self.prefix + bytes([tag[0] + 1])

    @property
    def everything(self) -> tuple[bytes, bytes]:
        return self.prefix, self.prefix[:-1] + b"0"  # "0" follows "/"

    @property
    def ids_range(self) -> tuple[bytes, bytes]:
        return self._range(b"d")

    @property
    def windows_range(self) -> tuple[bytes, bytes]:
        return self._range(b"w")

    @property
    def pending_range(self) -> tuple[bytes, bytes]:
        return self._range(b"p")

    @property
    def installed_range(self) -> tuple[bytes, bytes]:
        return self._range(b"i")

    def id_key(self, seq: int) -> bytes:
        return self.prefix + b"d" + seq.to_bytes(8, "big")

    def window_key(self, at: float, seq: int) -> bytes:
        return self.prefix + b"w" + _time_key(at) + seq.to_bytes(8, "big")

    def windows_through(self, boundary: float) -> bytes:
        """The end (exclusive) of the window keys dated at or before ``boundary``."""
        return self.prefix + b"w" + _time_key(boundary) + b"\xff" * 9

    def pending_key(self, request_id: str) -> bytes:
        return self.prefix + b"p" + _text(request_id)

    def installed_key(self, index: int) -> bytes:
        return self.prefix + b"i" + index.to_bytes(8, "big")


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _time_key(at: float) -> bytes:
    """Eight bytes whose order is the order of the floats (sign bit flipped for positive
    numbers, all bits for negative ones)."""
    bits = int.from_bytes(_TIME.pack(at), "big")
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return bits.to_bytes(8, "big")


def _time_of(key: bytes) -> float:
    bits = int.from_bytes(key, "big")
    bits = bits ^ (1 << 63) if bits >> 63 else bits ^ 0xFFFF_FFFF_FFFF_FFFF
    (at,) = _TIME.unpack(bits.to_bytes(8, "big"))
    return float(at)


def _id_value(request_id: str, at: float) -> bytes:
    return _TIME.pack(at) + _text(request_id)


def _header(state: PartitionState, ids_first: int, window_next: int) -> bytes:
    identity = state.identity
    return pickle.dumps(
        {
            "format": FORMAT,
            "partition": state.partition,
            "fields": {name: getattr(state, name) for name in _SCALARS},
            "horizon": dataclasses.asdict(state.horizon),
            "pruned_through": state.windows.pruned_through,
            "ids": (ids_first, ids_first + len(state.decided)),
            "windows": (state.windows.events(), window_next),
            "pending": len(state.pending),
            "identity": None
            if identity is None
            else (identity.registry_offset, len(identity.installed)),
        },
        protocol=_PICKLE,
    )


def _write_identity(batch: WriteBatch, layout: Layout, identity: PartitionIdentity) -> None:
    batch.put(layout.trust, pickle.dumps(identity.trust.to_wire(), protocol=_PICKLE))
    for index, entry in enumerate(identity.installed):
        batch.put(layout.installed_key(index), pickle.dumps(entry, protocol=_PICKLE))


def write_whole(
    batch: WriteBatch, layout: Layout, state: PartitionState, token: str
) -> SnapshotMark:
    """Replace the partition's snapshot with ``state``."""
    batch.delete_range(*layout.everything)
    for seq, (request_id, at) in enumerate(state.decided.items()):
        batch.put(layout.id_key(seq), _id_value(request_id, at))
    window_next = 0
    for agent_id, tool, at, args in state.windows.history():
        value = pickle.dumps((agent_id, tool, args), protocol=_PICKLE)
        batch.put(layout.window_key(at, window_next), value)
        window_next += 1
    for request_id, datum in state.pending.items():
        batch.put(layout.pending_key(request_id), pickle.dumps(datum, protocol=_PICKLE))
    if state.identity is not None:
        _write_identity(batch, layout, state.identity)
    header = _header(state, 0, window_next)
    batch.put(layout.header, header)
    return _mark(state, token, 0, window_next, header)


def _mark(
    state: PartitionState, token: str, ids_first: int, window_next: int, header: bytes
) -> SnapshotMark:
    identity = state.identity
    return SnapshotMark(
        cache=token,
        ids_first=ids_first,
        ids_next=ids_first + len(state.decided),
        window_next=window_next,
        identity=identity,
        identity_installed=len(identity.installed) if identity is not None else 0,
        header=header,
    )


def write_delta(
    batch: WriteBatch, layout: Layout, state: PartitionState, changes: StateChanges
) -> SnapshotMark | None:
    """Add to ``batch`` what turns the snapshot ``changes.mark`` describes into ``state``;
    None when the notes do not account for the state (then it is saved whole)."""
    mark = changes.mark
    decided = state.decided
    kept = mark.ids_next - mark.ids_first
    if len(decided) != kept + changes.ids_added - changes.ids_forgotten:
        return None
    ids_first = mark.ids_first + changes.ids_forgotten
    if changes.ids_forgotten:
        batch.delete_range(layout.id_key(mark.ids_first), layout.id_key(ids_first))
    # New ids are at the end of `decided` (the ones not forgotten since).
    new = min(changes.ids_added, len(decided))
    tail = list(itertools.islice(reversed(decided.items()), new))[::-1]
    tail_first = ids_first + len(decided) - new
    for offset, (request_id, at) in enumerate(tail):
        batch.put(layout.id_key(tail_first + offset), _id_value(request_id, at))
    updated = {r for r in changes.ids_updated if r in decided} - {r for r, _ in tail}
    if updated:  # rare (approvals' follow-ups): find their places in one pass
        for index, (request_id, at) in enumerate(decided.items()):
            if request_id in updated:
                batch.put(layout.id_key(ids_first + index), _id_value(request_id, at))
                updated.discard(request_id)
                if not updated:
                    break
    window_next = _write_windows(batch, layout, changes.window_log, mark.window_next)
    for request_id in changes.pending:
        datum = state.pending.get(request_id)
        if datum is None:
            batch.delete(layout.pending_key(request_id))
        else:
            batch.put(layout.pending_key(request_id), pickle.dumps(datum, protocol=_PICKLE))
    identity = state.identity
    if identity is not mark.identity:  # a takeover replaced (or removed) the registry
        batch.delete(layout.trust)
        batch.delete_range(*layout.installed_range)
        if identity is not None:
            _write_identity(batch, layout, identity)
    elif identity is not None:
        for index in range(mark.identity_installed, len(identity.installed)):
            entry = pickle.dumps(identity.installed[index], protocol=_PICKLE)
            batch.put(layout.installed_key(index), entry)
    header = _header(state, ids_first, window_next)
    if header != mark.header or batch.len() > 0:
        batch.put(layout.header, header)
    return _mark(state, mark.cache, ids_first, window_next, header)


def _write_windows(
    batch: WriteBatch, layout: Layout, log: list[WindowEvent | float], window_next: int
) -> int:
    """Replay the window notes: a prune drops the events noted before it (and, as a range
    delete, the snapshot's); events noted after the last prune are written after it, so
    a late event dated before the boundary is kept, as the windows keep it."""
    events: list[WindowEvent] = []
    boundary: float | None = None
    for entry in log:
        if isinstance(entry, float):
            boundary = entry
            events = [e for e in events if e[0] > entry]
        else:
            events.append(entry)
    if boundary is not None:
        batch.delete_range(layout.windows_range[0], layout.windows_through(boundary))
    for at, agent_id, tool, args in events:
        value = pickle.dumps((agent_id, tool, args), protocol=_PICKLE)
        batch.put(layout.window_key(at, window_next), value)
        window_next += 1
    return window_next


@dataclass
class Snapshot:
    """A partition's snapshot as read: the header and each kind of entry, in key order."""

    layout: Layout
    header: bytes
    ids: Iterable[tuple[bytes, bytes]]
    windows: Iterable[tuple[bytes, bytes]]
    pending: Iterable[tuple[bytes, bytes]]
    trust: bytes | None
    installed: Iterable[tuple[bytes, bytes]]


def decode_snapshot(partition: int, snapshot: Snapshot, token: str) -> PartitionState:
    """The state a snapshot holds, tracking its changes against it; `CorruptSnapshot`
    unless every entry decodes and the counts are the header's."""
    try:
        head = pickle.loads(snapshot.header)  # our own directory, written above
    except Exception as exc:
        raise CorruptSnapshot(f"the header does not decode: {exc}") from exc
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        found = head.get("format") if isinstance(head, dict) else None
        raise CorruptSnapshot(f"format {found}, not {FORMAT}")
    if head.get("partition") != partition:
        raise CorruptSnapshot(f"the header is partition {head.get('partition')}'s")
    try:
        state = PartitionState(partition, **head["fields"])
        state.horizon = Horizon(**head["horizon"])
        ids_first, ids_next = head["ids"]
        state.decided = _decided(_strip(snapshot, snapshot.ids), ids_first, ids_next)
        events, window_next = head["windows"]
        _fill_windows(
            state, _strip(snapshot, snapshot.windows), head["pruned_through"], events, window_next
        )
        state.pending = {
            key.decode("utf-8", "surrogatepass"): pickle.loads(value)
            for key, value in _strip(snapshot, snapshot.pending)
        }
        if len(state.pending) != head["pending"]:
            raise CorruptSnapshot(f"{len(state.pending)} pending approvals, not {head['pending']}")
        if head["identity"] is not None:
            state.identity = _identity(snapshot, *head["identity"])
    except CorruptSnapshot:
        raise
    except Exception as exc:  # a value that does not unpickle, a field that is not there
        raise CorruptSnapshot(f"an entry does not decode: {type(exc).__name__}: {exc}") from exc
    state.changes = StateChanges(
        SnapshotMark(
            cache=token,
            ids_first=ids_first,
            ids_next=ids_next,
            window_next=window_next,
            identity=state.identity,
            identity_installed=head["identity"][1] if head["identity"] is not None else 0,
            header=snapshot.header,
        )
    )
    return state


def _strip(
    snapshot: Snapshot, entries: Iterable[tuple[bytes, bytes]]
) -> Iterator[tuple[bytes, bytes]]:
    """Entries with their keys' partition prefix and kind tag removed."""
    skip = len(snapshot.layout.prefix) + 1
    for key, value in entries:
        yield key[skip:], value


def _decided(
    entries: Iterable[tuple[bytes, bytes]], first: int, nxt: int
) -> OrderedDict[str, float]:
    decided: OrderedDict[str, float] = OrderedDict()
    expected = first
    for key, value in entries:
        if len(key) != 8 or int.from_bytes(key, "big") != expected:
            raise CorruptSnapshot(f"request id entry {key.hex()} where {expected} was due")
        (at,) = _TIME.unpack_from(value)
        decided[value[_TIME.size :].decode("utf-8", "surrogatepass")] = at
        expected += 1
    if expected != nxt:
        raise CorruptSnapshot(f"request ids {first}..{expected}, not ..{nxt}")
    return decided


def _fill_windows(
    state: PartitionState,
    entries: Iterable[tuple[bytes, bytes]],
    pruned_through: float,
    events: int,
    window_next: int,
) -> None:
    state.windows.pruned_through = pruned_through
    count = 0
    for key, value in entries:
        if len(key) != 16 or int.from_bytes(key[8:], "big") >= window_next:
            raise CorruptSnapshot(f"window entry {key.hex()} is not one this snapshot wrote")
        agent_id, tool, args = pickle.loads(value)
        state.windows.record(agent_id, tool, args, _time_of(key[:8]))
        count += 1
    if count != events:
        raise CorruptSnapshot(f"{count} window events, not {events}")


def _identity(snapshot: Snapshot, registry_offset: int, installed: int) -> PartitionIdentity:
    if snapshot.trust is None:
        raise CorruptSnapshot("the registry's trust root is missing")
    entries = []
    for index, (key, value) in enumerate(_strip(snapshot, snapshot.installed)):
        if int.from_bytes(key, "big") != index:
            raise CorruptSnapshot(f"registry entry {key.hex()} where {index} was due")
        entries.append(pickle.loads(value))
    if len(entries) != installed:
        raise CorruptSnapshot(f"{len(entries)} registry records, not {installed}")
    identity = PartitionIdentity.__new__(PartitionIdentity)
    # Public keys do not pickle: the registry is rebuilt from its installed records.
    identity.__setstate__(
        {
            "trust": pickle.loads(snapshot.trust),
            "registry_offset": registry_offset,
            "installed": entries,
        }
    )
    return identity
