"""RocksDB reports every failure as a bare ``Exception``: the state cache turns each into
a `StateCacheError` (an `OrdinanceError`) saying which cache and what failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ordinance.errors import OrdinanceError
from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.state_cache import StateCache, StateCacheError


class _FullDisk:
    """What rocksdict raises when the disk is full (the message is RocksDB's)."""

    def write(self, batch: Any) -> None:
        raise Exception("IO error: No space left on device: While appending to file: 000009.log")

    def close(self) -> None:
        raise Exception("IO error: No space left on device")


def test_out_of_space_is_a_state_cache_error(tmp_path: Path) -> None:
    cache = StateCache(tmp_path / "state", "ordinance.agent.decisions")
    real = cache._db
    cache._db = _FullDisk()  # type: ignore[assignment]
    try:
        with pytest.raises(StateCacheError, match="No space left on device") as raised:
            cache.save(PartitionState(partition=0))
        assert isinstance(raised.value, OrdinanceError)
        assert str(tmp_path / "state") in str(raised.value)
        assert type(raised.value.__cause__) is Exception  # RocksDB's own, chained
        with pytest.raises(StateCacheError, match="cannot close"):
            cache.close()
    finally:
        real.close()


def test_a_cache_that_cannot_be_opened_is_a_state_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateCacheError, match="cannot open the state cache"):
        StateCache(blocker / "state", "t")
