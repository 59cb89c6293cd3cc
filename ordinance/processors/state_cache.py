"""A local cache of partition states (RocksDB via rocksdict), each stored with the
decisions offset it reflects, so a restarted enforcer folds only the tail of the log.

The log stays the truth: a cached state is a fold of ``decisions[p]`` up to its offset,
and the takeover continues the fold from there to the enforcer's own marker. A cache
from another log (different topic) is never used, and a cache whose offset lies beyond
the partition's records is ignored (the topic was recreated): the fold starts from
the beginning instead.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from rocksdict import Rdict

from ordinance.processors.enforcer_state import PartitionState

FORMAT = 2  # bump when PartitionState's fields change: older snapshots are then ignored


class StateCache:
    def __init__(self, directory: Path, decisions_topic: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(directory))
        self._topic = decisions_topic

    def _key(self, partition: int) -> bytes:
        return f"{self._topic}/{partition}".encode()

    def load(self, partition: int) -> PartitionState | None:
        raw = self._db.get(self._key(partition))
        if not isinstance(raw, bytes):
            return None
        try:
            version, state = pickle.loads(raw)  # our own file, written below
        except Exception:
            return None  # unreadable: rebuild from the log
        if (
            version != FORMAT
            or not isinstance(state, PartitionState)
            or state.partition != partition
        ):
            return None
        return state

    def save(self, state: PartitionState) -> None:
        self._db[self._key(state.partition)] = pickle.dumps(
            (FORMAT, state), protocol=pickle.HIGHEST_PROTOCOL
        )

    def close(self) -> None:
        self._db.close()
