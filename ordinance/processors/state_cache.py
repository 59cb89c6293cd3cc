"""A local cache of partition states (RocksDB via rocksdict), each an incremental snapshot
stored with the decisions offset it reflects, so a restarted enforcer folds only the tail.

The log stays the truth: a snapshot is a fold of ``decisions[p]`` up to its offset, and
the takeover continues the fold from there to the enforcer's own marker. A snapshot that
does not decode exactly (a value that does not parse, a missing header, another format
version, an entry missing or extra) is not used; one whose offset lies beyond the
partition's records is ignored (the topic was recreated); and one whose last record is not
the log's record at that offset (the chain over it does not give the snapshot's head: a
reused directory, another log with the same topic names) is detected when the takeover
reads that record (`enforcer._matches`). In each case the fold starts from the beginning
and the next save rewrites the partition's snapshot whole.

A save writes only what changed since the last one (`state_changes`), key by key, in one
RocksDB write batch together with the header that names the offset and chain head they
reflect: the batch is atomic, so a process killed during a save leaves the old snapshot
or the new one, never a mix (`state_snapshot` has the layout).

RocksDB reports every failure (a full disk, a read-only directory, a lock held by
another enforcer) as a bare ``Exception``; here each becomes a `StateCacheError` that
says which cache and which operation failed, with RocksDB's message and the original
chained.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from rocksdict import Options, Rdict, ReadOptions, WriteBatch

from ordinance.errors import OrdinanceError
from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.state_changes import StateChanges
from ordinance.processors.state_snapshot import (
    FORMAT,
    CorruptSnapshot,
    Layout,
    Snapshot,
    decode_snapshot,
    write_delta,
    write_whole,
)

__all__ = ["FORMAT", "StateCache", "StateCacheError"]


class StateCacheError(OrdinanceError):
    """The enforcer's local state cache (``serve --state-dir``) could not be opened,
    written or closed: out of space, read-only, or in use by another process. The log
    is unaffected; restart with space (or without ``--state-dir``) and the takeover
    refolds from the log."""


#: RocksDB's memtable (write buffer) size. Its default, 64 MiB (and up to two of them, one
#: being flushed), is more than the cache's whole state: every id and window event is
#: written once and range-deleted a horizon later, and the memtable keeps both until it
#: flushes, so a serve at 2k actions/s grew by ~10 MiB/min for six minutes before each
#: flush, and the allocator kept much of what a flush freed (bench/soak.py). A few MiB
#: still batches many saves per flush; the saved state lives in SST files.
WRITE_BUFFER_BYTES = 8 * 2**20
MAX_WRITE_BUFFERS = 2


def _options() -> Options:
    options = Options(raw_mode=True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(MAX_WRITE_BUFFERS)
    return options


def _open(directory: Path) -> Rdict:
    # Keys and values are our own bytes (raw mode). A cache written before incremental
    # snapshots (format 9 and older: one pickled state per partition, rocksdict's typed
    # mode) holds nothing this format can use: it is discarded rather than mixed in.
    config = directory / "rocksdict-config.json"
    if config.exists() and not json.loads(config.read_text()).get("raw_mode"):
        Rdict.destroy(str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    return Rdict(str(directory), _options())


class StateCache:
    def __init__(
        self,
        directory: Path,
        decisions_topic: str,
        progress: Callable[[str], None] = lambda _message: None,
    ) -> None:
        """``progress`` hears why a snapshot was not used (it is then rebuilt)."""
        self._directory = directory
        try:
            self._db = _open(directory)
        except Exception as exc:  # rocksdict raises bare Exception; OSError from mkdir
            raise StateCacheError(f"cannot open the state cache at {directory}: {exc}") from exc
        self._topic = decisions_topic
        self._progress = progress
        # Marks a state this cache saved or loaded: a state another cache wrote is saved
        # whole here, never as a delta against a snapshot this cache does not hold.
        self._token = uuid.uuid4().hex

    def _layout(self, partition: int) -> Layout:
        return Layout(f"{self._topic}/{partition}/".encode())

    def _scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) with start <= key < end, in key order."""
        options = ReadOptions()
        options.set_iterate_upper_bound(end)
        # items() walks the iterator in Rust: a third of the cost of key()/value()/next().
        yield from self._db.items(from_key=start, read_opt=options)

    def load(self, partition: int) -> PartitionState | None:
        """The partition's snapshot as a state (it then tracks its changes against it),
        or None when there is none or it cannot be trusted to decode exactly."""
        layout = self._layout(partition)
        try:
            header = self._db.get(layout.header)
            if not isinstance(header, bytes):
                return None
            snapshot = Snapshot(
                layout,
                header,
                ids=self._scan(*layout.ids_range),
                windows=self._scan(*layout.windows_range),
                pending=self._scan(*layout.pending_range),
                trust=self._db.get(layout.trust),
                installed=self._scan(*layout.installed_range),
            )
            try:
                return decode_snapshot(partition, snapshot, self._token)
            except CorruptSnapshot as why:
                self._progress(
                    f"the state cache of partition {partition} is not usable ({why}); "
                    "refolding from the log"
                )
                return None
        except Exception as exc:
            raise StateCacheError(
                f"cannot read partition {partition} from the state cache at {self._directory}:"
                f" {exc}"
            ) from exc

    def save(self, state: PartitionState) -> None:
        """Write what changed since this cache last saved or loaded ``state`` — or the
        whole state, when it did neither — in one atomic batch with its header."""
        layout = self._layout(state.partition)
        batch = WriteBatch(raw_mode=True)
        changes = state.changes
        if changes is not None and changes.mark.cache == self._token:
            mark = write_delta(batch, layout, state, changes)
        else:
            mark = None
        if mark is None:  # nothing saved here yet, or the notes do not add up
            batch = WriteBatch(raw_mode=True)
            mark = write_whole(batch, layout, state, self._token)
        if batch.len() > 0:
            try:
                self._db.write(batch)
            except Exception as exc:  # e.g. "IO error: No space left on device"
                raise StateCacheError(
                    f"cannot write partition {state.partition} to the state cache at"
                    f" {self._directory}: {exc}"
                ) from exc
        # Only once the batch is written: a failed save keeps the notes for the next one.
        state.changes = StateChanges(mark)

    def close(self) -> None:
        try:
            self._db.close()
        except Exception as exc:
            raise StateCacheError(
                f"cannot close the state cache at {self._directory}: {exc}"
            ) from exc
