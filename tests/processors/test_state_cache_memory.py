"""The state cache's RocksDB memory stays bounded however much the enforcer saves.

Every remembered request id and window event is written once and range-deleted a
horizon later; RocksDB's memtable keeps both until it flushes. With its default size
(64 MiB, two of them) a serve at 2k actions/s grew by ~10 MiB/min for minutes before
each flush (bench/soak.py); the cache bounds it (`state_cache.WRITE_BUFFER_BYTES`).
"""

from __future__ import annotations

from pathlib import Path

from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.state_cache import MAX_WRITE_BUFFERS, WRITE_BUFFER_BYTES, StateCache

MEMTABLES = "rocksdb.cur-size-all-mem-tables"


def _state(partition: int, ids: int) -> PartitionState:
    state = PartitionState(partition)
    for n in range(ids):
        state.decided[f"request-{partition:04d}-{n:08d}-{'x' * 16}"] = 1_700_000_000.0 + n
    return state


def test_memtables_stay_bounded_after_many_saves(tmp_path: Path) -> None:
    cache = StateCache(tmp_path / "state", "agent.decisions")
    try:
        batch_ids, saves = 30_000, 12  # ~3 MiB of entries a save, ~35 MiB in all
        largest = 0
        for partition in range(saves):
            cache.save(_state(partition, batch_ids))  # saved whole: new to this cache
            largest = max(largest, cache._db.property_int_value(MEMTABLES) or 0)
        # What the saves wrote is far more than the bound: without one it all stays in
        # memory until a 64 MiB memtable fills.
        one_save = 4 * 2**20
        assert largest <= MAX_WRITE_BUFFERS * WRITE_BUFFER_BYTES + one_save, largest
        # And flushing lost nothing: a snapshot reads back whole.
        loaded = cache.load(3)
        assert loaded is not None and len(loaded.decided) == batch_ids
    finally:
        cache.close()
