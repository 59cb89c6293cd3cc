"""The RocksDB state cache: a restart folds only the tail, and ends in the same state."""

from __future__ import annotations

from pathlib import Path

from ordinance.processors.enforcer import Enforcer
from ordinance.processors.state_cache import StateCache
from ordinance.streams import open_log
from ordinance.streams.topics import AGENT_DECISIONS, topic_specs

from .test_enforcer import EXAMPLES, T0, decisions_log, publish, send, transfer


def _enforce(url: str, state_dir: Path | None) -> Enforcer:
    with open_log(url) as log:
        enforcer = Enforcer(log, clock=lambda: T0, state_dir=state_dir)
        enforcer.run(until_idle=True, idle_s=1.0)
    return enforcer


def test_restart_folds_only_the_tail_and_keeps_budgets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    cache = tmp_path / "state"
    publish(url, EXAMPLES)
    send(url, *(transfer(f"a{i}", "9400", i) for i in range(4)))  # 37,600 of the 50k budget
    first = _enforce(url, cache)
    assert first.report.decided == 4
    send(url, transfer("a4", "9400", 10), transfer("a5", "9400", 11))
    second = _enforce(url, cache)
    # Without the cache a takeover refolds its whole partition; with it each takeover
    # folds only what follows the snapshot: its own new marker.
    assert second.report.replayed == second.report.takeovers
    effects = {d["request_id"]: d["effect"] for _, n, d in decisions_log(url) if n == "Decision"}
    assert [effects[f"a{i}"] for i in range(6)] == ["allow"] * 5 + [
        "deny"
    ]  # the budget carried over

    third = _enforce(url, None)  # the same state, rebuilt from the whole log instead
    assert third.report.replayed > second.report.replayed


def test_a_cache_from_another_log_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "state"
    url_a, url_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    for url in (url_a, url_b):
        publish(url, EXAMPLES)
    send(url_a, *(transfer(f"x{i}", "9400", i) for i in range(5)))
    _enforce(url_a, cache)
    send(url_b, transfer("y0", "9400", 0))
    _enforce(url_b, cache)  # b's partition is shorter than a's snapshot: refold from scratch
    [(_, _, d)] = [x for x in decisions_log(url_b) if x[1] == "Decision"]
    assert d["effect"] == "allow"  # a's 47,000 were not counted against b
    snapshot = StateCache(cache, topic_specs()[AGENT_DECISIONS].name)
    try:
        assert any(snapshot.load(p) is not None for p in range(4))
    finally:
        snapshot.close()


def test_a_cache_of_another_log_that_is_long_enough_is_detected_and_refolded(
    tmp_path: Path,
) -> None:
    """The same topic names, a longer partition: the offset check alone would trust a's
    snapshot on b. The record at the snapshot's offset does not chain to its head, so the
    takeover refolds b from the beginning."""
    cache = tmp_path / "state"
    url_a, url_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    for url in (url_a, url_b):
        publish(url, EXAMPLES)
    send(url_a, *(transfer(f"x{i}", "9400", i) for i in range(5)))  # 47,000 of the budget
    _enforce(url_a, cache)
    send(url_b, *(transfer(f"y{i}", "100", i) for i in range(12)))
    first_b = _enforce(url_b, None)  # b's partition grows past a's snapshot offset
    assert first_b.report.decided == 12
    send(url_b, transfer("y12", "9400", 20), transfer("x0", "50", 21))
    notes: list[str] = []
    with open_log(url_b) as log:
        enforcer = Enforcer(log, clock=lambda: T0, state_dir=cache, progress=notes.append)
        enforcer.run(until_idle=True, idle_s=1.0)
    assert any("does not match this log" in n for n in notes), notes
    decided = {d["request_id"]: d for _, n, d in decisions_log(url_b) if n == "Decision"}
    # a's budget was not counted against b, and a's request ids are not b's duplicates
    assert decided["y12"]["effect"] == "allow" and decided["x0"]["effect"] == "allow"
    from ordinance.keys import Keyring
    from ordinance.processors.audit.verify import verify_log

    with open_log(url_b) as log:  # b's chain is whole: no head carried over from a
        report = verify_log(log, Keyring({}))
    assert report.findings == [], report.findings


def test_a_corrupt_snapshot_is_refolded_from_the_log_and_saved_whole(tmp_path: Path) -> None:
    """A snapshot with an entry gone (a disk fault, a hand edit): the takeover says so,
    folds the partition from the log (the budget is still counted), and the next save
    writes the snapshot whole again, so the restart after that folds only its tail."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    cache = tmp_path / "state"
    publish(url, EXAMPLES)
    send(url, *(transfer(f"a{i}", "9400", i) for i in range(4)))  # 37,600 of the 50k budget
    _enforce(url, cache)
    snapshot = StateCache(cache, topic_specs()[AGENT_DECISIONS].name)
    try:
        [partition] = [p for p in range(4) if (s := snapshot.load(p)) and s.decided]
        prefix = f"{topic_specs()[AGENT_DECISIONS].name}/{partition}/d".encode()
        first = next(k for k in snapshot._db.keys(from_key=prefix) if isinstance(k, bytes))
        del snapshot._db[first]
    finally:
        snapshot.close()
    send(url, transfer("a4", "9400", 10), transfer("a5", "9400", 11))
    notes: list[str] = []
    with open_log(url) as log:
        second = Enforcer(log, clock=lambda: T0, state_dir=cache, progress=notes.append)
        second.run(until_idle=True, idle_s=1.0)
    assert any(f"state cache of partition {partition} is not usable" in n for n in notes), notes
    assert second.report.replayed > second.report.takeovers  # that partition was refolded
    effects = {d["request_id"]: d["effect"] for _, n, d in decisions_log(url) if n == "Decision"}
    assert [effects[f"a{i}"] for i in range(6)] == ["allow"] * 5 + ["deny"]
    third = _enforce(url, cache)
    assert third.report.replayed == third.report.takeovers
