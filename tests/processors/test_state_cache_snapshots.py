"""Incremental snapshots (`state_snapshot`): what a state cache saves change by change
loads back as exactly the folded state; forgetting shows in the snapshot; a snapshot
that does not decode exactly is refused; and a save that fails or is killed half-way
leaves the snapshot before it."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rocksdict import Options, Rdict

from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.state_cache import StateCache, StateCacheError
from ordinance.processors.state_snapshot import FORMAT

from .snapshot_helpers import T0, content, decision, fold_run, swap, takeover

TOPIC = "ordinance.agent.decisions"
ROOT = Path(__file__).resolve().parents[2]

# One step of a fold sequence: a record to fold, a save, or a restart from the snapshot.
_step = st.one_of(
    st.tuples(
        st.just("decide"),
        st.integers(0, 30),  # request id: repeats are decided again (follow-ups)
        st.sampled_from(["allow", "deny", "require_approval", "approved"]),
        st.floats(0, 40),  # the clock advances this much: pruning every PRUNE_STEP_S
        st.floats(-90, 5),  # event time against the clock: late ones, older than pruned
        st.sampled_from(["a", "b"]),
        st.sampled_from(["pay", "refund"]),
    ),
    st.tuples(st.just("swap"), st.sampled_from([None, 10_000, 120_000])),
    st.tuples(st.just("takeover"), st.sampled_from([None, 30_000, 60_000])),
    st.just(("save",)),
    st.just(("restart",)),
)


def _apply(state: PartitionState, step: tuple[Any, ...], clock: list[float], offset: int) -> None:
    if step[0] == "decide":
        _, rid, effect, advance, late, agent, tool = step
        clock[0] += advance
        code = "approved" if effect == "approved" else "matched"
        datum = decision(
            f"r{rid}",
            effect="allow" if effect == "approved" else effect,
            code=code,
            event_time=clock[0] + late,
            evaluated_at=clock[0],
            agent=agent,
            tool=tool,
            amount=rid,
        )
        state.fold("Decision", datum, offset)
    elif step[0] == "swap":
        state.fold("RulesetSwap", swap(f"b{offset}", step[1]), offset)
    else:
        state.fold("EnforcerTakeover", takeover(step[1]), offset)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_step, max_size=60))
def test_saved_change_by_change_it_loads_as_the_folded_state(steps: list[Any]) -> None:
    """Any fold sequence, saved at any points and restarted from the snapshot at any
    points, loads as the state a fold of the same records without a cache reaches."""
    reference, clock_ref = PartitionState(2), [T0]
    with tempfile.TemporaryDirectory() as directory:
        cache = StateCache(Path(directory), TOPIC)
        try:
            state, clock = PartitionState(2), [T0]
            state.fold("EnforcerTakeover", takeover(), 0)
            reference.fold("EnforcerTakeover", takeover(), 0)
            for offset, step in enumerate(steps, start=1):
                if step[0] == "save":
                    cache.save(state)
                elif step[0] == "restart":
                    cache.save(state)
                    loaded = cache.load(2)
                    assert loaded is not None
                    assert content(loaded) == content(state)
                    state = loaded  # folds on from the snapshot, tracking against it
                else:
                    _apply(state, step, clock, offset)
                    _apply(reference, step, clock_ref, offset)
            cache.save(state)
            loaded = cache.load(2)
        finally:
            cache.close()
    assert loaded is not None
    assert content(loaded) == content(reference)


def _prefixed(db: Rdict, prefix: bytes) -> list[bytes]:
    return [k for k in db.keys(from_key=prefix) if isinstance(k, bytes) and k.startswith(prefix)]


def _keys(directory: Path, kind: bytes, partition: int = 0) -> int:
    db = Rdict(str(directory), Options(raw_mode=True))
    try:
        return len(_prefixed(db, f"{TOPIC}/{partition}/".encode() + kind))
    finally:
        db.close()


def test_forgotten_ids_and_pruned_window_events_leave_the_snapshot(tmp_path: Path) -> None:
    """A horizon of 5 s over 2 decisions/s: the snapshot holds what the state holds (a
    little over a minute of ids), not the whole run, saved every 50 records."""
    state, cache = PartitionState(0), StateCache(tmp_path, TOPIC)
    try:
        for start in range(0, 1200, 50):
            fold_run(state, start, start + 50)
            cache.save(state)
    finally:
        cache.close()
    assert state.horizon.pruned_at > T0 and len(state.decided) < 200  # ids were forgotten
    assert state.windows.pruned_through > T0  # and window history pruned
    assert _keys(tmp_path, b"d") == len(state.decided)
    assert _keys(tmp_path, b"w") == state.windows.events()
    assert _keys(tmp_path, b"p") == len(state.pending) > 0
    reference = PartitionState(0)
    fold_run(reference, 0, 1200)
    cache = StateCache(tmp_path, TOPIC)
    try:
        loaded = cache.load(0)
    finally:
        cache.close()
    assert loaded is not None and content(loaded) == content(reference)


def _saved(directory: Path, records: int) -> StateCache:
    state, cache = PartitionState(0), StateCache(directory, TOPIC)
    fold_run(state, 0, records)
    cache.save(state)
    return cache


def _corrupt(cache: StateCache, how: str) -> None:
    db, prefix = cache._db, f"{TOPIC}/0/".encode()
    keys = _prefixed(db, prefix)
    first = {kind: next(k for k in keys if k[len(prefix)] == ord(kind)) for kind in "dwp"}
    if how == "undecodable id":
        db[first["d"]] = b"\x01"
    elif how == "undecodable window event":
        db[first["w"]] = b"not a pickle"
    elif how == "missing window event":
        del db[first["w"]]
    elif how == "extra pending approval":
        db[prefix + b"pzz"] = db[first["p"]]
    elif how == "undecodable header":
        db[prefix + b"h"] = b"\x80garbage"
    elif how == "missing header":
        del db[prefix + b"h"]
    elif how == "another format":
        header = pickle.loads(db.get(prefix + b"h") or b"")
        header["format"] = FORMAT - 1
        db[prefix + b"h"] = pickle.dumps(header)


@pytest.mark.parametrize(
    "how",
    [
        "undecodable id",
        "undecodable window event",
        "missing window event",
        "extra pending approval",
        "undecodable header",
        "missing header",
        "another format",
    ],
)
def test_a_snapshot_that_does_not_decode_exactly_is_refused(tmp_path: Path, how: str) -> None:
    cache = _saved(tmp_path, 300)
    try:
        assert cache.load(0) is not None
        _corrupt(cache, how)
        notes: list[str] = []
        cache._progress = notes.append
        assert cache.load(0) is None
        assert how == "missing header" or any("not usable" in n for n in notes), notes
        # The state rebuilt from the log is saved whole over the broken snapshot.
        rebuilt = PartitionState(0)
        fold_run(rebuilt, 0, 320)
        cache.save(rebuilt)
        loaded = cache.load(0)
        assert loaded is not None and content(loaded) == content(rebuilt)
    finally:
        cache.close()


def test_a_save_that_fails_leaves_the_previous_snapshot_and_the_next_one_catches_up(
    tmp_path: Path,
) -> None:
    """A failure between building the batch and writing it (a full disk, a kill): the
    snapshot on disk is the previous save, whole; the state keeps its notes, so the next
    save writes everything since that snapshot."""
    state, cache = PartitionState(0), StateCache(tmp_path, TOPIC)
    try:
        fold_run(state, 0, 400)
        cache.save(state)
        before = content(state)
        fold_run(state, 400, 700)  # ids forgotten, windows pruned, approvals answered
        real = cache._db

        class _Failing:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def write(self, batch: Any) -> None:
                raise Exception("IO error: No space left on device")

        cache._db = _Failing()  # type: ignore[assignment]
        with pytest.raises(StateCacheError, match="No space left"):
            cache.save(state)
        cache._db = real
        loaded = cache.load(0)
        assert loaded is not None and content(loaded) == before
        cache.save(state)
        loaded = cache.load(0)
        assert loaded is not None and content(loaded) == content(state)
    finally:
        cache.close()


_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from ordinance.processors.enforcer_state import PartitionState
from ordinance.processors.state_cache import StateCache
from tests.processors.snapshot_helpers import fold_run
cache = StateCache(Path({directory!r}), {topic!r})
state = cache.load(0) or PartitionState(0)
print("ready", flush=True)
offset = state.offset + 1
while True:  # save after every 40 records until killed
    fold_run(state, offset, offset + 40)
    offset += 40
    cache.save(state)
"""


def test_a_process_killed_while_saving_leaves_a_snapshot_of_one_save(tmp_path: Path) -> None:
    """SIGKILL at random moments of a process that does little but save (each batch:
    new ids, forgotten ids, window events and prunes, approvals): each time, the
    snapshot is exactly the fold up to its offset, and the next process continues from
    it change by change."""
    rng = random.Random(18)
    script = _CHILD.format(root=str(ROOT), directory=str(tmp_path / "state"), topic=TOPIC)
    offsets = []
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, env={**os.environ}
        )
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.2, 0.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        cache = StateCache(tmp_path / "state", TOPIC)
        try:
            loaded = cache.load(0)
        finally:
            cache.close()
        assert loaded is not None
        reference = PartitionState(0)
        fold_run(reference, 0, loaded.offset + 1)
        assert content(loaded) == content(reference)
        offsets.append(loaded.offset)
    assert offsets == sorted(offsets) and offsets[-1] > 400  # it went on saving
