"""What changed in a partition state since the state cache last saved it (dirty tracking).

The state cache (`state_cache`) keeps a partition's snapshot key by key: one key per
remembered request id, per window event, per pending approval. To save only what changed,
the fold notes each change here as it makes it — a few counters, sets and a list, reset at
every save — instead of the cache comparing a whole state against the snapshot. A state
that no cache holds has no `StateChanges` (``PartitionState.changes`` is None), so replay,
tests and an enforcer without ``--state-dir`` keep nothing.

The notes are enough because of how the state changes (``enforcer_state``,
``state_horizon``): request ids are appended to ``decided`` and forgotten from its front;
an id decided again keeps its place and only its time changes; window events are recorded
one by one and dropped by time boundaries; pending approvals are set and removed by id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# An allowed action folded into the windows: (event time, agent id, tool, arguments).
WindowEvent = tuple[float, str, str, Mapping[str, Any]]


@dataclass
class SnapshotMark:
    """Where a state's snapshot stands in the cache that wrote or read it last."""

    cache: str  # the token of that `StateCache` (another cache's snapshot is not this one)
    ids_first: int  # sequence number of the first remembered request id in the snapshot
    ids_next: int  # sequence number the next new request id gets
    window_next: int  # sequence number the next window event gets (orders equal times)
    # The registry object saved, and how many of its installed records the snapshot has:
    # installed records are only appended, and a takeover with a new trust root replaces
    # the object (`identity_gate.takeover_identity`).
    identity: object | None
    identity_installed: int
    header: bytes  # the header as written: an unchanged state writes nothing


@dataclass
class StateChanges:
    mark: SnapshotMark
    ids_added: int = 0  # request ids new to ``decided`` (appended at its end)
    ids_forgotten: int = 0  # ids dropped from the front of ``decided`` by the horizon
    # Ids decided again (an approval's follow-up): same place in ``decided``, a new time.
    ids_updated: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)  # pending approvals set or answered
    # Window events recorded, and window prune boundaries (floats), in fold order: an
    # event recorded before a prune that drops it is not saved, one recorded after is.
    window_log: list[WindowEvent | float] = field(default_factory=list)
