"""A local cache of partition states (RocksDB via rocksdict), each stored with the
decisions offset it reflects, so a restarted enforcer folds only the tail of the log.

The log stays the truth: a cached state is a fold of ``decisions[p]`` up to its offset,
and the takeover continues the fold from there to the enforcer's own marker. A cache
from another log (different topic) is never used; a cache whose offset lies beyond the
partition's records is ignored (the topic was recreated); and a cache whose last record
is not the log's record at that offset (the chain over it does not give the cached
head: a reused directory, another log with the same topic names) is detected when the
takeover reads that record, and the fold starts from the beginning instead.

RocksDB reports every failure (a full disk, a read-only directory, a lock held by
another enforcer) as a bare ``Exception``; here each becomes a `StateCacheError` that
says which cache and which operation failed, with RocksDB's message and the original
chained.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from rocksdict import Rdict

from ordinance.errors import OrdinanceError
from ordinance.processors.enforcer_state import PartitionState

FORMAT = 9  # bump when PartitionState's fields change: older snapshots are then ignored


class StateCacheError(OrdinanceError):
    """The enforcer's local state cache (``serve --state-dir``) could not be opened,
    written or closed: out of space, read-only, or in use by another process. The log
    is unaffected; restart with space (or without ``--state-dir``) and the takeover
    refolds from the log."""


class StateCache:
    def __init__(self, directory: Path, decisions_topic: str) -> None:
        self._directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._db = Rdict(str(directory))
        except Exception as exc:  # rocksdict raises bare Exception; OSError from mkdir
            raise StateCacheError(f"cannot open the state cache at {directory}: {exc}") from exc
        self._topic = decisions_topic

    def _key(self, partition: int) -> bytes:
        return f"{self._topic}/{partition}".encode()

    def load(self, partition: int) -> PartitionState | None:
        try:
            raw = self._db.get(self._key(partition))
        except Exception as exc:
            raise StateCacheError(
                f"cannot read partition {partition} from the state cache at {self._directory}:"
                f" {exc}"
            ) from exc
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
        value = pickle.dumps((FORMAT, state), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._db[self._key(state.partition)] = value
        except Exception as exc:  # e.g. "IO error: No space left on device"
            raise StateCacheError(
                f"cannot write partition {state.partition} to the state cache at"
                f" {self._directory}: {exc}"
            ) from exc

    def close(self) -> None:
        try:
            self._db.close()
        except Exception as exc:
            raise StateCacheError(
                f"cannot close the state cache at {self._directory}: {exc}"
            ) from exc
